"""GET /v1/features: the declared features and the stored models trained on them."""

from __future__ import annotations

import dataclasses

from intent.features import FEATURE_NAMES, FEATURES, FEATURES_VERSION
from intent.train import TrainResult
from refreshd.http.keys import STORE
from refreshd.live.registry import publish
from tests.support import MakeClient, now_ms


async def test_every_feature_with_its_sources_window_and_models(
    make_client: MakeClient, trained_model: TrainResult
) -> None:
    client = await make_client()
    store = client.app[STORE]
    empty = await (await client.get("/v1/features")).json()
    assert all(f["models"] == [] for f in empty["features"]) and empty["other_models"] == []
    # A model of older declarations (what a deploy that changed a feature leaves behind) and a
    # real one trained on the current declarations without the last feature.
    old = dataclasses.replace(trained_model, features_version="0ld")
    old_meta = await publish(store, old, created_ts=now_ms() - 1000, source="test")
    fewer = dataclasses.replace(trained_model, feature_names=FEATURE_NAMES[:-1])
    meta = await publish(store, fewer, created_ts=now_ms(), source="test")

    resp = await client.get("/v1/features")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["features_version"] == FEATURES_VERSION
    assert [f["name"] for f in body["features"]] == list(FEATURE_NAMES)
    by_name = {f["name"]: f for f in body["features"]}
    assert by_name["ctr_24h"] | {"version": "-"} == {
        "name": "ctr_24h", "version": "-", "aggregate": "ratio",
        "source_event_types": ["click", "impression"], "window_s": 86_400, "within_s": None,
        "models": [meta.version],
    }  # fmt: skip
    assert by_name["open_then_click_60s_24h"]["within_s"] == 60
    assert by_name["open_count_5m"]["window_s"] == 300
    assert by_name["payment_value_sum_24h"]["source_event_types"] == ["payment"]
    assert by_name["hour"]["source_event_types"] == [] and by_name["hour"]["window_s"] is None
    for spec in FEATURES:
        f = by_name[spec.name]
        assert f["source_event_types"] == list(dict.fromkeys(spec.event_types + spec.then_types))
        assert f["aggregate"] == spec.kind
    # Only the model on these declarations counts, and only for the features it was fed.
    assert by_name[FEATURE_NAMES[-1]]["models"] == []
    assert all(by_name[n]["models"] == [meta.version] for n in FEATURE_NAMES[:-1])
    assert body["other_models"] == [{"version": old_meta.version, "features_version": "0ld"}]
    # Each declaration has its own version: one feature's change shows on that feature alone.
    assert len({f["version"] for f in body["features"]}) == len(FEATURES)
