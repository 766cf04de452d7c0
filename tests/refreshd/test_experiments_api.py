"""Experiments over HTTP: config, assignment, exposure, statistics that match the logs."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any
from xml.etree import ElementTree

import pytest
import redis
from aiohttp.test_utils import TestClient

from refreshd.core.experiments import assign, parse_experiment
from tests.support import MakeClient, now_ms, raw_log

EXP = {
    "seed": "thr-2026",
    "hash_version": 2,
    "coverage": 1.0,
    "weights": [0.5, 0.5],
    "status": "running",
    "variants": [
        {"key": "control", "params": {"policy": "fixed"}},
        {"key": "t30", "params": {"policy": "intent", "threshold": 0.3}},
    ],
}


JSON = {"Content-Type": "application/json"}


async def put(client: TestClient, exp_id: str, body: dict[str, Any]) -> Any:
    return await client.put(f"/v1/experiments/{exp_id}", json=body)


async def test_crud_and_assignment(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await put(client, "thr", EXP)
    assert resp.status == 200, await resp.text()
    got = await (await client.get("/v1/experiments/thr")).json()
    assert got["experiment"]["seed"] == "thr-2026"
    assert [
        e["id"] for e in (await (await client.get("/v1/experiments")).json())["experiments"]
    ] == ["thr"]
    cfg = parse_experiment("thr", EXP)
    for uid in ("u1", "u2", "alice", "bob"):
        a = await (
            await client.get("/v1/experiments/thr/assignment", params={"user_id": uid})
        ).json()
        expected = assign("thr", cfg, uid)
        assert a == {
            "in_experiment": True,
            "variant": expected.variant,
            "hash": expected.hash,
            "sticky_bucket_used": False,
        }
    assert (await client.get("/v1/experiments/nope")).status == 404
    assert (await client.get("/v1/experiments/thr/assignment")).status == 422


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"weights": [0.6, 0.6]}, "weights"),
        ({"coverage": 1.5}, "coverage"),
        ({"variants": [{"key": "a"}, {"key": "a"}]}, "variants"),
        ({"hash_version": 3}, "hash_version"),
        ({"colour": 1}, "colour"),
    ],
)
async def test_invalid_experiments_are_422(
    make_client: MakeClient, change: dict, field: str
) -> None:
    client = await make_client()
    resp = await put(client, "bad", {**EXP, **change})
    assert resp.status == 422
    assert (await resp.json())["error"]["field"].startswith(field)


async def test_started_experiment_cannot_change_its_buckets(make_client: MakeClient) -> None:
    client = await make_client()
    assert (await put(client, "thr", EXP)).status == 200
    resp = await put(client, "thr", {**EXP, "weights": [0.9, 0.1]})
    assert resp.status == 409 and (await resp.json())["error"]["field"] == "weights"
    assert (
        await put(client, "thr", {**EXP, "status": "stopped"})
    ).status == 200  # status may change


async def arms(client: TestClient, users: list[str], ts: int) -> dict[str, str]:
    """Decide once for each user; return the variant each decision ran under."""
    out = {}
    for uid in users:
        resp = await client.post("/v1/decide", json={"user_id": uid, "ts": ts, "trigger": "open"})
        body = await resp.json()
        assert resp.status == 200, body
        out[uid] = body["experiment"]["variant"]
    return out


async def assignments(client: TestClient, users: list[str]) -> dict[str, tuple[str, bool]]:
    out = {}
    for uid in users:
        got = await (
            await client.get("/v1/experiments/thr/assignment", params={"user_id": uid})
        ).json()
        out[uid] = (got["variant"], got["sticky_bucket_used"])
    return out


async def test_sticky_users_keep_their_arm_when_weights_change(make_client: MakeClient) -> None:
    client = await make_client()
    sticky = {**EXP, "sticky": True}
    assert (await put(client, "thr", sticky)).status == 200
    early = [f"e{i}" for i in range(120)]
    first = await arms(client, early, now_ms() - 60_000)
    assert set(first.values()) == {"control", "t30"}
    # 50/50 → 90/10 while running: allowed for a sticky experiment, and no exposed user moves.
    heavy = {**sticky, "weights": [0.9, 0.1]}
    assert (await put(client, "thr", heavy)).status == 200, "weights of a sticky experiment"
    again = await arms(client, early, now_ms())
    assert again == first
    assert await assignments(client, early) == {u: (v, True) for u, v in first.items()}
    hashed = {u: assign("thr", parse_experiment("thr", heavy), u).variant for u in early}
    assert hashed != first  # the new weights would have moved some of them
    # Users exposed after the change are hashed with the new weights.
    late = [f"l{i}" for i in range(120)]
    new_cfg = parse_experiment("thr", heavy)
    assert await arms(client, late, now_ms()) == {
        u: assign("thr", new_cfg, u).variant for u in late
    }
    # A new bucket version voids every record: everyone goes where fresh hashing says.
    bumped = {**heavy, "bucket_version": 1}
    assert (await put(client, "thr", bumped)).status == 200
    assert await assignments(client, early) == {u: (v, False) for u, v in hashed.items()}
    assert await arms(client, early, now_ms() + 1_000) == hashed
    assert await assignments(client, early) == {u: (v, True) for u, v in hashed.items()}


async def test_a_sticky_record_does_not_outlive_a_stopped_experiment(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    assert (await put(client, "thr", {**EXP, "sticky": True})).status == 200
    await arms(client, ["s1"], now_ms())
    assert (await put(client, "thr", {**EXP, "sticky": True, "status": "stopped"})).status == 200
    got = await (await client.get("/v1/experiments/thr/assignment?user_id=s1")).json()
    assert got == {
        "in_experiment": False,
        "variant": None,
        "hash": None,
        "sticky_bucket_used": False,
    }
    # Turning stickiness off (with the weights unchanged) leaves plain hashing.
    resp = await put(client, "thr", {**EXP, "weights": [0.9, 0.1], "sticky": True})
    assert resp.status == 200
    resp = await put(client, "thr", {**EXP, "weights": [0.5, 0.5], "sticky": False})
    assert resp.status == 409 and (await resp.json())["error"]["field"] == "weights"


async def drive(clients: list[TestClient], users: list[str], rng: random.Random) -> None:
    async def one_user(i: int, uid: str) -> None:
        client = clients[i % len(clients)]
        t = now_ms() - 600_000
        for step in range(4):
            t += rng.randrange(1_000, 60_000)
            trigger = rng.choice(["open", "return", "scroll", "pull"])
            body = {"user_id": uid, "ts": t, "trigger": trigger}
            assert (await client.post("/v1/decide", json=body)).status == 200
            events = [
                {
                    "type": rng.choice(["impression", "impression", "click", "open"]),
                    "ts": t + rng.randrange(-5_000, 5_000),
                }
                for _ in range(rng.randrange(1, 6))
            ]
            resp = await client.post(
                "/v1/events", json={"user_id": uid, "batch_id": f"{uid}-{step}", "events": events}
            )
            assert resp.status == 200

    await asyncio.gather(*(one_user(i, u) for i, u in enumerate(users)))


def expected_from_logs(raw: redis.Redis) -> dict[str, dict[str, int]]:
    decisions = raw_log(raw, "log:decisions")
    events = raw_log(raw, "log:events")
    exposed: dict[str, tuple[str, int]] = {}
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for d in sorted(decisions, key=lambda d: d["ts"]):
        if d.get("experiment") != "thr":
            continue
        if d["user_id"] not in exposed:
            exposed[d["user_id"]] = (d["variant"], d["ts"])
            out[d["variant"]]["users"] += 1
        out[d["variant"]]["refreshes"] += d["refresh"]
    for e in events:
        if e["user_id"] in exposed:
            variant, since = exposed[e["user_id"]]
            if e["ts"] >= since and e["type"] in ("click", "impression"):
                out[variant][e["type"] + "s"] += 1
    return out


@pytest.mark.parametrize("workers", [1, 2])
async def test_report_counts_equal_counts_from_the_logs(
    make_client: MakeClient, raw: redis.Redis, workers: int
) -> None:
    clients = [await make_client() for _ in range(workers)]
    assert (await put(clients[0], "thr", EXP)).status == 200
    for c in clients[1:]:  # the other worker picks it up on its next poll; force it now
        from refreshd.http.keys import EXPERIMENTS, STORE

        await c.app[EXPERIMENTS].refresh(c.app[STORE])
    users = [f"user{i}" for i in range(60)]
    await drive(clients, users, random.Random(workers))
    report = await (await clients[0].get("/v1/experiments/thr/report")).json()
    assert report["experiment"] == "thr" and 0 <= report["srm_p"] <= 1
    expected = expected_from_logs(raw)
    assert sum(v["users"] for v in report["variants"]) == len(users)
    for v in report["variants"]:
        want = expected[v["key"]]
        n = v["users"]
        assert n == want["users"]
        assert v["metrics"]["refresh_requests"]["mean"] == pytest.approx(want["refreshes"] / n)
        assert v["metrics"]["clicks"]["mean"] == pytest.approx(want["clicks"] / n)
        if want["impressions"]:
            assert v["metrics"]["pvctr"]["mean"] == pytest.approx(
                want["clicks"] / want["impressions"]
            )
    treatment = report["variants"][1]["metrics"]["refresh_requests"]
    assert set(treatment) >= {"mean", "relative_lift", "ci", "p_value", "chance_to_win"}


STATS_BODY = {
    **EXP,
    "stats": {
        "engine": "frequentist",
        "alpha": 0.05,
        "cuped": True,
        "cuped_lookback_days": 7,
        "sequential": False,
        "sequential_tuning": 5000,
        "correction": None,
    },
    "guardrails": ["location_fixes", "decision_latency_ms"],
    "sticky": True,
    "bucket_version": 1,
}


async def test_stats_guardrails_sticky_and_bucket_version_round_trip(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    assert (await put(client, "thr", STATS_BODY)).status == 200
    got = (await (await client.get("/v1/experiments/thr")).json())["experiment"]
    assert {k: got["stats"][k] for k in STATS_BODY["stats"]} == STATS_BODY["stats"]
    assert got["guardrails"] == ["location_fixes", "decision_latency_ms"]
    assert got["sticky"] is True and got["bucket_version"] == 1
    # Today's bodies keep today's defaults.
    assert (await put(client, "old", EXP)).status == 200
    old = (await (await client.get("/v1/experiments/old")).json())["experiment"]
    assert old["stats"]["engine"] == "frequentist" and old["stats"]["cuped"] is False
    assert old["stats"]["sequential"] is False and old["stats"]["correction"] is None
    assert old["guardrails"] == [] and old["sticky"] is False and old["bucket_version"] == 0
    # Analysis settings may change once the experiment runs.
    changed = {**STATS_BODY, "stats": {"engine": "bayesian", "correction": "benjamini-hochberg"}}
    assert (await put(client, "thr", changed)).status == 200


@pytest.mark.parametrize(
    ("stats", "extra", "field"),
    [
        ({"correction": "bonferroni"}, {}, "stats.correction"),
        ({"cuped_lookback_days": 0}, {}, "stats.cuped_lookback_days"),
        ({"cuped_lookback_days": 8}, {}, "stats.cuped_lookback_days"),
        ({"sequential_tuning": 0}, {}, "stats.sequential_tuning"),
        ({"sequential_tuning": -5}, {}, "stats.sequential_tuning"),
        ({"engine": "bandit"}, {}, "stats.engine"),
        ({"alpha": 0}, {}, "stats.alpha"),
        ({"prior": {"stddev": 0}}, {}, "stats.prior.stddev"),
        ({"shrink": True}, {}, "stats.shrink"),
        ({}, {"guardrails": ["clicks", "crashes"]}, "guardrails[1]"),
        ({}, {"guardrails": ["clicks", "clicks"]}, "guardrails"),
        ({}, {"bucket_version": -1}, "bucket_version"),
        ({}, {"sticky": "yes"}, "sticky"),
    ],
)
async def test_bad_stats_bodies_are_422_naming_the_field_and_write_nothing(
    make_client: MakeClient, stats: dict, extra: dict, field: str
) -> None:
    client = await make_client()
    assert (await put(client, "thr", EXP)).status == 200
    before = await (await client.get("/v1/experiments/thr")).json()
    for exp_id in ("thr", "fresh"):
        resp = await put(client, exp_id, {**EXP, "stats": stats, **extra})
        assert resp.status == 422, await resp.text()
        assert (await resp.json())["error"]["field"] == field
    assert await (await client.get("/v1/experiments/thr")).json() == before
    assert (await client.get("/v1/experiments/fresh")).status == 404


async def test_cuped_covariates_equal_the_pre_period_in_the_logs(
    make_client: MakeClient, raw: redis.Redis
) -> None:
    """Decisions and clicks days before the experiment starts become each user's covariate:
    the statistics' Σc, Σc², Σxc equal the same sums computed from the decision and event logs."""
    from refreshd.core.activity import DAY_MS
    from refreshd.core.exposure import stats_key
    from refreshd.core.expstats import UserTotals, stats_from_fields, stats_from_users
    from refreshd.http.keys import STORE

    # ~600 requests: a generous store timeout, so a loaded machine cannot turn one slow
    # command into 503s (the store's timeouts have their own tests).
    client = await make_client(store_timeout_s=5.0)
    rng = random.Random(7)
    users = [f"cu{i}" for i in range(30)]
    now = now_ms()
    for uid in users:  # the pre-period: no experiment runs yet
        for day in range(1, 7):
            t = now - day * DAY_MS + rng.randrange(0, 3_600_000)
            body = {"user_id": uid, "ts": t, "trigger": "open"}
            assert (await client.post("/v1/decide", json=body)).status == 200
            events = [{"type": "click", "ts": t + 1000 * k} for k in range(rng.randrange(0, 4))]
            if events:
                batch = {"user_id": uid, "batch_id": f"{uid}-pre{day}", "events": events}
                assert (await client.post("/v1/events", json=batch)).status == 200
    assert (await put(client, "thr", {**EXP, "stats": {"cuped": True}})).status == 200
    await drive([client], users, rng)

    decisions, events = raw_log(raw, "log:decisions"), raw_log(raw, "log:events")
    exposure: dict[str, tuple[str, int]] = {}
    for d in sorted(decisions, key=lambda d: d["ts"]):
        if d.get("experiment") == "thr" and d["user_id"] not in exposure:
            exposure[d["user_id"]] = (d["variant"], d["ts"])
    post: dict[str, UserTotals] = {}
    pre: dict[str, UserTotals] = {}
    for uid, (_, since) in exposure.items():
        day = since // DAY_MS

        def in_pre(ts: int, day: int = day) -> bool:
            return day - 7 <= ts // DAY_MS < day

        mine = [d for d in decisions if d["user_id"] == uid]
        clicks = [e for e in events if e["user_id"] == uid and e["type"] == "click"]
        impressions = [e for e in events if e["user_id"] == uid and e["type"] == "impression"]
        pre[uid] = UserTotals(
            refreshes=sum(d["refresh"] for d in mine if in_pre(d["ts"])),
            clicks=sum(1 for e in clicks if in_pre(e["ts"])),
        )
        post[uid] = UserTotals(
            refreshes=sum(d["refresh"] for d in mine if d.get("experiment") == "thr"),
            clicks=sum(1 for e in clicks if e["ts"] >= since),
            impressions=sum(1 for e in impressions if e["ts"] >= since),
        )
    assert sum(p.clicks for p in pre.values()) > 0
    for variant in ("control", "t30"):
        mine = [u for u, (v, _) in exposure.items() if v == variant]
        (row,) = await client.app[STORE].read_stats([stats_key("thr", variant)])
        got = stats_from_fields(row)
        assert got == stats_from_users([post[u] for u in mine], [pre[u] for u in mine])
    report = await (await client.get("/v1/experiments/thr/report")).json()
    clicks = report["variants"][1]["metrics"]["clicks"]
    assert clicks["cuped"] is not None and "theta" in clicks["cuped"]
    assert set(report["power"]["clicks"]) == {"power", "mde", "effect", "users_per_arm"}


async def test_guardrails_flag_an_arm_whose_devices_take_twice_the_fixes(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    body = {**EXP, "guardrails": ["location_fixes", "decision_latency_ms", "error_responses"]}
    assert (await put(client, "thr", body)).status == 200
    users = [f"g{i}" for i in range(160)]
    t = now_ms() - 120_000
    arm_of = await arms(client, users, t)
    rng = random.Random(3)
    requests = {"control": len([u for u in users if arm_of[u] == "control"])}
    requests["t30"] = len(users) - requests["control"]  # one decision each so far
    errors = {"control": 0, "t30": 0}
    for uid in users:
        n = rng.randint(1, 3) * (2 if arm_of[uid] == "t30" else 1)
        for k in range(n):
            fix = {"user_id": uid, "ts": t + 1_000 * (k + 1), "lat": 48.0, "lng": 2.0,
                   "accuracy_m": 10.0}  # fmt: skip
            assert (await client.post("/v1/location", json=fix)).status == 200
        requests[arm_of[uid]] += n
        if rng.random() < 0.3:  # a refused fix counts as an error response of the user's arm
            bad = {"user_id": uid, "ts": t, "lat": 91.0, "lng": 2.0, "accuracy_m": 10.0}
            assert (await client.post("/v1/location", json=bad)).status == 422
            errors[arm_of[uid]] += 1
            requests[arm_of[uid]] += 1
    # Requests that name no valid user count for nobody.
    assert (await client.post("/v1/location", data=b"{", headers=JSON)).status == 400
    report = await (await client.get("/v1/experiments/thr/report")).json()
    got = {g["metric"]: g for g in report["guardrails"]}
    assert set(got) == {"location_fixes", "decision_latency_ms", "error_responses"}
    assert all(g["variant"] == "t30" for g in got.values())
    fixes = got["location_fixes"]
    assert fixes["breached"] is True and fixes["ci"][0] > 0
    assert fixes["relative_change"] == pytest.approx(1.0, abs=0.35)
    assert got["decision_latency_ms"]["relative_change"] is not None
    # Every device request of the users counted, an error as 1: the error shares are exact.
    share = {arm: errors[arm] / requests[arm] for arm in errors}
    expected = share["t30"] / share["control"] - 1
    assert got["error_responses"]["relative_change"] == pytest.approx(expected, rel=1e-9)
    # The existing fields are all still there.
    assert list(report["variants"][1]["metrics"]) == [
        "refresh_requests", "clicks", "converted", "pvctr", "uvctr",
    ]  # fmt: skip


async def test_report_svg_draws_one_interval_per_arm_and_metric(make_client: MakeClient) -> None:
    client = await make_client()
    assert (await client.get("/v1/experiments/nope/report.svg")).status == 404
    variants = [*EXP["variants"], {"key": "t50", "params": {"policy": "intent", "threshold": 0.5}}]
    body = {**EXP, "weights": None, "variants": variants, "metrics": ["clicks", "pvctr"]}
    assert (await put(client, "thr", body)).status == 200
    await drive([client], [f"user{i}" for i in range(90)], random.Random(5))
    resp = await client.get("/v1/experiments/thr/report.svg")
    assert resp.status == 200 and resp.content_type == "image/svg+xml"
    root = ElementTree.fromstring(await resp.read())  # well-formed XML, or this raises
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    report = await (await client.get("/v1/experiments/thr/report")).json()
    intervals = [(v["key"], m) for v in report["variants"][1:] for m, r in v["metrics"].items()
                 if r["ci"] is not None]  # fmt: skip
    assert len(intervals) == 4  # two arms × two metrics, each with its interval
    assert len(root.findall(".//s:line[@class='ci']", ns)) == len(intervals)
    titles = [t.text or "" for t in root.findall(".//s:svg/s:title", ns)]
    assert [t.split(":")[0] for t in titles] == ["clicks", "pvctr"]
