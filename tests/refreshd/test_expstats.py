"""Experiment statistics: incremental sufficient statistics, and the report against gbstats."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refreshd.core.experiments import METRICS, ExperimentConfig, parse_experiment
from refreshd.core.expstats import (
    SPECS,
    Moments,
    Summary,
    UserTotals,
    VariantStats,
    apply_delta,
    build_report,
    compare,
    delta_fields,
    observation_fields,
    srm_p_value,
    stats_from_fields,
    stats_from_users,
    stats_to_fields,
    summarize,
)

DATA = Path(__file__).parent / "data"
REFERENCE = json.loads((DATA / "gbstats_reference.json").read_text())
CASES = REFERENCE["cases"]
# Agreement with gbstats to 1e-4 would do; the math is the same, so hold it to float noise
# (observed < 1e-14).
TOL = 1e-7


def make_config(k: int = 2, weights: list[float] | None = None, **over: Any) -> ExperimentConfig:
    body: dict[str, Any] = {
        "status": "running",
        "variants": [{"key": f"v{i}"} for i in range(k)],
        "weights": weights,
    }
    body.update(over)
    return parse_experiment("exp", body)


def stats_for(metric: str, row: dict[str, int]) -> VariantStats:
    mo = Moments(**{k: row[k] for k in ("sum_x", "sum_x2", "sum_y", "sum_y2", "sum_xy")})
    return VariantStats(users=row["users"], metrics={metric: mo})


def close(ours: float | None, theirs: float) -> bool:
    return ours is not None and math.isclose(ours, theirs, rel_tol=TOL, abs_tol=1e-10)


# --- against gbstats -----------------------------------------------------------------------


def test_reference_generator_uses_our_metric_definitions() -> None:
    spec = importlib.util.spec_from_file_location("make_ref", DATA / "make_gbstats_reference.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert set(mod.METRIC_SETTINGS) == set(METRICS)
    for name, gb in mod.METRIC_SETTINGS.items():
        ours = SPECS[name]
        assert gb["main_metric_type"] == ours.numerator
        assert gb.get("denominator_metric_type") == ours.denominator
        assert gb["statistic_type"] == ("ratio" if ours.denominator else "mean")
        assert gb["inverse"] == ours.inverse
    assert REFERENCE["gbstats_version"] == "0.8.0"
    assert len(CASES) >= 5


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_report_matches_gbstats(case: dict[str, Any]) -> None:
    metric = case["metric"]
    cfg = make_config(len(case["variants"]), case["weights"], metrics=[metric])
    stats = {v["key"]: stats_for(metric, v) for v in case["variants"]}
    report = build_report("exp", cfg, stats)
    gb = case["gbstats"]
    assert close(report.srm_p, gb["srm_p"])
    assert report.srm_warning == (gb["srm_p"] < 0.001)
    base = report.variants[0].metrics[metric]
    assert base.mean is None or close(base.mean, gb["variants"][0]["cr"])
    assert base.relative_lift is None and base.ci is None and base.p_value is None
    assert base.absolute_lift is None and base.chance_to_win is None
    for ours_v, theirs in zip(report.variants[1:], gb["variants"][1:], strict=True):
        ours = ours_v.metrics[metric]
        rel, ab, bayes = theirs["relative"], theirs["absolute"], theirs["bayesian"]
        # gbstats reports 0 for an undefined mean (no users, zero denominator); we say null.
        assert close(ours.mean, theirs["cr"]) or (ours.mean is None and theirs["cr"] == 0)
        if rel["error"] is None:
            assert close(ours.relative_lift, rel["expected"])
            assert ours.ci is not None and all(map(close, ours.ci, rel["ci"]))
            assert close(ours.p_value, rel["p_value"])
            assert close(ours.absolute_lift, ab["expected"])
            assert ours.absolute_ci is not None and all(map(close, ours.absolute_ci, ab["ci"]))
            assert close(ours.chance_to_win, bayes["chance_to_win"])
        else:
            # gbstats' placeholder result (ci [0, 0], p 1, chance 0.5) becomes nulls.
            assert bayes["error"] is not None
            assert ours.ci is ours.absolute_ci is ours.p_value is ours.chance_to_win is None
            assert ours.relative_lift is None or close(ours.relative_lift, rel["expected"])


def test_reference_covers_every_metric_and_edge() -> None:
    assert {c["metric"] for c in CASES} == set(METRICS)
    errors = {v["relative"]["error"] for c in CASES for v in c["gbstats"]["variants"][1:]}
    assert {None, "ZERO_NEGATIVE_VARIANCE", "ZERO_NEGATIVE_BASELINE_VARIATION"} <= errors


# --- SRM -----------------------------------------------------------------------------------


def test_srm_flags_52_48_on_100000_users() -> None:
    report = build_report(
        "exp", make_config(), {"v0": VariantStats(users=52_000), "v1": VariantStats(users=48_000)}
    )
    assert report.srm_p < 1e-30 and report.srm_warning


def test_srm_does_not_flag_50_2_49_8_on_10000_users() -> None:
    report = build_report(
        "exp", make_config(), {"v0": VariantStats(users=5_020), "v1": VariantStats(users=4_980)}
    )
    assert report.srm_p == pytest.approx(0.6892, abs=1e-4) and not report.srm_warning


def test_srm_uses_the_configured_weights() -> None:
    users = {"v0": VariantStats(users=8_000), "v1": VariantStats(users=2_000)}
    assert not build_report("exp", make_config(2, [0.8, 0.2]), users).srm_warning
    assert build_report("exp", make_config(2, [0.5, 0.5]), users).srm_warning
    assert srm_p_value([0, 0, 0], [0.2, 0.3, 0.5]) == 1.0


# --- report shape and degenerate inputs ------------------------------------------------------


def no_nan(obj: Any) -> Any:
    """Decode report JSON, failing on NaN/Infinity (which msgspec would never write anyway)."""

    def refuse(const: str) -> None:
        raise AssertionError(f"JSON contains {const}")

    return json.loads(msgspec.json.encode(obj), parse_constant=refuse)


def test_report_shape_matches_design() -> None:
    users = [
        UserTotals(refreshes=r, clicks=c, impressions=i)
        for r, c, i in [(3, 1, 5), (2, 0, 4), (5, 2, 6), (1, 0, 0)]
    ]
    stats = {"v0": stats_from_users(users), "v1": stats_from_users(users[1:] + users[:2])}
    doc = no_nan(build_report("exp", make_config(), stats))
    assert set(doc) == {
        "experiment", "srm_p", "srm_warning", "variants", "power", "stats", "guardrails",
    }  # fmt: skip
    assert doc["guardrails"] == []  # none configured
    assert doc["stats"]["engine"] == "frequentist" and doc["stats"]["correction"] is None
    assert doc["experiment"] == "exp"
    assert [v["key"] for v in doc["variants"]] == ["v0", "v1"]
    for v in doc["variants"]:
        assert set(v) == {"key", "users", "metrics"}
        assert list(v["metrics"]) == list(METRICS)
        for m in v["metrics"].values():
            assert {
                "mean",
                "relative_lift",
                "absolute_lift",
                "ci",
                "p_value",
                "chance_to_win",
            } <= set(m)
    base = doc["variants"][0]["metrics"]["pvctr"]
    assert base["mean"] == pytest.approx(3 / 15)
    assert base["relative_lift"] is None and base["ci"] is None
    treated = doc["variants"][1]["metrics"]
    assert treated["clicks"]["ci"] is not None and len(treated["clicks"]["ci"]) == 2


def test_report_only_lists_configured_metrics() -> None:
    doc = no_nan(build_report("exp", make_config(metrics=["uvctr", "clicks"]), {}))
    assert list(doc["variants"][0]["metrics"]) == ["uvctr", "clicks"]


@pytest.mark.parametrize(
    "stats",
    [
        {},  # no users at all
        {"v0": VariantStats(users=10)},  # treatment empty, baseline all zeros
        {"v0": VariantStats(users=1), "v1": VariantStats(users=1)},  # n = 1: no variance
        {
            "v0": stats_from_users([UserTotals(clicks=1, impressions=1)] * 5),
            "v1": stats_from_users([UserTotals(clicks=2, impressions=2)] * 5),
        },  # zero variance
        {
            "v0": stats_from_users([UserTotals(refreshes=2)] * 5),
            "v1": stats_from_users([UserTotals(refreshes=1, clicks=1)] * 5),
        },  # zero denominators
    ],
    ids=["no-users", "empty-treatment", "single-users", "zero-variance", "zero-denominator"],
)
def test_degenerate_inputs_give_nulls_not_nan(stats: dict[str, VariantStats]) -> None:
    doc = no_nan(build_report("exp", make_config(3), stats))
    assert doc["srm_warning"] in (True, False)
    for v in doc["variants"][1:]:
        for m in v["metrics"].values():
            assert m["ci"] is None and m["p_value"] is None and m["chance_to_win"] is None


def test_zero_denominator_ratio_mean_is_null() -> None:
    s = stats_from_users([UserTotals(refreshes=2)] * 3)
    assert summarize(SPECS["pvctr"], s.users, s.metrics["pvctr"]).mean is None
    assert summarize(SPECS["uvctr"], s.users, s.metrics["uvctr"]).mean is None
    assert summarize(SPECS["clicks"], 0, Moments()).mean is None


def test_inverse_metric_chance_to_win_favours_fewer_refreshes() -> None:
    a = Summary(n=1000, mean=3.0, variance=3.0)
    b = Summary(n=1000, mean=2.8, variance=2.8)
    lower, higher = compare(a, b, inverse=True).chance_to_win, compare(a, b).chance_to_win
    assert lower is not None and higher is not None
    assert lower == pytest.approx(1 - higher) and lower > 0.99


# --- incremental statistics ------------------------------------------------------------------


def test_metric_definitions_per_user() -> None:
    s = stats_from_users(
        [
            UserTotals(refreshes=2, clicks=3, impressions=7),
            UserTotals(clicks=1),
            UserTotals(impressions=4),
        ]
    )
    assert s.users == 3
    assert s.metrics["refresh_requests"] == Moments(sum_x=2, sum_x2=4)
    assert s.metrics["clicks"] == Moments(sum_x=4, sum_x2=10)
    assert s.metrics["converted"] == Moments(sum_x=2, sum_x2=2)
    assert s.metrics["pvctr"] == Moments(sum_x=4, sum_x2=10, sum_y=11, sum_y2=65, sum_xy=21)
    # The clicker without an impression counts in neither numerator nor denominator.
    assert s.metrics["uvctr"] == Moments(sum_x=1, sum_x2=1, sum_y=2, sum_y2=2, sum_xy=1)


def test_first_exposure_counts_the_user_once() -> None:
    s = apply_delta(VariantStats(), None, UserTotals())
    assert s.users == 1 and delta_fields(None, UserTotals()) == {"users": 1}
    s = apply_delta(s, UserTotals(), UserTotals(clicks=2))
    assert s.users == 1 and s.metrics["clicks"].sum_x2 == 4
    assert delta_fields(UserTotals(clicks=2), UserTotals(clicks=2)) == {}


def test_fields_round_trip_including_redis_bytes() -> None:
    s = stats_from_users(
        [UserTotals(refreshes=1, clicks=2, impressions=3), UserTotals(clicks=1, impressions=1)]
    )
    flat = stats_to_fields(s)
    assert stats_from_fields(flat) == s
    assert stats_from_fields({k.encode(): str(v).encode() for k, v in flat.items()}) == s
    assert stats_from_fields({}) == VariantStats()


totals = st.builds(
    UserTotals,
    refreshes=st.integers(0, 50),
    clicks=st.integers(0, 30),
    impressions=st.integers(0, 60),
)


@settings(max_examples=150, deadline=None)
@given(
    users=st.lists(st.lists(totals, min_size=1, max_size=5), min_size=1, max_size=12),
    order=st.randoms(use_true_random=False),
)
def test_incremental_updates_equal_recomputation(users: list[list[UserTotals]], order: Any) -> None:
    """Users' totals change in any interleaving; applying deltas equals summing final totals.

    Totals here may also go down (a re-count after a late correction): deltas cope with both.
    """
    steps = [(u, k) for u, seq in enumerate(users) for k in range(len(seq))]
    order.shuffle(steps)
    steps.sort(key=lambda s: s[1])  # per user, updates stay in order; users interleave
    last: dict[int, UserTotals] = {}
    s = VariantStats()
    flat: dict[str, int] = {}
    for u, k in steps:
        new = users[u][k]
        d = delta_fields(last.get(u), new)
        s = apply_delta(s, last.get(u), new)
        for f, v in d.items():  # what HINCRBY would do in the store
            flat[f] = flat.get(f, 0) + v
        last[u] = new
    final = stats_from_users([seq[-1] for seq in users])
    assert s == final
    assert stats_from_fields(flat) == final
    report_a = build_report("exp", make_config(), {"v0": final, "v1": s})
    assert all(m.relative_lift in (0.0, None) for m in report_a.variants[1].metrics.values())


@settings(max_examples=100, deadline=None)
@given(a=st.lists(totals, max_size=40), b=st.lists(totals, max_size=40))
def test_report_is_always_finite_json(a: list[UserTotals], b: list[UserTotals]) -> None:
    doc = no_nan(
        build_report("exp", make_config(), {"v0": stats_from_users(a), "v1": stats_from_users(b)})
    )
    for v in doc["variants"][1:]:
        for m in v["metrics"].values():
            if m["p_value"] is not None:
                assert 0.0 <= m["p_value"] <= 1.0
                assert 0.0 <= m["chance_to_win"] <= 1.0
                lo, hi = m["ci"]
                assert lo <= m["relative_lift"] <= hi


# --- guardrails ---


def test_an_arm_that_doubles_location_fixes_breaches_the_guardrail() -> None:
    rng = np.random.default_rng(7)
    fixes = rng.poisson(6, size=(2, 400))
    stats = {
        "v0": stats_from_users([UserTotals(fixes=int(f)) for f in fixes[0]]),
        "v1": stats_from_users([UserTotals(fixes=2 * int(f)) for f in fixes[1]]),
    }
    cfg = make_config(guardrails=["location_fixes", "clicks"])
    doc = no_nan(build_report("exp", cfg, stats))
    by_metric = {g["metric"]: g for g in doc["guardrails"]}
    fixes_g = by_metric["location_fixes"]
    assert fixes_g["variant"] == "v1" and fixes_g["breached"] is True
    assert fixes_g["ci"][0] > 0 and fixes_g["relative_change"] == pytest.approx(1.0, abs=0.15)
    # No clicks at all: no interval, nothing breached.
    assert by_metric["clicks"]["ci"] is None and by_metric["clicks"]["breached"] is False


def test_a_guardrail_breaches_only_in_its_bad_direction() -> None:
    rng = np.random.default_rng(8)
    clicks = rng.poisson(4, size=(2, 400))
    fewer = {
        "v0": stats_from_users([UserTotals(clicks=int(c), fixes=int(c)) for c in clicks[0]]),
        "v1": stats_from_users(
            [UserTotals(clicks=int(c) // 2, fixes=int(c) // 2) for c in clicks[1]]
        ),
    }
    doc = no_nan(build_report("exp", make_config(guardrails=["clicks", "location_fixes"]), fewer))
    breached = {g["metric"]: g["breached"] for g in doc["guardrails"]}
    # Half the clicks is worse (clicks should rise); half the fixes is better (they should not).
    assert breached == {"clicks": True, "location_fixes": False}


def test_per_request_guardrails_compare_means_over_requests() -> None:
    def arm(latencies_us: list[int], errors: list[int]) -> VariantStats:
        fields: dict[str, int] = {"users": 10}
        for v in latencies_us:
            for k, inc in observation_fields("decision_latency_ms", v).items():
                fields[k] = fields.get(k, 0) + inc
        for v in errors:
            for k, inc in observation_fields("error_responses", v).items():
                fields[k] = fields.get(k, 0) + inc
        return stats_from_fields(fields)

    rng = np.random.default_rng(9)
    base = arm([int(x) for x in rng.normal(2000, 300, 500)], [0] * 490 + [1] * 10)
    slow = arm([int(x) for x in rng.normal(3000, 300, 500)], [0] * 495 + [1] * 5)
    cfg = make_config(guardrails=["decision_latency_ms", "error_responses"])
    doc = no_nan(build_report("exp", cfg, {"v0": base, "v1": slow}))
    by_metric = {g["metric"]: g for g in doc["guardrails"]}
    assert by_metric["decision_latency_ms"]["breached"] is True
    assert by_metric["decision_latency_ms"]["relative_change"] == pytest.approx(0.5, abs=0.05)
    assert by_metric["error_responses"]["breached"] is False  # fewer errors
    assert by_metric["error_responses"]["relative_change"] == pytest.approx(-0.5)
    # The sums survive the store's flat form.
    assert stats_from_fields(stats_to_fields(slow)) == slow
