"""Shadow (challenger) models, promotion, rollback and the champion's history, through the API."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import msgspec
import pytest
import redis
from aiohttp.test_utils import TestClient

from intent.dataset import LABEL_HORIZON_S
from intent.train import TrainResult
from refreshd import constants as C
from refreshd.core.flow import DecisionLog
from refreshd.http.keys import REGISTRY, SHADOW, STORE
from refreshd.live.registry import ModelMeta, publish
from refreshd.live.shadow import Shadow
from refreshd.metrics import Metrics
from refreshd.store.protocol import Store
from synth.eventlog import generate
from tests.support import FakeClock, MakeClient, raw_xadd

N_USERS = 40


def inverted(text: str) -> str:
    """Return the model with every leaf negated: its click probability becomes 1 - p, so it
    ranks users exactly backwards (a challenger that is certainly worse)."""

    def negate(line: re.Match[str]) -> str:
        values = " ".join(repr(-float(v)) for v in line.group(1).split())
        return f"leaf_value={values}"

    flipped = re.sub(r"^leaf_value=(.*)$", negate, text, flags=re.M)
    return re.sub(r"^tree_sizes=.*\n", "", flipped, flags=re.M)  # byte sizes no longer hold


async def stage(store: Store, text: str, created_ts: int) -> str:
    """Store a model without making it the champion; return its version."""
    version = f"m{created_ts}-test"
    meta = ModelMeta(version=version, created_ts=created_ts, source="test",
                     features_version="", feature_names=[], metrics={})  # fmt: skip
    await store.put_model(version, text, msgspec.json.encode(meta))
    return version


async def with_champion(client: TestClient, model: TrainResult) -> str:
    meta = await publish(client.app[STORE], model, created_ts=1, source="test")
    await client.app[REGISTRY].refresh(client.app[STORE])
    return meta.version


async def decide_with_history(client: TestClient, clock: FakeClock) -> None:
    """Decide for users of which half were active (and click again after the decision)."""
    for i in range(N_USERS):
        uid = f"u{i}"
        if i % 2:
            events = [{"type": t, "ts": clock() - 60_000 + k * 1000}
                      for k, t in enumerate(("open", "impression", "click", "click"))]  # fmt: skip
            r = await client.post("/v1/events", json={"user_id": uid, "batch_id": "a", "events": events})  # fmt: skip
            assert r.status == 200, await r.text()
        body = await (
            await client.post("/v1/decide", json={"user_id": uid, "ts": clock(), "trigger": "open"})
        ).json()
        assert body["reason"] in ("intent", "no_intent"), body
        if i % 2:
            click = {"user_id": uid, "batch_id": "b",
                     "events": [{"type": "click", "ts": clock() + 2000}]}  # fmt: skip
            assert (await client.post("/v1/events", json=click)).status == 200


async def report_when(client: TestClient, version: str, decisions: int) -> dict[str, Any]:
    """Return the report once the background scorer has written `decisions` rows."""
    for _ in range(100):
        resp = await client.get(f"/v1/models/{version}/shadow-report")
        assert resp.status == 200, await resp.text()
        report: dict[str, Any] = await resp.json()
        if report["decisions"] >= decisions:
            return report
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {report['decisions']} shadowed decisions of {decisions}")


async def test_shadow_report_compares_challengers_with_the_champion(
    make_client: MakeClient, trained_model: TrainResult, raw: redis.Redis
) -> None:
    clock = FakeClock()
    client = await make_client(clock=clock)
    champion = await with_champion(client, trained_model)
    store = client.app[STORE]
    twin = await stage(store, trained_model.model_text, 2)  # the champion under another name
    worse = await stage(store, inverted(trained_model.model_text), 3)
    resp = await client.post(f"/v1/models/{twin}/shadow", headers={"X-Operator": "alice"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["by"] == "alice"
    assert (await client.post(f"/v1/models/{worse}/shadow")).status == 200
    again = await client.post(f"/v1/models/{twin}/shadow")  # idempotent: the first start stays
    assert (await again.json())["by"] == "alice"
    assert (await client.post(f"/v1/models/{champion}/shadow")).status == 409

    await decide_with_history(client, clock)
    fresh = await report_when(client, twin, N_USERS)
    assert fresh["decisions"] == N_USERS and fresh["matured"] == 0 and fresh["active"]
    assert fresh["auc_champion"] is None and fresh["auc_challenger"] is None
    assert fresh["agreement"] == 1.0 and fresh["score_psi"] == pytest.approx(0.0)

    clock.advance(LABEL_HORIZON_S + C.SHADOW_LABEL_GRACE_S + 1)
    same = await report_when(client, twin, N_USERS)
    assert same["matured"] == N_USERS
    assert same["auc_challenger"] == same["auc_champion"]
    assert same["champion_refresh_rate"] == same["challenger_refresh_rate"]
    backwards = await report_when(client, worse, N_USERS)
    assert set(backwards) == {
        "version", "active", "decisions", "matured", "agreement", "champion_refresh_rate",
        "challenger_refresh_rate", "score_psi", "auc_champion", "auc_challenger",
    }  # fmt: skip
    assert backwards["auc_champion"] == same["auc_champion"]
    # Ranking backwards mirrors the AUC (ties count half either way).
    assert backwards["auc_challenger"] == pytest.approx(1 - backwards["auc_champion"])
    assert backwards["agreement"] < 1.0 and backwards["score_psi"] > 0.1

    metrics = await (await client.get("/metrics")).text()
    assert f'refreshd_shadow_agreement{{version="{twin}"}} 1.0' in metrics
    assert "refreshd_shadow_dropped_total 0.0" in metrics

    shards = raw.keys(f"log:shadow:{twin}:*")  # the rows are spread over the users' shards
    assert len(shards) > 1 and all(0 < raw.ttl(k) <= C.SHADOW_LOG_TTL_S for k in shards)

    # Stopping keeps the report; later decisions are no longer shadowed.
    assert (await client.delete(f"/v1/models/{twin}/shadow")).status == 204
    assert (await client.delete(f"/v1/models/{twin}/shadow")).status == 404
    assert twin not in client.app[SHADOW].models
    stopped = await (await client.get(f"/v1/models/{twin}/shadow-report")).json()
    assert stopped["active"] is False and stopped["decisions"] == N_USERS


def test_a_full_shadow_queue_drops_and_counts_instead_of_waiting() -> None:
    metrics = Metrics()
    shadow = Shadow(metrics, queue_max=2)
    shadow.models = {"chal": object()}  # type: ignore[dict-item]  # offer only checks presence
    row = DecisionLog(decision_id="d", user_id="u", ts=1, trigger="open", refresh=False,
                      reason="no_intent", degraded=False, score=0.1, threshold=0.3,
                      model_version="champ", features=[0.0])  # fmt: skip
    shadow.offer([row] * 5)
    assert metrics.shadow_dropped._value.get() == 3


async def test_unknown_versions_bad_input_and_the_token(
    make_client: MakeClient, trained_model: TrainResult
) -> None:
    client = await make_client(admin_token="s3cret")
    auth = {"Authorization": "Bearer s3cret"}
    routes = [("POST", "/v1/models/{v}/shadow"), ("DELETE", "/v1/models/{v}/shadow"),
              ("GET", "/v1/models/{v}/shadow-report"), ("POST", "/v1/models/{v}/promote")]  # fmt: skip
    for method, path in routes:
        unknown = await client.request(method, path.format(v="m0-nope"), headers=auth)
        assert unknown.status == 404, (method, path)
        assert (await unknown.json())["error"]["field"] == "version"
        bad = await client.request(method, path.format(v="bad%20version"), headers=auth)
        assert bad.status == 422 and (await bad.json())["error"]["field"] == "version"
        assert (await client.request(method, path.format(v="m0-nope"))).status == 401
    for method, path in (("POST", "/v1/models/rollback"), ("GET", "/v1/models/history")):
        assert (await client.request(method, path)).status == 401
    await with_champion(client, trained_model)
    version = await stage(client.app[STORE], trained_model.model_text, 2)
    for method, url, field in [
        ("POST", f"/v1/models/{version}/promote?force=maybe", "force"),
        ("GET", "/v1/models/history?limit=0", "limit"),
        ("GET", "/v1/models/history?limit=abc", "limit"),
        ("GET", f"/v1/models/history?limit={10**6}", "limit"),
    ]:
        resp = await client.request(method, url, headers=auth)
        assert resp.status == 422 and (await resp.json())["error"]["field"] == field, url
    bad_who = await client.post("/v1/models/rollback", headers={**auth, "X-Operator": "a b"})
    assert bad_who.status == 422 and (await bad_who.json())["error"]["field"] == "X-Operator"
    # Nothing before the first champion; no logs to judge a promotion on.
    assert (await client.post("/v1/models/rollback", headers=auth)).status == 409
    no_logs = await client.post(f"/v1/models/{version}/promote", headers=auth)
    assert no_logs.status == 409
    assert "not enough training data" in (await no_logs.json())["error"]["message"]


async def test_promote_checks_on_the_logs_and_rollback_returns(
    make_client: MakeClient, trained_model: TrainResult, raw: redis.Redis
) -> None:
    client = await make_client()
    store = client.app[STORE]
    first = await with_champion(client, trained_model)
    log = generate(users=40, days=2, seed=5)
    for d in log.decisions:
        raw_xadd(raw, "log:decisions", d)
    for e in log.events:
        raw_xadd(raw, "log:events", e)
    worse = await stage(store, inverted(trained_model.model_text), 2)
    twin = await stage(store, trained_model.model_text, 3)
    refused = await client.post(f"/v1/models/{worse}/promote")
    assert refused.status == 409
    assert "the champion is better" in (await refused.json())["error"]["message"]
    assert client.app[REGISTRY].version == first

    ok = await client.post(f"/v1/models/{twin}/promote", headers={"X-Operator": "bob"})
    assert ok.status == 200, await ok.text()
    report = await ok.json()
    assert report["change"] == {"action": "promote", "who": "bob", "ts": report["change"]["ts"],
                                "from": first, "to": twin, "forced": False}  # fmt: skip
    assert report["rows"] > 0 and report["metrics"]["auc"] == report["current_metrics"]["auc"]
    assert client.app[REGISTRY].version == twin
    assert (await client.post(f"/v1/models/{twin}/promote")).status == 409  # already champion

    forced = await client.post(f"/v1/models/{worse}/promote?force=true")
    assert forced.status == 200 and (await forced.json())["change"]["forced"] is True
    back = await (await client.post("/v1/models/rollback")).json()
    assert (back["from"], back["to"], back["who"]) == (worse, twin, "api")
    assert (await client.post("/v1/models/rollback")).status == 200  # and further back
    assert client.app[REGISTRY].version == first
    assert (await client.post("/v1/models/rollback")).status == 409  # nothing before it

    history = await (await client.get("/v1/models/history")).json()
    assert history["current"] == first
    assert [(c["action"], c["from"], c["to"]) for c in history["history"]] == [
        ("rollback", twin, first),
        ("rollback", worse, twin),
        ("promote", twin, worse),
        ("promote", first, twin),
        ("publish", None, first),
    ]
    assert history["history"][-1]["who"] == "test"
    assert len((await (await client.get("/v1/models/history?limit=2")).json())["history"]) == 2
