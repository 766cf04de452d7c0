"""Every bad request gets the right 4xx with the `{"error": {...}}` body, and writes nothing."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import redis

from tests.support import MakeClient, now_ms

NOW = now_ms()
OK_DECIDE: dict[str, Any] = {"user_id": "u1", "ts": NOW, "trigger": "open"}
GOOD_EVENT: dict[str, Any] = {"type": "click", "ts": NOW, "slot": "feed"}


def events(*evs: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"user_id": "u1", "batch_id": "b1", "events": list(evs), **kw}


def with_(base: dict[str, Any], **kw: Any) -> dict[str, Any]:
    out = {**base, **kw}
    return {k: v for k, v in out.items() if v is not ...}


JSON = "application/json"
CASES: list[tuple[str, str, bytes | dict[str, Any] | list[Any], str, int, str | None]] = [
    # (name, path, body, content type, status, field)
    ("malformed json", "/v1/decide", b'{"user_id": "u1",', JSON, 400, None),
    ("invalid utf-8", "/v1/decide", b'{"user_id": "\xff\xfe"}', JSON, 400, None),
    ("NaN literal", "/v1/decide", b'{"user_id":"u1","ts":1,"trigger":"open","lat":NaN}', JSON, 400, None),
    ("wrong content type", "/v1/decide", json.dumps(OK_DECIDE).encode(), "text/plain", 415, None),
    ("no content type", "/v1/events", json.dumps(events(GOOD_EVENT)).encode(), "", 415, None),
    ("body is an array", "/v1/decide", [OK_DECIDE], JSON, 422, None),
    ("missing user_id", "/v1/decide", with_(OK_DECIDE, user_id=...), JSON, 422, "user_id"),
    ("ts as string", "/v1/decide", with_(OK_DECIDE, ts=str(NOW)), JSON, 422, "ts"),
    ("lat 91", "/v1/decide", with_(OK_DECIDE, lat=91.0, lng=0.0), JSON, 422, "lat"),
    ("lng -180.5", "/v1/decide", with_(OK_DECIDE, lat=0.0, lng=-180.5), JSON, 422, "lng"),
    ("huge number", "/v1/decide", b'{"user_id":"u1","ts":1,"trigger":"open","lat":1e400,"lng":0}', JSON, 422, "lat"),
    ("lat without lng", "/v1/decide", with_(OK_DECIDE, lat=10.0), JSON, 422, "lng"),
    ("unknown trigger", "/v1/decide", with_(OK_DECIDE, trigger="shake"), JSON, 422, "trigger"),
    ("ts 2 h in the future", "/v1/decide", with_(OK_DECIDE, ts=NOW + 7_200_000), JSON, 422, "ts"),
    ("ts 30 days old", "/v1/decide", with_(OK_DECIDE, ts=NOW - 30 * 86_400_000), JSON, 422, "ts"),
    ("negative ts", "/v1/decide", with_(OK_DECIDE, ts=-1), JSON, 422, "ts"),
    ("empty user_id", "/v1/decide", with_(OK_DECIDE, user_id=""), JSON, 422, "user_id"),
    ("10 kB user_id", "/v1/decide", with_(OK_DECIDE, user_id="u" * 10_000), JSON, 422, "user_id"),
    ("hash tag in user_id", "/v1/decide", with_(OK_DECIDE, user_id="a{b}"), JSON, 422, "user_id"),
    ("feature not a number", "/v1/decide", with_(OK_DECIDE, features={"x": "y"}), JSON, 422, "features"),
    ("101 acks", "/v1/decide", with_(OK_DECIDE, ack=[f"d{i}" for i in range(101)]), JSON, 422, "ack"),
    ("bool user_id", "/v1/decide", with_(OK_DECIDE, user_id=True), JSON, 422, "user_id"),
    ("unknown launch source", "/v1/decide", with_(OK_DECIDE, launch="shake"), JSON, 422, "launch"),
    ("launch not a string", "/v1/decide", with_(OK_DECIDE, launch=1), JSON, 422, "launch"),
    ("negative home dwell", "/v1/decide", with_(OK_DECIDE, home_dwell_s=-0.5), JSON, 422, "home_dwell_s"),
    ("home dwell over a day", "/v1/decide", with_(OK_DECIDE, home_dwell_s=86_401.0), JSON, 422, "home_dwell_s"),
    ("negative scrolls", "/v1/decide", with_(OK_DECIDE, scrolls=-1), JSON, 422, "scrolls"),
    ("fractional scrolls", "/v1/decide", with_(OK_DECIDE, scrolls=1.5), JSON, 422, "scrolls"),
    ("too many scrolls", "/v1/decide", with_(OK_DECIDE, scrolls=10_001), JSON, 422, "scrolls"),
    ("scroll depth 1.2", "/v1/decide", with_(OK_DECIDE, scroll_depth=1.2), JSON, 422, "scroll_depth"),
    ("negative scroll depth", "/v1/decide", with_(OK_DECIDE, scroll_depth=-0.1), JSON, 422, "scroll_depth"),
    ("unknown event type", "/v1/events", events({"type": "dance", "ts": NOW}), JSON, 422, "events[0].type"),
    ("1001 events", "/v1/events", events(*[GOOD_EVENT] * 1001), JSON, 422, "events"),
    ("no events", "/v1/events", events(), JSON, 422, "events"),
    ("missing batch_id", "/v1/events", with_(events(GOOD_EVENT), batch_id=...), JSON, 422, "batch_id"),
    ("second event in the future", "/v1/events",
     events(GOOD_EVENT, {"type": "open", "ts": NOW + 7_200_000}), JSON, 422, "events[1].ts"),
    ("nested props", "/v1/events", events({**GOOD_EVENT, "props": {"a": {"b": 1}}}), JSON, 422,
     "events[0].props"),
    ("slot of wrong type", "/v1/events", events({**GOOD_EVENT, "slot": 7}), JSON, 422, "events[0].slot"),
    ("infinite value", "/v1/events", json.dumps(events(GOOD_EVENT)).replace('"slot"', '"value": 1e999, "slot"').encode(),
     JSON, 422, "events[0].value"),
    ("body over the limit", "/v1/events",
     events(*[{**GOOD_EVENT, "props": {"pad": "x" * 250, "p2": "y" * 250}} for _ in range(999)]) | {"pad": "z" * 600_000},
     JSON, 413, None),
    ("unknown directive type", "/v1/directives", {"user_id": "u1", "type": "explode"}, JSON, 422, "type"),
    ("directive ttl 0", "/v1/directives", {"user_id": "u1", "type": "refresh", "ttl_s": 0}, JSON, 422, "ttl_s"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "path", "body", "ctype", "status", "field"), CASES, ids=[c[0] for c in CASES]
)
async def test_bad_request(
    make_client: MakeClient, raw: redis.Redis,
    name: str, path: str, body: Any, ctype: str, status: int, field: str | None,
) -> None:  # fmt: skip
    client = await make_client()
    before = {k: raw.dump(k) for k in raw.keys("*")}  # start-up seeds configuration
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": ctype} if ctype else {}
    resp = await client.post(path, data=io.BytesIO(data), headers=headers)
    assert resp.status == status, await resp.text()
    payload = await resp.json()
    assert set(payload) == {"error"}
    error = payload["error"]
    assert set(error) == {"code", "message", "field"} and error["message"]
    assert "Traceback" not in error["message"]
    if field is not None:
        assert error["field"] == field
    after = {k: raw.dump(k) for k in raw.keys("*")}
    assert after == before, f"{name} wrote {set(after) ^ set(before)}"


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 20
    assert {c[4] for c in CASES} >= {400, 413, 415, 422}


@pytest.mark.parametrize(
    "visit",
    [
        {"launch": "scan_shortcut", "home_dwell_s": 0.0, "scrolls": 0, "scroll_depth": 0.0},
        {"launch": "return_from_flow", "home_dwell_s": 86_400.0, "scrolls": 10_000,
         "scroll_depth": 1.0},
        {"launch": "push"},
        {"home_dwell_s": 12, "scrolls": 3},  # an integer dwell is a number of seconds too
    ],
)  # fmt: skip
async def test_visit_facts_at_their_bounds_are_accepted(
    make_client: MakeClient, visit: dict[str, Any]
) -> None:
    client = await make_client()
    resp = await client.post("/v1/decide", json={**OK_DECIDE, **visit})
    assert resp.status == 200, await resp.text()
