"""The report's statistics options against gbstats itself, run on the same inputs.

CUPED, the sequential test and the Bayesian engine are compared with gbstats' own classes
(`RegressionAdjustedStatistic`, `SequentialTwoSidedTTest`, `EffectBayesianABTest`); the
corrections with GrowthBook's own test vectors and the procedures' definitions over p-values
gbstats computed; the variance reduction of CUPED on users simulated through the decide and
events flow.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Any

import msgspec
import numpy as np
import pytest
from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig, GaussianPrior
from gbstats.frequentist.tests import (
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import (
    ProportionStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
    compute_theta,
)
from scipy import stats as sps

from intent.events import Event
from refreshd.core import flow
from refreshd.core.abtest import adjust_p_values
from refreshd.core.activity import DAY_MS
from refreshd.core.experiments import ExperimentConfig, parse_experiment
from refreshd.core.expstats import (
    SPECS,
    UserTotals,
    VariantStats,
    build_report,
    stats_from_fields,
    stats_from_users,
    summarize,
)
from refreshd.core.ladder import Scored
from refreshd.core.messages import DecideRequest, EventsRequest
from refreshd.core.power import mde, power, users_per_arm
from refreshd.core.rules import RuleSet
from refreshd.core.state import UserState

TOL = 1e-6  # the acceptance bound (relative); observed agreement is float noise


def close(ours: float | None, theirs: float) -> bool:
    return ours is not None and math.isclose(ours, theirs, rel_tol=TOL, abs_tol=1e-12)


def config(k: int = 2, metrics: list[str] | None = None, **stats: Any) -> ExperimentConfig:
    body: dict[str, Any] = {
        "status": "running",
        "variants": [{"key": f"v{i}"} for i in range(k)],
        "stats": stats,
    }
    if metrics is not None:
        body["metrics"] = metrics
    return parse_experiment("exp", body)


# --- synthetic users with a pre-period --------------------------------------------------------


def synthetic_arm(
    rng: np.random.Generator, n: int, lift: float
) -> tuple[list[UserTotals], list[UserTotals]]:
    """Users with a persistent click rate: pre-period and experiment totals both follow it."""
    rate = rng.gamma(1.5, 0.6, n)
    pre_clicks, clicks = rng.poisson(3 * rate), rng.poisson(3 * rate * (1 + lift))
    pre_ref, ref = rng.poisson(2 + rate), rng.poisson(2 + rate)
    post = [
        UserTotals(refreshes=int(r), clicks=int(c), impressions=int(c) + 2)
        for r, c in zip(ref, clicks, strict=True)
    ]
    pre = [
        UserTotals(refreshes=int(r), clicks=int(c))
        for r, c in zip(pre_ref, pre_clicks, strict=True)
    ]
    return post, pre


@pytest.fixture(scope="module")
def arms() -> list[VariantStats]:
    rng = np.random.default_rng(20)
    out = []
    for lift, n in [(0.0, 700), (0.08, 650), (-0.05, 720)]:
        post, pre = synthetic_arm(rng, n, lift)
        out.append(stats_from_users(post, pre))
    return out


def keyed(arms: list[VariantStats]) -> dict[str, VariantStats]:
    return {f"v{i}": s for i, s in enumerate(arms)}


def gb_plain(metric: str, s: VariantStats) -> SampleMeanStatistic | ProportionStatistic:
    mo, n = s.metrics[metric], s.users
    if SPECS[metric].numerator == "binomial":
        return ProportionStatistic(n=n, sum=mo.sum_x)
    return SampleMeanStatistic(n=n, sum=mo.sum_x, sum_squares=mo.sum_x2)


def gb_cuped(metric: str, s: VariantStats) -> RegressionAdjustedStatistic:
    mo, n = s.metrics[metric], s.users
    if SPECS[metric].numerator == "binomial":
        post: Any = ProportionStatistic(n=n, sum=mo.sum_x)
        pre: Any = ProportionStatistic(n=n, sum=mo.sum_c)
    else:
        post = SampleMeanStatistic(n=n, sum=mo.sum_x, sum_squares=mo.sum_x2)
        pre = SampleMeanStatistic(n=n, sum=mo.sum_c, sum_squares=mo.sum_c2)
    return RegressionAdjustedStatistic(
        n=n, post_statistic=post, pre_statistic=pre, post_pre_sum_of_products=mo.sum_xc, theta=0
    )


def assert_frequentist(ours: Any, rel: Any, ab: Any) -> None:
    assert rel.error_message is None and ab.error_message is None
    assert close(ours.relative_lift, rel.expected)
    assert ours.ci is not None and all(map(close, ours.ci, rel.ci))
    assert close(ours.p_value, rel.p_value)
    assert close(ours.absolute_lift, ab.expected)
    assert ours.absolute_ci is not None and all(map(close, ours.absolute_ci, ab.ci))


@pytest.mark.parametrize("metric", ["clicks", "refresh_requests", "converted"])
def test_cuped_matches_gbstats_regression_adjusted_statistic(
    arms: list[VariantStats], metric: str
) -> None:
    report = build_report("exp", config(3, cuped=True), keyed(arms))
    for i in (1, 2):
        ours = report.variants[i].metrics[metric]
        a, b = gb_cuped(metric, arms[0]), gb_cuped(metric, arms[i])
        theta = compute_theta(gb_cuped(metric, arms[0]), gb_cuped(metric, arms[i]))
        rel = TwoSidedTTest(a, b).compute_result()
        ab = TwoSidedTTest(
            gb_cuped(metric, arms[0]),
            gb_cuped(metric, arms[i]),
            FrequentistConfig(difference_type="absolute"),
        ).compute_result()
        assert_frequentist(ours, rel, ab)
        assert ours.cuped is not None and close(ours.cuped.theta, theta)
        assert close(ours.cuped.adjusted_mean, b.mean) and close(
            ours.cuped.baseline_adjusted_mean, a.mean
        )
        # The reported mean stays the unadjusted one, as gbstats reports it.
        assert close(ours.mean, b.unadjusted_mean)
        bayes = EffectBayesianABTest(
            gb_cuped(metric, arms[0]),
            gb_cuped(metric, arms[i]),
            EffectBayesianConfig(inverse=SPECS[metric].inverse),
        ).compute_result()
        assert close(ours.chance_to_win, bayes.chance_to_win)
        assert (
            ours.risk is not None
            and close(ours.risk.baseline, bayes.risk[0])
            and close(ours.risk.variant, bayes.risk[1])
        )
        plain = TwoSidedTTest(gb_plain(metric, arms[0]), gb_plain(metric, arms[i])).compute_result()
        expected_reduction = 1 - rel.uplift.stddev**2 / plain.uplift.stddev**2
        assert close(ours.cuped.variance_reduction, expected_reduction)
        assert ours.cuped.variance_reduction > 0  # the covariate is informative here


def test_ratio_metrics_are_not_adjusted(arms: list[VariantStats]) -> None:
    report = build_report("exp", config(3, cuped=True), keyed(arms))
    assert report.variants[1].metrics["pvctr"].cuped is None
    plain = build_report("exp", config(3), keyed(arms))
    assert report.variants[1].metrics["pvctr"] == plain.variants[1].metrics["pvctr"]
    assert plain.variants[1].metrics["clicks"].cuped is None


def test_cuped_without_a_pre_period_falls_back_like_gbstats() -> None:
    """No covariate variance: gbstats' theta is 0 and it analyses the plain statistic."""
    rng = np.random.default_rng(3)
    arms = [stats_from_users(synthetic_arm(rng, 200, 0.1)[0]) for _ in range(2)]  # no pres
    cuped = build_report("exp", config(cuped=True), {"v0": arms[0], "v1": arms[1]})
    plain = build_report("exp", config(), {"v0": arms[0], "v1": arms[1]})
    assert cuped.variants[1].metrics == plain.variants[1].metrics
    assert compute_theta(gb_cuped("clicks", arms[0]), gb_cuped("clicks", arms[1])) == 0


# --- sequential -------------------------------------------------------------------------------


@pytest.mark.parametrize("cuped", [False, True])
@pytest.mark.parametrize("tuning", [5000.0, 300.0])
def test_sequential_matches_gbstats(arms: list[VariantStats], cuped: bool, tuning: float) -> None:
    cfg = config(3, sequential=True, sequential_tuning=tuning, cuped=cuped)
    report = build_report("exp", cfg, keyed(arms))
    make = gb_cuped if cuped else gb_plain
    for metric in ("clicks", "refresh_requests", "converted"):
        for i in (1, 2):
            seq = SequentialConfig(sequential_tuning_parameter=tuning)
            rel = SequentialTwoSidedTTest(
                make(metric, arms[0]), make(metric, arms[i]), seq
            ).compute_result()
            ab = SequentialTwoSidedTTest(
                make(metric, arms[0]),
                make(metric, arms[i]),
                SequentialConfig(sequential_tuning_parameter=tuning, difference_type="absolute"),
            ).compute_result()
            assert_frequentist(report.variants[i].metrics[metric], rel, ab)


def test_sequential_interval_is_wider_than_the_fixed_horizon_one(arms: list[VariantStats]) -> None:
    stats = {"v0": arms[0], "v1": arms[1]}
    fixed = build_report("exp", config(), stats).variants[1].metrics["clicks"]
    seq = build_report("exp", config(sequential=True), stats).variants[1].metrics["clicks"]
    assert fixed.ci is not None and seq.ci is not None and fixed.p_value is not None
    assert seq.ci[1] - seq.ci[0] > fixed.ci[1] - fixed.ci[0]
    assert seq.p_value is not None and seq.p_value >= fixed.p_value


def test_sequential_p_value_of_a_huge_effect_does_not_overflow() -> None:
    big = stats_from_users([UserTotals(clicks=c) for c in [40, 41] * 1000])
    small = stats_from_users([UserTotals(clicks=c) for c in [0, 1] * 1000])
    r = build_report("exp", config(sequential=True), {"v0": small, "v1": big})
    assert r.variants[1].metrics["clicks"].p_value == 0.0


# --- corrections --------------------------------------------------------------------------------


def test_corrections_match_growthbooks_own_test_vectors() -> None:
    # GrowthBook's back-end unit tests (adjustPValuesHolmBonferroni / ...BenjaminiHochberg).
    holm = adjust_p_values([0.01, 0.04, 0.03, 0.005, 0.55, 0.6], "holm-bonferroni")
    assert holm == pytest.approx([0.05, 0.12, 0.12, 0.03, 1, 1], rel=1e-12)
    bh = adjust_p_values([0.898, 0.138, 0.007, 0.964, 0.538, 0.006, 0.138], "benjamini-hochberg")
    assert [round(p, 8) for p in bh] == [0.964, 0.2415, 0.0245, 0.964, 0.7532, 0.0245, 0.2415]
    assert adjust_p_values([], "holm-bonferroni") == []


@pytest.mark.parametrize("method", ["holm-bonferroni", "benjamini-hochberg"])
def test_corrections_over_3_arms_and_3_metrics(arms: list[VariantStats], method: str) -> None:
    rng = np.random.default_rng(9)
    four = [*arms, stats_from_users(*synthetic_arm(rng, 690, 0.12))]
    metrics = ["clicks", "refresh_requests", "converted"]
    cfg = config(4, metrics, correction=method)
    report = build_report("exp", cfg, {f"v{i}": s for i, s in enumerate(four)})
    keys = [(i, m) for i in (1, 2, 3) for m in metrics]
    raw = [
        TwoSidedTTest(gb_plain(m, four[0]), gb_plain(m, four[i])).compute_result().p_value
        for i, m in keys
    ]
    p = sorted(raw)
    n = len(p)
    if method == "holm-bonferroni":  # step-down: max over j <= i of (n − j) p_(j)
        step = [max(min(1.0, (n - j) * p[j]) for j in range(i + 1)) for i in range(n)]
        expected = [step[p.index(x)] for x in raw]
    else:
        expected = list(sps.false_discovery_control(raw, method="bh"))
    for (i, m), want, p_raw in zip(keys, expected, raw, strict=True):
        got = report.variants[i].metrics[m]
        assert close(got.p_value, p_raw)
        assert close(got.adjusted_p_value, want)
        assert got.significant == (want < 0.05)
    # The baseline has no test, so nothing to adjust.
    assert all(r.adjusted_p_value is None for r in report.variants[0].metrics.values())


def test_significance_uses_the_adjusted_p_value() -> None:
    """Nine arms with one p just under alpha: Holm makes it not significant."""
    base = stats_from_users([UserTotals(clicks=c) for c in [0, 1, 2, 3] * 250])
    arms = {"v0": base}
    for i in range(1, 10):
        bump = 1 if i == 1 else 0
        arms[f"v{i}"] = stats_from_users(
            [
                UserTotals(clicks=c + (bump if j % 8 == 0 else 0))
                for j, c in enumerate([0, 1, 2, 3] * 250)
            ]
        )
    plain = build_report("exp", config(10, ["clicks"]), arms).variants[1].metrics["clicks"]
    holm = build_report("exp", config(10, ["clicks"], correction="holm-bonferroni"), arms)
    adjusted = holm.variants[1].metrics["clicks"]
    assert plain.p_value is not None and plain.p_value < 0.05 and plain.significant
    assert adjusted.adjusted_p_value is not None and adjusted.adjusted_p_value >= 0.05
    assert adjusted.significant is False


# --- Bayesian -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prior",
    [
        None,
        {"proper": True, "mean": 0.0, "stddev": 0.1},
        {"proper": True, "mean": 0.05, "stddev": 0.03},
    ],
    ids=["improper", "proper-default", "proper-informative"],
)
@pytest.mark.parametrize("cuped", [False, True])
def test_bayesian_matches_gbstats(
    arms: list[VariantStats], prior: dict | None, cuped: bool
) -> None:
    extra = {"prior": prior} if prior else {}
    cfg = config(3, engine="bayesian", cuped=cuped, **extra)
    report = build_report("exp", cfg, keyed(arms))
    gp = GaussianPrior(
        mean=(prior or {}).get("mean", 0.0),
        variance=(prior or {}).get("stddev", 0.1) ** 2,
        proper=(prior or {}).get("proper", False),
    )
    make = gb_cuped if cuped else gb_plain
    for metric in ("clicks", "refresh_requests", "converted"):
        inverse = SPECS[metric].inverse
        for i in (1, 2):
            res = EffectBayesianABTest(
                make(metric, arms[0]),
                make(metric, arms[i]),
                EffectBayesianConfig(inverse=inverse, prior_effect=gp, prior_type="relative"),
            ).compute_result()
            ab = EffectBayesianABTest(
                make(metric, arms[0]),
                make(metric, arms[i]),
                EffectBayesianConfig(
                    inverse=inverse,
                    prior_effect=gp,
                    prior_type="relative",
                    difference_type="absolute",
                ),
            ).compute_result()
            ours = report.variants[i].metrics[metric]
            assert res.error_message is None
            assert close(ours.chance_to_win, res.chance_to_win)
            assert ours.risk is not None
            assert close(ours.risk.baseline, res.risk[0]) and close(ours.risk.variant, res.risk[1])
            assert close(ours.relative_lift, res.expected)
            assert ours.ci is not None and all(map(close, ours.ci, res.ci))
            assert close(ours.absolute_lift, ab.expected)
            assert ours.absolute_ci is not None and all(map(close, ours.absolute_ci, ab.ci))
            assert ours.p_value is None
            assert ours.significant == (res.chance_to_win >= 0.95 or res.chance_to_win <= 0.05)


def test_bayesian_risk_in_the_tails_matches_gbstats() -> None:
    a = stats_from_users([UserTotals(clicks=c) for c in [0, 1, 2, 3] * 500])
    b = stats_from_users([UserTotals(clicks=c + 1) for c in [0, 1, 2, 3] * 500])
    ours = (
        build_report("exp", config(engine="bayesian"), {"v0": a, "v1": b})
        .variants[1]
        .metrics["clicks"]
    )
    res = EffectBayesianABTest(gb_plain("clicks", a), gb_plain("clicks", b)).compute_result()
    assert ours.risk is not None and close(ours.risk.baseline, res.risk[0])
    assert ours.chance_to_win == pytest.approx(1.0) and ours.risk.variant < 1e-12


# --- power ----------------------------------------------------------------------------------------


def test_mde_is_the_lift_with_80_percent_power() -> None:
    mean, var, n = 1.2, 2.5, 4000
    got = mde(mean, var, n, alpha=0.05)
    assert got is not None and 0 < got < 1
    # findMde solves the one-tailed equation: lift / se(lift) = z(1 − α/2) + z(power).
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    se = math.sqrt(var / (mean**2 * n) + var * (mean * (1 + got)) ** 2 / (mean**4 * n))
    assert got / se == pytest.approx(z, rel=1e-9)
    assert power(got, mean, var, n, alpha=0.05) == pytest.approx(0.8, abs=1e-6)
    assert mde(mean, var, 2, alpha=0.05) is None  # too few users for any lift


@pytest.mark.parametrize("tuning", [None, 5000.0])
def test_users_per_arm_is_the_fewest_reaching_80_percent(tuning: float | None) -> None:
    mean, var, effect = 0.4, 0.24, 0.05
    n = users_per_arm(effect, mean, var, alpha=0.05, tuning=tuning)
    assert n is not None
    assert power(effect, mean, var, n, alpha=0.05, tuning=tuning) >= 0.8
    assert power(effect, mean, var, n - 1, alpha=0.05, tuning=tuning) < 0.8
    if tuning is None:  # the textbook two-sample size, which ignores the far tail
        z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
        textbook = z**2 * var * (1 + (1 + effect) ** 2) / (mean * effect) ** 2
        assert n == math.ceil(textbook) or abs(n - textbook) < 2
    else:
        assert n > users_per_arm(effect, mean, var, alpha=0.05)  # type: ignore[operator]


def test_report_power_per_metric(arms: list[VariantStats]) -> None:
    stats = {"v0": arms[0], "v1": arms[1]}
    plain = build_report("exp", config(target_effect=0.1), stats).power
    cuped = build_report("exp", config(target_effect=0.1, cuped=True), stats).power
    base = summarize(SPECS["clicks"], arms[0].users, arms[0].metrics["clicks"])
    assert base.mean is not None
    n_arm = (arms[0].users + arms[1].users) / 2
    assert close(plain["clicks"].mde, mde(base.mean, base.variance, n_arm, alpha=0.05))  # type: ignore[arg-type]
    assert plain["clicks"].users_per_arm == users_per_arm(0.1, base.mean, base.variance, alpha=0.05)
    # CUPED's smaller variance lowers both.
    assert cuped["clicks"].mde < plain["clicks"].mde  # type: ignore[operator]
    assert cuped["clicks"].users_per_arm < plain["clicks"].users_per_arm  # type: ignore[operator]
    assert cuped["pvctr"] == plain["pvctr"]
    empty = build_report("exp", config(), {}).power["clicks"]
    assert empty.mde is None and empty.users_per_arm is None


# --- variance reduction, through the flow -------------------------------------------------------

T_START = 1_900_000_000_000 - (1_900_000_000_000 % DAY_MS) + 8 * DAY_MS  # a UTC midnight


def simulate(n_users: int, seed: int) -> dict[str, VariantStats]:
    """Users with a persistent click rate: a week of clicks before the experiment, then the
    first decision under it (exposure) and a week of clicks after, all through the flow."""
    rng = random.Random(seed)
    counts = np.random.default_rng(seed)
    exp = parse_experiment(
        "cup",
        {"status": "running", "variants": [{"key": "a"}, {"key": "b"}], "stats": {"cuped": True}},
    )
    cfg = flow.Config(rules=RuleSet({}), experiments={"cup": exp}, logs=False, window=False)
    sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def commit(effects: flow.Effects) -> UserState:
        for key, fields in effects.stat_incrs:
            for f, v in fields.items():
                sums[key][f] += v
        return effects.state

    def clicks(
        state: UserState, uid: str, rate: float, day0: int, days: int, batch: str
    ) -> UserState:
        ts = [
            day0 + int(rng.random() * days * DAY_MS)
            for _ in range(int(counts.poisson(rate * days)))
        ]
        if not ts:
            return state
        events = [Event(type="click", ts=t) for t in sorted(ts)]
        req = EventsRequest(user_id=uid, batch_id=batch, events=events)
        return commit(flow.events(flow.Loaded(state), req, cfg, now_ms=max(ts)).effects)

    for u in range(n_users):
        uid = f"user{u}"
        rate = rng.gammavariate(1.2, 0.5)  # clicks per day, the user's own
        state = UserState()

        state = clicks(state, uid, rate, T_START - 7 * DAY_MS, 7, "pre")
        t0 = T_START + rng.randrange(0, 3_600_000)
        req = DecideRequest(user_id=uid, ts=t0, trigger="open")
        plan = flow.prepare_decide(flow.Loaded(state), req, cfg, now_ms=t0, decision_id="d")
        state = commit(flow.finish_decide(plan, Scored() if plan.needs_score else None).effects)
        state = clicks(state, uid, rate, t0, 7, "post")
    return {key.split(":")[-1]: stats_from_fields(f) for key, f in sums.items()}


def test_cuped_narrows_the_clicks_interval_by_at_least_20_percent(capsys: Any) -> None:
    stats = simulate(1200, seed=5)
    assert sum(s.users for s in stats.values()) == 1200
    assert all(s.metrics["clicks"].sum_c > 0 for s in stats.values())  # the pre-period was seen
    plain = build_report("cup", config(cuped=False), {"v0": stats["a"], "v1": stats["b"]})
    cuped = build_report("cup", config(cuped=True), {"v0": stats["a"], "v1": stats["b"]})
    p, c = plain.variants[1].metrics["clicks"], cuped.variants[1].metrics["clicks"]
    assert p.ci is not None and c.ci is not None and c.cuped is not None
    narrower = 1 - (c.ci[1] - c.ci[0]) / (p.ci[1] - p.ci[0])
    with capsys.disabled():
        print(
            f"\nCUPED on clicks, 1200 simulated users: theta {c.cuped.theta:.3f}, variance "
            f"reduction {c.cuped.variance_reduction:.1%}, CI {narrower:.1%} narrower "
            f"({p.ci[1] - p.ci[0]:.4f} -> {c.ci[1] - c.ci[0]:.4f})"
        )
    assert narrower >= 0.20


def test_flow_keeps_a_week_of_daily_activity() -> None:
    cfg = flow.Config(rules=RuleSet({}), logs=False, window=False)
    state = UserState()
    for day in range(12):
        ev = [
            Event(type="click", ts=T_START + day * DAY_MS),
            Event(type="open", ts=T_START + day * DAY_MS),
        ]
        req = EventsRequest(user_id="u", batch_id=f"b{day}", events=ev)
        state = flow.events(
            flow.Loaded(state), req, cfg, now_ms=T_START + day * DAY_MS
        ).effects.state
    assert [d.day for d in state.daily] == [T_START // DAY_MS + d for d in range(4, 12)]
    assert all(d.clicks == 1 and d.refreshes == 0 for d in state.daily)
    blob = msgspec.msgpack.encode(state.daily)
    assert len(blob) < 60  # ~6 bytes a day in the stored state
