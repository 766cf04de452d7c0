"""Experiment configs and assignment: validation, and bucketing identical to GrowthBook's SDK."""

from __future__ import annotations

import random
import string
from typing import Any

import msgspec
import pytest
from growthbook import Experiment, GrowthBook
from growthbook.core import chooseVariation, fnv1a32, gbhash, getBucketRanges, inNamespace
from scipy.stats import chi2

from refreshd.core.errors import InvalidValue, MalformedJSON
from refreshd.core.experiments import (
    METRICS,
    ExperimentConfig,
    ExperimentError,
    assign,
    bucket_ranges,
    choose_variation,
    experiment_to_json,
    gb_hash,
    in_namespace,
    parse_experiment,
)
from refreshd.core.experiments import fnv1a32 as our_fnv1a32
from refreshd.http.errors import error_body, wire


def make_body(**over: Any) -> dict[str, Any]:
    """Return a valid two-arm running experiment body with `over` applied."""
    body: dict[str, Any] = {
        "seed": "thr-2026",
        "hash_version": 2,
        "coverage": 1.0,
        "weights": [0.5, 0.5],
        "namespace": None,
        "status": "running",
        "variants": [
            {"key": "control", "params": {"policy": "fixed"}},
            {"key": "t30", "params": {"policy": "intent", "threshold": 0.3}},
        ],
    }
    body.update(over)
    return body


def make_variants(k: int) -> list[dict[str, Any]]:
    return [{"key": f"v{i}", "params": {"threshold": round(0.04 * i, 2)}} for i in range(k)]


def random_ids(n: int, seed: int) -> list[str]:
    """Return `n` ids: mostly uuid-like and numeric, some with non-ASCII and astral characters."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        r = rng.random()
        if r < 0.5:
            out.append(f"{rng.getrandbits(128):032x}")
        elif r < 0.8:
            out.append(str(rng.randrange(10**12)))
        elif r < 0.95:
            out.append("".join(rng.choices(string.ascii_letters + "-_.@", k=rng.randint(1, 24))))
        else:
            out.append(f"用户{i}é🙂")
    return out


# --- hashing -------------------------------------------------------------------------------


def test_public_hash_vectors() -> None:
    assert gb_hash("", "a", 1) == 0.22
    assert gb_hash("seed", "a", 2) == 0.0505


@pytest.mark.parametrize("version", [0, 3, 99, -1])
def test_unknown_hash_version_hashes_to_none(version: int) -> None:
    assert gb_hash("seed", "a", version) is None
    assert gbhash("seed", "a", version) is None


def test_fnv1a32_matches_reference_and_sdk() -> None:
    assert our_fnv1a32("") == 0x811C9DC5
    assert our_fnv1a32("a") == 0xE40C292C
    assert our_fnv1a32("foobar") == 0xBF9CF968
    for s in random_ids(2000, 11):
        assert our_fnv1a32(s) == fnv1a32(s)


def test_hash_and_namespace_match_sdk() -> None:
    for s in random_ids(3000, 12):
        for seed in ("", "thr-2026", "e1"):
            assert gb_hash(seed, s, 1) == gbhash(seed, s, 1)
            assert gb_hash(seed, s, 2) == gbhash(seed, s, 2)
        ns = ("home", 0.2, 0.65)
        assert in_namespace(s, ns) == inNamespace(s, ns)


@pytest.mark.parametrize(
    ("n", "coverage", "weights"),
    [
        (2, 1.0, None),
        (3, 0.5, [0.1, 0.3, 0.6]),
        (4, 0.0, [0.25, 0.25, 0.25, 0.25]),
        (2, 1.7, [0.5, 0.5]),  # clamped to 1
        (2, -0.2, [0.5, 0.5]),  # clamped to 0
        (2, 1.0, [0.7, 0.7]),  # unusable: equal weights
        (3, 0.9, [0.5, 0.5]),  # wrong length: equal weights
        (2, 0.8, [1.2, -0.2]),  # negative: equal weights
        (5, 0.35, [0.2] * 5),
    ],
)
def test_bucket_ranges_match_sdk(n: int, coverage: float, weights: list[float] | None) -> None:
    assert bucket_ranges(n, coverage, weights) == getBucketRanges(n, coverage, weights)
    ranges = bucket_ranges(n, coverage, weights)
    for h in [i / 10000 for i in range(0, 10000, 7)]:
        assert choose_variation(h, ranges) == chooseVariation(h, ranges)


# --- assignment against the SDK's experiment runner ------------------------------------------

CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("v2-equal", make_body()),
    (
        "v1-unequal-coverage",
        make_body(hash_version=1, coverage=0.5, weights=[0.1, 0.3, 0.6], variants=make_variants(3)),
    ),
    ("v2-namespace", make_body(namespace=["home-reco", 0.25, 0.75], coverage=0.9)),
    (
        "v1-namespace-empty-seed",
        make_body(
            hash_version=1,
            seed="",
            namespace=["ns", 0.0, 0.4],
            weights=[0.4, 0.2, 0.2, 0.2],
            variants=make_variants(4),
        ),
    ),
    (
        "v2-gradient-no-seed",
        make_body(seed=None, coverage=0.35, weights=None, variants=make_variants(5)),
    ),
    (
        "v2-weights-within-tolerance",
        make_body(weights=[0.3333333, 0.3333333, 0.3333334], variants=make_variants(3)),
    ),
]


def sdk_experiment(exp_id: str, cfg: ExperimentConfig) -> Experiment[int]:
    return Experiment(
        key=exp_id,
        variations=list(range(len(cfg.variants))),
        weights=cfg.weights,
        coverage=cfg.coverage,
        namespace=cfg.namespace,
        hashAttribute="user_id",
        hashVersion=cfg.hash_version,
        seed=cfg.seed,
        status=cfg.status,
    )


@pytest.mark.parametrize(("exp_id", "body"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_assignment_identical_to_growthbook(exp_id: str, body: dict[str, Any]) -> None:
    cfg = parse_experiment(exp_id, body)
    exp = sdk_experiment(exp_id, cfg)
    gb = GrowthBook(attributes={})
    inside = 0
    try:
        for uid in random_ids(5000, sum(map(ord, exp_id))):
            gb.set_attributes({"user_id": uid})
            want = gb.run(exp)
            got = assign(exp_id, cfg, uid)
            assert got.in_experiment == want.inExperiment, uid
            if want.inExperiment:
                inside += 1
                assert got.variation_id == want.variationId, uid
                assert got.variant == cfg.variants[want.variationId].key
                assert got.hash == want.bucket
            else:
                assert got.variant is None and got.variation_id is None
    finally:
        gb.destroy()
    assert inside > 500


@pytest.mark.parametrize("status", ["draft", "stopped"])
def test_only_running_experiments_assign(status: str) -> None:
    cfg = parse_experiment("e", make_body(status=status))
    exp = sdk_experiment("e", cfg)
    gb = GrowthBook(attributes={})
    try:
        for uid in random_ids(200, 3):
            gb.set_attributes({"user_id": uid})
            assert not gb.run(exp).inExperiment
            got = assign("e", cfg, uid)
            assert got == assign("e", cfg, uid)
            assert not got.in_experiment and got.hash is None
    finally:
        gb.destroy()


def test_unknown_hash_version_at_assignment_is_not_in_experiment() -> None:
    cfg = parse_experiment("e", make_body())
    odd = msgspec.structs.replace(cfg, hash_version=3)
    assert not assign("e", odd, "u1").in_experiment
    assert assign("e", odd, "u1").hash is None


def test_empty_user_id_is_not_in_experiment() -> None:
    assert not assign("e", parse_experiment("e", make_body()), "").in_experiment


def test_assignment_is_deterministic_and_seed_defaults_to_id() -> None:
    cfg = parse_experiment("thr-2026", make_body(seed=None))
    same = parse_experiment("other-id", make_body(seed="thr-2026"))
    for uid in random_ids(500, 4):
        a = assign("thr-2026", cfg, uid)
        assert a == assign("thr-2026", cfg, uid)
        assert a == assign("other-id", same, uid)


def test_coverage_and_weight_proportions_on_20000_ids() -> None:
    weights = [0.5, 0.2, 0.2, 0.1]
    cfg = parse_experiment(
        "prop", make_body(coverage=0.6, weights=weights, variants=make_variants(4))
    )
    ids = [f"user-{i}" for i in range(20_000)]
    counts = [0] * 4
    for uid in ids:
        a = assign("prop", cfg, uid)
        if a.in_experiment:
            assert a.variation_id is not None
            counts[a.variation_id] += 1
    inside = sum(counts)
    # Binomial: 4.5 standard deviations around 0.6 * 20 000.
    assert abs(inside - 12_000) < 4.5 * (20_000 * 0.6 * 0.4) ** 0.5
    stat = sum((c - w * inside) ** 2 / (w * inside) for c, w in zip(counts, weights, strict=True))
    assert chi2.sf(stat, 3) > 0.001, counts


def test_namespace_admits_its_share_and_lowering_coverage_never_moves_users() -> None:
    wide = parse_experiment("ns", make_body(namespace=["reco", 0.1, 0.4], coverage=1.0))
    narrow = msgspec.structs.replace(wide, coverage=0.5)
    ids = [f"u{i}" for i in range(20_000)]
    in_ns = sum(in_namespace(u, ("reco", 0.1, 0.4)) for u in ids)
    assert abs(in_ns / len(ids) - 0.3) < 0.015
    for uid in ids:
        a, b = assign("ns", wide, uid), assign("ns", narrow, uid)
        assert a.in_experiment == in_namespace(uid, ("reco", 0.1, 0.4))
        if b.in_experiment:
            assert a.variant == b.variant


# --- config validation ---------------------------------------------------------------------


def test_defaults_and_round_trip() -> None:
    cfg = parse_experiment("e", {"variants": [{"key": "a"}, {"key": "b"}]})
    assert cfg.seed is None
    assert cfg.hash_version == 2
    assert cfg.coverage == 1.0
    assert cfg.weights is None and cfg.namespace is None
    assert cfg.hash_attribute == "user_id"
    assert cfg.metrics == list(METRICS)
    assert cfg.status == "draft"
    full = parse_experiment("e", make_body(namespace=["n", 0, 0.5]))
    js = experiment_to_json(full)
    assert js["namespace"] == ["n", 0.0, 0.5]
    assert parse_experiment("e", js) == full
    assert parse_experiment("e", msgspec.json.encode(js)) == full
    assert parse_experiment("e", msgspec.json.encode(js).decode()) == full
    assert js["variants"][0] == {"key": "control", "params": {"policy": "fixed"}}


ERRORS: list[tuple[str, dict[str, Any], str | None]] = [
    ("weights sum", make_body(weights=[0.5, 0.4]), "weights"),
    ("weights sum just outside tolerance", make_body(weights=[0.5, 0.500002]), "weights"),
    ("weights length", make_body(weights=[0.2, 0.3, 0.5]), "weights"),
    ("weights negative", make_body(weights=[-0.5, 1.5]), "weights[0]"),
    ("weights nan", make_body(weights=[float("nan"), 0.5]), "weights[0]"),
    ("weights not numbers", make_body(weights=["a", "b"]), "weights[0]"),
    ("coverage above 1", make_body(coverage=1.5), "coverage"),
    ("coverage below 0", make_body(coverage=-0.1), "coverage"),
    ("coverage bool", make_body(coverage=True), "coverage"),
    (
        "duplicate keys",
        make_body(variants=[{"key": "a"}, {"key": "a"}], weights=None),
        "variants[1].key",
    ),
    ("one variant", make_body(variants=[{"key": "a"}], weights=None), "variants"),
    ("no variants", make_body(variants=[], weights=None), "variants"),
    ("too many variants", make_body(variants=make_variants(21), weights=None), "variants"),
    ("missing variants", {"status": "running"}, "variants"),
    ("bad key", make_body(variants=[{"key": "a b"}, {"key": "c"}]), "variants[0].key"),
    ("unknown field", make_body(colour="red"), "colour"),
    (
        "unknown param",
        make_body(variants=[{"key": "a", "params": {"colour": 1}}, {"key": "b"}]),
        "variants[0].params.colour",
    ),
    (
        "unknown variant field",
        make_body(variants=[{"key": "a", "weight": 1}, {"key": "b"}]),
        "variants[0].weight",
    ),
    ("namespace start >= end", make_body(namespace=["n", 0.5, 0.5]), "namespace"),
    ("namespace outside [0,1]", make_body(namespace=["n", 0.5, 1.2]), "namespace"),
    ("namespace negative", make_body(namespace=["n", -0.1, 0.2]), "namespace"),
    ("namespace length", make_body(namespace=["n", 0.5]), "namespace"),
    (
        "threshold above 1",
        make_body(variants=[{"key": "a"}, {"key": "b", "params": {"threshold": 1.5}}]),
        "variants[1].params.threshold",
    ),
    (
        "threshold below 0",
        make_body(variants=[{"key": "a"}, {"key": "b", "params": {"threshold": -0.1}}]),
        "variants[1].params.threshold",
    ),
    (
        "negative fallback",
        make_body(variants=[{"key": "a", "params": {"fallback_interval_s": -1}}, {"key": "b"}]),
        "variants[0].params.fallback_interval_s",
    ),
    (
        "unknown policy",
        make_body(variants=[{"key": "a", "params": {"policy": "random"}}, {"key": "b"}]),
        "variants[0].params.policy",
    ),
    ("hash version 3", make_body(hash_version=3), "hash_version"),
    ("hash version 0", make_body(hash_version=0), "hash_version"),
    ("hash attribute", make_body(hash_attribute="device_id"), "hash_attribute"),
    ("status", make_body(status="paused"), "status"),
    ("unknown metric", make_body(metrics=["ctr"]), "metrics[0]"),
    ("repeated metric", make_body(metrics=["clicks", "clicks"]), "metrics"),
    ("no metrics", make_body(metrics=[]), "metrics"),
    ("seed type", make_body(seed=7), "seed"),
]


@pytest.mark.parametrize(
    ("body", "field"), [(b, f) for _, b, f in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_validation_errors_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ExperimentError) as info:
        parse_experiment("e", body)
    err = info.value
    assert err.field == field, str(err)
    assert isinstance(err, ValueError) and isinstance(err, InvalidValue)
    assert wire(err).status == 422
    assert error_body(err) == {
        "error": {"code": "invalid_value", "message": str(err), "field": field}
    }


def test_non_object_body_and_malformed_json() -> None:
    with pytest.raises(ExperimentError):
        parse_experiment("e", msgspec.json.encode([1, 2]))
    with pytest.raises(MalformedJSON):
        parse_experiment("e", b"{not json")
    with pytest.raises(MalformedJSON):
        parse_experiment("e", b"\xff\xfe")


def test_weights_within_tolerance_are_accepted() -> None:
    cfg = parse_experiment("e", make_body(weights=[0.5, 0.5000005]))
    assert cfg.weights == [0.5, 0.5000005]
