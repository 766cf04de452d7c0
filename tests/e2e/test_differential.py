"""The service over HTTP and the simulator's fast mode answer the same requests the same way.

One seeded request sequence — decide, location and events from 60 users, with fences, event
rules (a trailing negation among them), a running experiment, exploration traffic, directives
and their acks, a retried batch — goes through the real service (aiohttp over HTTP, a real
Valkey, a real LightGBM model) and through `client_sim.cloud.Cloud` (the same core flows on
the memory store). Both run on the same clock; the decisions, every response (decision ids
aside) and the decision- and event-log rows must be identical.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import msgspec
import numpy as np

from client_sim.cloud import Cloud, CloudUser
from intent.events import Event
from intent.features import LAUNCH_SOURCES
from intent.model import IntentModel
from intent.train import TrainResult
from refreshd.core.messages import DecideRequest, LocationRequest
from refreshd.core.policy import parse_policy
from refreshd.http.keys import POLICY, REGISTRY, SERVICE, STORE
from refreshd.live.registry import publish
from refreshd.store.protocol import LOG_DECISIONS, LOG_EVENTS
from tests.support import FakeClock, MakeClient

USERS = 60
REQUESTS = 1200
SHOPPERS = 12  # users u0..u11 walk in and out of the mall
CENTRE = (31.2304, 121.4737)
TOKEN = "t0k"


def _square(lat: float, lng: float, half_deg: float) -> list[list[float]]:
    return [
        [lng - half_deg, lat - half_deg],
        [lng + half_deg, lat - half_deg],
        [lng + half_deg, lat + half_deg],
        [lng - half_deg, lat + half_deg],
        [lng - half_deg, lat - half_deg],
    ]


FENCES: dict[str, dict[str, Any]] = {
    "mall": {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [_square(*CENTRE, 0.002)]},
        "properties": {"buffer_m": 250, "dwell_s": 60, "service_cards": ["parking", "coupons"]},
    },
    "station": {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [CENTRE[1] + 0.01, CENTRE[0]]},
        "properties": {"radius_m": 150, "buffer_m": 200, "service_cards": ["metro"]},
    },
}
RULES: dict[str, dict[str, Any]] = {
    # A search not followed by a click within 2 minutes refreshes the feed (fires on a later
    # contact or a sweep: the trailing-negation path).
    "search-no-click": {
        "pattern": [{"type": "search"}, {"type": "click", "negated": True}],
        "within_s": 120,
        "action": {"type": "refresh", "slots": ["feed"]},
    },
    "double-click": {
        "pattern": [{"type": "click", "times": 2}],
        "within_s": 60,
        "cooldown_s": 300,
        "action": {"type": "show_cards", "payload": {"cards": "deals"}},
    },
}
EXPERIMENT = {
    "seed": "diff-2026",
    "coverage": 0.5,
    "status": "running",
    "variants": [
        {"key": "control", "params": {"policy": "fixed", "fallback_interval_s": 600}},
        {"key": "t20", "params": {"policy": "intent", "threshold": 0.2}},
    ],
}
EVENT_TYPES = [
    "open",
    "impression",
    "click",
    "click",
    "scroll",
    "search",
    "feedback",
    "payment",
    "pull_refresh",
    "background",
]


def _requests(
    t0: int, n: int = REQUESTS, weights: tuple[int, int, int] = (4, 4, 2)
) -> list[tuple[int, str, dict[str, Any]]]:
    """Return (server time, kind, body) for the whole sequence; acks are filled in later.

    `n` requests, of kinds events / decide / location in proportion to `weights`.
    """
    rng = random.Random(16)
    visit = random.Random(17)  # the visit facts, on their own stream: the sequence is unchanged
    pos = {
        f"u{i}": (CENTRE[0] + rng.uniform(-0.01, 0.01), CENTRE[1] + rng.uniform(-0.01, 0.02))
        for i in range(USERS)
    }
    out: list[tuple[int, str, dict[str, Any]]] = []
    now = t0
    batches: dict[str, int] = {}
    steps: dict[str, int] = {}
    for _ in range(n):
        now += rng.randint(1_000, 20_000)
        uid = f"u{rng.randrange(USERS)}"
        lat, lng = pos[uid]
        lat += rng.gauss(0, 0.0008)
        lng += rng.gauss(0, 0.0008)
        pos[uid] = (lat, lng)
        steps[uid] = steps.get(uid, 0) + 1
        shopper = int(uid[1:]) < SHOPPERS
        if shopper:  # in the mall for 8 contacts, then well away for 8: entries and exits
            inside = (steps[uid] // 8) % 2 == 0
            lat = CENTRE[0] + rng.gauss(0, 0.0003)
            lng = CENTRE[1] + (rng.gauss(0, 0.0003) if inside else 0.012)
        kind = rng.choices(["events", "decide", "location"], weights=weights)[0]
        if kind == "events":
            n = batches.get(uid, 0)
            if n and rng.random() < 0.05:  # a retried batch: accepted once
                out.append(
                    (now, "events", {"user_id": uid, "batch_id": f"{uid}-b{n - 1}", "retry": True})
                )
                continue
            batches[uid] = n + 1
            events = []
            for _ in range(rng.randint(1, 5)):
                etype = rng.choice(EVENT_TYPES)
                e: dict[str, Any] = {"type": etype, "ts": now - rng.randint(0, 30_000)}
                if etype in ("click", "impression"):
                    e["item_id"] = f"i{rng.randrange(50)}"
                    e["slot"] = rng.choice(["feed", "nearby"])
                if etype == "feedback":
                    e["props"] = {"kind": rng.choice(["negative", "positive"])}
                if etype == "payment":
                    e["value"] = round(rng.uniform(1, 200), 2)
                events.append(e)
            out.append(
                (now, "events", {"user_id": uid, "batch_id": f"{uid}-b{n}", "events": events})
            )
        elif kind == "decide":
            body: dict[str, Any] = {
                "user_id": uid,
                "ts": now - rng.randint(0, 2_000),
                "trigger": rng.choice(["open", "return", "timer", "scroll", "pull", "open"]),
                "tz_offset_min": 480,
            }
            if shopper or rng.random() < 0.5:
                body["lat"], body["lng"] = round(lat, 6), round(lng, 6)
            if rng.random() < 0.3:
                body["slots"] = ["feed", "nearby"]
            if visit.random() < 0.7:  # what the device knows of the visit, as a real app sends
                body["launch"] = visit.choice(LAUNCH_SOURCES)
                body["home_dwell_s"] = round(visit.expovariate(1 / 30), 3)
                body["scrolls"] = visit.randint(0, 6)
                body["scroll_depth"] = round(visit.random(), 4)
            out.append((now, "decide", body))
        else:
            out.append(
                (
                    now,
                    "location",
                    {
                        "user_id": uid,
                        "ts": now - rng.randint(0, 2_000),
                        "lat": round(lat, 6),
                        "lng": round(lng, 6),
                        "accuracy_m": rng.choice([5.0, 15.0, 40.0]),
                        "speed_mps": rng.choice([None, 1.2, 8.0]),
                    },
                )
            )
    return out


def _second_policy(now_ms: int) -> dict[str, Any]:
    """A ladder with a frequency cap and quiet hours from now to the end of the next local hour
    (tz +8 h): at least an hour of the remaining requests falls inside, whatever the time."""
    hour = (now_ms // 3_600_000 + 8) % 24
    return {"nodes": [
        {"type": "pull"}, {"type": "event"}, {"type": "geo"},
        {"type": "cooldown", "min_interval_s": 20},
        {"type": "frequency_cap", "per_hour": 3},
        {"type": "quiet_hours", "start_hour": hour, "end_hour": (hour + 2) % 24},
        {"type": "intent", "threshold": 0.35, "explore_share": 0.3, "explore_seed": "v2"},
        {"type": "fallback", "interval_s": 240},
    ]}  # fmt: skip


def _plain(obj: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(obj))


async def test_service_and_fast_mode_agree(
    make_client: MakeClient, trained_model: TrainResult
) -> None:
    clock = FakeClock()
    client = await make_client(
        clock=clock,
        explore_share=0.3,
        user_rate_per_s=0,
        score_timeout_ms=10_000.0,
        admin_token=TOKEN,
        # Fast mode has no scheduler: a background sweep landing mid-sequence (a slow machine)
        # would fire a trailing negation at another moment than the next contact does.
        sweep_interval_s=3600.0,
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for fid, feature in FENCES.items():
        assert (await client.put(f"/v1/geofences/{fid}", json=feature, headers=auth)).status == 200
    for rid, rule in RULES.items():
        assert (await client.put(f"/v1/triggers/{rid}", json=rule, headers=auth)).status == 200
    resp = await client.put("/v1/experiments/thr", json=EXPERIMENT, headers=auth)
    assert resp.status == 200
    meta = await publish(client.app[STORE], trained_model, created_ts=clock.ms, source="test")
    await client.app[REGISTRY].refresh(client.app[STORE])
    service = client.app[SERVICE]
    for book in (service.rulebook, service.experiments, service.fences):
        await book.refresh(client.app[STORE])
    cfg = service.config()
    assert set(cfg.experiments) == {"thr"} and set(RULES) <= set(cfg.rules.rules)

    model = IntentModel.from_text(trained_model.model_text, version=meta.version)
    cloud = Cloud(cfg.policy, cfg.rules, model_version=meta.version, config=cfg)
    users: dict[str, CloudUser] = {}
    known: dict[str, list[str]] = {}  # directive ids a device has seen and not acked yet
    rng = random.Random(3)
    seen: dict[str, int] = {}
    fast_ids: dict[str, int] = {}
    served_ids: dict[str, int] = {}
    last_batch: dict[str, dict[str, Any]] = {}
    for i, (now, kind, body) in enumerate(_requests(clock.ms + 1_000)):
        clock.ms = now
        if i == REQUESTS // 2:  # an operator changes the ladder: both sides follow
            doc = _second_policy(now)
            resp = await client.put("/v1/policy", json=doc, headers=auth)
            assert resp.status == 200, await resp.text()
            await client.app[POLICY].refresh(client.app[STORE])
            now_cfg = service.config()
            cloud.config = dataclasses.replace(
                cloud.config, policy=now_cfg.policy, versions=now_cfg.versions
            )
            assert cloud.config.policy == parse_policy(doc)
        uid = body["user_id"]
        cu = users.setdefault(uid, CloudUser(uid))
        ack = [d for d in known.get(uid, []) if rng.random() < 0.7]
        if body.pop("retry", False):
            body = dict(last_batch[uid])  # the device resends its last batch
        if ack:
            body["ack"] = ack
        served = await client.post(f"/v1/{kind}", json=body)
        assert served.status == 200, await served.text()
        got = await served.json()
        if kind == "events":
            events = [msgspec.convert(e, Event) for e in body["events"]]
            fast = _plain(cloud.events(cu, events, ack, now, batch_id=body["batch_id"]))
            last_batch[uid] = {k: v for k, v in body.items() if k != "ack"}
        elif kind == "decide":
            plan = cloud.prepare(cu, msgspec.convert(body, DecideRequest), now)
            score = None
            if plan.needs_score:
                assert plan.features is not None
                score = float(model.predict(np.asarray([plan.features]))[0])
            fast = _plain(cloud.decide(cu, plan, score))
            fast_ids[plan.decision_id] = i
            served_ids[got["decision_id"]] = i
            got.pop("decision_id")
            fast.pop("decision_id")
        else:
            fast = _plain(cloud.location(cu, msgspec.convert(body, LocationRequest), now))
        assert got == fast, f"request {i} ({kind} {body}) differs"
        acked = set(ack)
        pending = [d["id"] for d in got["directives"]]
        known[uid] = [d for d in dict.fromkeys(known.get(uid, []) + pending) if d not in acked]
        for d in got["directives"]:
            seen[d["type"]] = seen.get(d["type"], 0) + 1

    # The sequence exercised what it claims to.
    reasons = [row["reason"] for row in cloud.decision_rows]
    assert {
        "intent",
        "no_intent",
        "fallback",
        "pull",
        "event",
        "cooldown",
        "geo",
        "frequency_cap",
        "quiet_hours",
    } <= set(reasons)
    assert any(r.get("explore") for r in cloud.decision_rows)
    assert {r.get("variant") for r in cloud.decision_rows} >= {"control", "t20", None}
    assert seen.get("refresh", 0) and seen.get("reclaim_cards", 0) and seen.get("show_cards", 0)

    stored = [
        msgspec.json.decode(b) for b in await client.app[STORE].read_log(LOG_DECISIONS, 10**6)
    ]
    assert len(stored) == len(cloud.decision_rows) >= 350
    by_request = {served_ids[r.pop("decision_id")]: r for r in stored}
    fast_rows = {fast_ids[r.pop("decision_id")]: r for r in _plain(cloud.decision_rows)}
    assert by_request == fast_rows

    def key(r: dict[str, Any]) -> str:
        return msgspec.json.encode(r, order="sorted").decode()

    ev = [msgspec.json.decode(b) for b in await client.app[STORE].read_log(LOG_EVENTS, 10**6)]
    assert sorted(map(key, ev)) == sorted(map(key, _plain(cloud.event_rows)))
