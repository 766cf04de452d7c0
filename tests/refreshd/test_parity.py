"""The feature parity report: a real service's logged vectors against the point-in-time rebuild."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from aiohttp.test_utils import TestClient

from intent.features import FEATURE_NAMES, LAUNCH_SOURCES
from intent.parity import MAX_EXAMPLES, parity, to_markdown
from intent.train import TrainResult
from refreshd.cli import main
from refreshd.http.keys import REGISTRY, STORE
from refreshd.live.parity import parity_report
from refreshd.live.registry import publish
from refreshd.live.training import read_logs
from refreshd.store.protocol import LOG_DECISIONS, LOG_EVENTS
from tests.support import FakeClock, MakeClient, raw_xadd

KINDS = ["open", "impression", "click", "scroll", "background", "payment", "pull_refresh"]
TRIGGERS = ["open", "return", "timer", "scroll", "pull"]


async def drive(client: TestClient, clock: FakeClock, *, steps: int, seed: int = 1) -> int:
    """Send batches (some of them late) and decisions for a few users; return decisions sent."""
    rng = np.random.default_rng(seed)
    late: list[dict[str, Any]] = []
    for step in range(steps):
        clock.advance(float(rng.integers(5, 240)))
        uid = f"u{rng.integers(0, 3)}"
        events = [
            {"type": str(k), "ts": clock.ms - int(rng.integers(0, 20_000))}
            | ({"value": round(float(rng.random()) * 50, 2)} if k == "payment" else {})
            for k in rng.choice(KINDS, size=int(rng.integers(1, 6)))
        ]
        batch = {"user_id": uid, "batch_id": f"b{step}", "events": events}
        if rng.random() < 0.2:
            late.append(batch)  # delivered a few steps later: after decisions it happened before
        else:
            assert (await client.post("/v1/events", json=batch)).status == 200
        if late and rng.random() < 0.3:
            assert (await client.post("/v1/events", json=late.pop(0))).status == 200
        body = {
            "user_id": uid,
            "ts": clock.ms,
            "trigger": str(rng.choice(TRIGGERS)),
            "tz_offset_min": 480,
            "launch": str(rng.choice(LAUNCH_SOURCES)),
            "home_dwell_s": round(float(rng.exponential(30.0)), 3),
            "scrolls": int(rng.poisson(2.0)),
        }
        resp = await client.post("/v1/decide", json=body)
        assert resp.status == 200, await resp.text()
    return steps


@pytest.fixture
async def served(
    make_client: MakeClient, trained_model: TrainResult
) -> tuple[TestClient, FakeClock, int]:
    """A real app scoring with a real model, after 120 decisions and their events."""
    clock = FakeClock(1_717_243_200_000)  # 2024-06-01T12:00:00Z
    client = await make_client(clock=clock, user_rate_per_s=0)
    await publish(client.app[STORE], trained_model, created_ts=clock.ms, source="test")
    await client.app[REGISTRY].refresh(client.app[STORE])
    start = clock.ms
    await drive(client, clock, steps=120)
    return client, clock, start


async def test_a_real_service_matches_its_rebuild_value_for_value(
    served: tuple[TestClient, FakeClock, int],
) -> None:
    client, clock, start = served
    report = await parity_report(client.app[STORE], since_ms=start, until_ms=clock.ms + 1)
    assert report.decisions == 120 and 0 < report.pull < 60
    assert report.ok and report.match_rate == 1.0, to_markdown(report)
    assert report.rows_matched == report.rows_compared == 120 - report.pull
    assert report.rows_without_vector == 0 and report.extra == [] and not report.log_truncated
    assert all(f.compared == report.rows_compared for f in report.features)
    assert all(f.mismatches == f.missing == 0 for f in report.features)
    # Not vacuous: the vectors the service scored with have events and context in them.
    decisions, _ = await read_logs(client.app[STORE], 1000)
    scored = [d for d in decisions if d.get("model_version")]
    assert scored, "the model scored no decision"
    vectors = np.array([d["features"] for d in decisions if d["trigger"] != "pull"])
    for name in ("click_count_24h", "since_last_open_s", "payment_value_sum_24h", "hour"):
        assert len(set(vectors[:, FEATURE_NAMES.index(name)])) > 2, name
    # The window selects by decision ts: an empty one compares nothing and passes.
    empty = await parity_report(client.app[STORE], since_ms=0, until_ms=start)
    assert (empty.decisions, empty.ok, empty.match_rate) == (0, True, None)


async def test_a_corrupted_vector_is_a_mismatch_naming_the_feature(
    served: tuple[TestClient, FakeClock, int],
) -> None:
    client, clock, start = served
    decisions, events = await read_logs(client.app[STORE], 1000)
    rows = [d for d in decisions if d["trigger"] != "pull"]
    bad = copy.deepcopy(decisions)
    by_id = {d["decision_id"]: d for d in bad}
    ctr = FEATURE_NAMES.index("ctr_24h")
    corrupted, short, long, none = (by_id[rows[i]["decision_id"]] for i in (3, 5, 7, 9))
    corrupted["features"][ctr] += 0.5
    short["features"] = short["features"][:-1]  # lacks the last feature
    long["features"] = [*long["features"], 7.0]  # one value past the declared ones
    none["features"] = None
    report = parity(bad, events, since_ms=start, until_ms=clock.ms + 1)
    assert not report.ok and report.rows_matched == len(rows) - 4
    by_name = {f.name: f for f in report.features}
    assert by_name["ctr_24h"].mismatches == 1
    assert by_name["ctr_24h"].examples[0].decision_id == corrupted["decision_id"]
    assert by_name["ctr_24h"].examples[0].logged == by_name["ctr_24h"].examples[0].rebuilt + 0.5
    assert sum(f.mismatches for f in report.features) == 1
    last = by_name[FEATURE_NAMES[-1]]
    assert (last.missing, {e.decision_id for e in last.examples}) == (
        2, {short["decision_id"], none["decision_id"]})  # fmt: skip
    assert all(f.missing == 1 for f in report.features[:-1])  # the row without a vector
    assert report.rows_without_vector == 1 and report.without_vector == [none["decision_id"]]
    assert [(e.position, e.count) for e in report.extra] == [(len(FEATURE_NAMES), 1)]
    assert report.extra[0].examples[0].decision_id == long["decision_id"]
    md = to_markdown(report)
    assert "**FAIL**" in md and "`ctr_24h` | " in md and corrupted["decision_id"] in md
    # Examples stay a few however many rows differ; the count says how many.
    for d in bad:
        if d.get("features"):
            d["features"][0] = -7.0
    many = parity(bad, events, since_ms=start, until_ms=clock.ms + 1)
    assert many.features[0].mismatches == len(rows) - 1  # all but the row without a vector
    assert len(many.features[0].examples) == MAX_EXAMPLES


async def test_cli_exit_codes_and_files(
    served: tuple[TestClient, FakeClock, int],
    raw: redis.Redis,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, clock, start = served
    since = "2024-06-01T12:00:00Z"  # the served fixture's start, as ISO-8601
    until = str(clock.ms + 1)
    args = ["parity", "--since", since, "--until", until, "--redis-url", redis_url]
    assert await asyncio.to_thread(main, [*args, "--out", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "parity.json").read_text())
    assert (written["since_ms"], written["ok"], written["decisions"]) == (start, True, 120)
    assert "**PASS**" in (tmp_path / "parity.md").read_text()
    # Log the rows again with one value changed, in a store of their own: exit 1, JSON says where.
    decisions, events = await read_logs(client.app[STORE], 1000)
    raw.flushall()
    target = next(d for d in decisions if d.get("features"))
    target["features"][FEATURE_NAMES.index("open_count_1h")] += 1
    for row in decisions:
        raw_xadd(raw, LOG_DECISIONS, row)
    for row in events:
        raw_xadd(raw, LOG_EVENTS, row)
    capsys.readouterr()
    assert await asyncio.to_thread(main, args) == 1
    out = json.loads(capsys.readouterr().out)
    wrong = [f for f in out["features"] if f["mismatches"]]
    assert [f["name"] for f in wrong] == ["open_count_1h"]
    assert wrong[0]["examples"][0]["decision_id"] == target["decision_id"]


@pytest.mark.parametrize(
    ("since", "until", "needle"),
    [
        ("yesterday", "1717243200000", "neither ISO-8601"),
        ("1717243200000", "2024-13-01", "neither ISO-8601"),
        ("1717243200000", "1717243200000", "must be before"),
        ("2024-06-02T00:00:00+00:00", "2024-06-01", "must be before"),
        ("-5", "10", "neither ISO-8601"),
    ],
)
def test_bad_windows_exit_2_with_a_message(
    since: str, until: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # No store is opened for bad arguments: nothing listens at this URL.
    args = ["parity", "--since", since, "--until", until, "--redis-url", "redis://127.0.0.1:9"]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own exit for a value it cannot parse
        code = exc.code  # type: ignore[assignment]
    assert code == 2
    assert needle in capsys.readouterr().err


def test_the_window_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["parity", "--since", "1717243200000"])
    assert exc.value.code == 2 and "--until" in capsys.readouterr().err


async def test_rows_of_other_feature_declarations_are_counted_not_compared(
    served: tuple[TestClient, FakeClock, int],
) -> None:
    client, clock, start = served
    decisions, events = await read_logs(client.app[STORE], 1000)
    rows = [d for d in decisions if d["trigger"] != "pull"]
    old = copy.deepcopy(decisions)
    by_id = {d["decision_id"]: d for d in old}
    before = by_id[rows[2]["decision_id"]]
    before["feature_version"] = "f-previous-release"
    before["features"] = [0.0, 1.0]  # another release's vector: not comparable, not a mismatch
    report = parity(old, events, since_ms=start, until_ms=clock.ms + 1)
    assert report.ok and report.other_version == 1
    assert report.rows_matched == len(rows) - 1
