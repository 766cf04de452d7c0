"""Experiment statistics: per-variant sufficient statistics and the report computed from them.

Metrics, per exposed user (a user counts from their first exposure, i.e. the first decision
made for them while the experiment runs; their totals count only what happened after it):

- `refresh_requests`: refresh=true decisions. Mean per user; lower is better (`inverse`).
- `clicks`: homepage clicks. Mean per user.
- `converted`: 1 if the user clicked at least once, else 0 (binomial).
- `pvctr`: Σ clicks / Σ impressions over the variant's users — a ratio of per-user sums, so
  its variance comes from the delta method over (clicks, impressions) per user.
- `uvctr`: users who clicked and saw an impression / users who saw an impression — the same
  ratio over per-user binaries (a click whose impression was lost does not count, so ≤ 1).

The store keeps, per variant, `users` and per metric the integer sums Σx, Σx², Σy, Σy², Σxy
(y only for ratios). A user's totals grow over time, so an update applies the *difference*
between the user's new and old contributions (`delta_fields`); the shell adds those with
atomic integer increments (HINCRBY), which is why two workers cannot lose an update and why
incremental sums equal a recomputation from scratch exactly.

CUPED: the count and binomial metrics (`refresh_requests`, `clicks`, `converted`) also keep their
covariate c, the same metric over the user's pre-period (`refreshd.core.activity`), fixed at
exposure: Σc, Σc², Σxc. They are kept whether or not the report uses CUPED, so it can be
switched on later. The adjusted statistic is gbstats' `RegressionAdjustedStatistic` with theta
pooled over the baseline and the arm (`compute_theta`); when theta is 0 (no variance in either
period) gbstats, and so this report, falls back to the unadjusted statistic.

Guardrails (`cfg.guardrails`) are metrics that must not get worse. Besides the five above they
may watch `location_fixes` (per user: the fixes posted after exposure, kept like the other
totals) and two per-request signals the shell measures and adds in batches:
`decision_latency_ms` (server time of each decision, kept in µs) and `error_responses` (0/1
per device request). Those two are means over requests, not users: `REQUEST_METRICS`, stored as
n, Σv, Σv². A guardrail is breached when its CI excludes 0 in the bad direction (up for the
inverse metrics, down for the others).

The statistics are gbstats' (GrowthBook's engine, v0.8): count metrics are
`SampleMeanStatistic`, binomials `ProportionStatistic` (variance p(1−p)), ratios
`RatioStatistic` (delta method); the tests are in `refreshd.core.abtest`, the power figures in
`refreshd.core.power`. SRM is gbstats' `check_srm` (chi-square goodness of fit against the
weights).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec
from scipy import special  # what scipy.stats computes these with, at a fraction of its import

from refreshd.core.abtest import (
    ALPHA,
    Cuped,
    MetricResult,
    Summary,
    apply_correction,
    compare,
    finite,
    relative_variance,
)
from refreshd.core.experiments import METRICS, ExperimentConfig, StatsConfig, variant_weights
from refreshd.core.power import POWER, PowerResult, mde, users_per_arm

__all__ = [
    "ALPHA",
    "CUPED_METRICS",
    "INVERSE_METRICS",
    "MOMENTS",
    "REQUEST_METRICS",
    "SPECS",
    "SRM_THRESHOLD",
    "USER_METRICS",
    "Guardrail",
    "MetricResult",
    "MetricSpec",
    "Moments",
    "Observations",
    "Report",
    "Summary",
    "UserTotals",
    "VariantReport",
    "VariantStats",
    "adjusted",
    "apply_delta",
    "build_report",
    "compare",
    "cuped_pair",
    "delta_fields",
    "observation_fields",
    "pooled_theta",
    "srm_p_value",
    "stats_from_fields",
    "stats_from_users",
    "stats_to_fields",
    "summarize",
    "user_values",
]

# GrowthBook flags sample-ratio mismatch below p = 0.001: rare enough by chance across many
# experiments, and a real assignment or logging bug reaches it within days.
SRM_THRESHOLD = 0.001
Kind = Literal["count", "binomial"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """How a metric is analysed: numerator (and denominator for ratios) statistic kinds."""

    numerator: Kind
    denominator: Kind | None = None
    inverse: bool = False


SPECS: dict[str, MetricSpec] = {
    "refresh_requests": MetricSpec("count", inverse=True),
    "clicks": MetricSpec("count"),
    "converted": MetricSpec("binomial"),
    "pvctr": MetricSpec("count", "count"),
    "uvctr": MetricSpec("binomial", "binomial"),
    # Guardrails only: fewer is better for all three.
    "location_fixes": MetricSpec("count", inverse=True),
    "decision_latency_ms": MetricSpec("count", inverse=True),
    "error_responses": MetricSpec("binomial", inverse=True),
}
INVERSE_METRICS = frozenset(m for m, s in SPECS.items() if s.inverse)
# The per-user metrics the store keeps moments of: the report's, and the fixes guardrail.
USER_METRICS: tuple[str, ...] = (*METRICS, "location_fixes")
# Per-request guardrails: observed by the shell, one value per request.
REQUEST_METRICS: tuple[str, ...] = ("decision_latency_ms", "error_responses")
# The metrics CUPED adjusts (the covariate is the metric itself before exposure).
CUPED_METRICS = frozenset(m for m in METRICS if SPECS[m].denominator is None)
# Latency is kept in integer microseconds (HINCRBY); the report speaks milliseconds.
_LATENCY_SCALE = 1000.0
MOMENTS = ("sum_x", "sum_x2", "sum_y", "sum_y2", "sum_xy", "sum_c", "sum_c2", "sum_xc")


class UserTotals(msgspec.Struct, frozen=True, kw_only=True):
    """One user's running totals in one experiment since exposure (kept in the user state)."""

    refreshes: int = 0
    clicks: int = 0
    impressions: int = 0
    fixes: int = 0  # location fixes (a guardrail: a policy must not make the device poll GPS)


class Moments(msgspec.Struct, frozen=True, kw_only=True):
    """Σx, Σx², Σy, Σy², Σxy over a variant's users (y is the ratio denominator), and for
    CUPED Σc, Σc², Σxc (c is the pre-exposure covariate)."""

    sum_x: int = 0
    sum_x2: int = 0
    sum_y: int = 0
    sum_y2: int = 0
    sum_xy: int = 0
    sum_c: int = 0
    sum_c2: int = 0
    sum_xc: int = 0


class Observations(msgspec.Struct, frozen=True, kw_only=True):
    """n, Σv, Σv² of a per-request guardrail (latency in µs; an error is 1, a success 0)."""

    n: int = 0
    sum: int = 0
    sum2: int = 0


def _zero_metrics() -> dict[str, Moments]:
    return {m: Moments() for m in USER_METRICS}


def _zero_requests() -> dict[str, Observations]:
    return {m: Observations() for m in REQUEST_METRICS}


class VariantStats(msgspec.Struct, frozen=True, kw_only=True):
    users: int = 0
    metrics: dict[str, Moments] = msgspec.field(default_factory=_zero_metrics)
    requests: dict[str, Observations] = msgspec.field(default_factory=_zero_requests)


def observation_fields(metric: str, value: int) -> dict[str, int]:
    """Return the stats increments of one observation of a per-request guardrail."""
    return {f"{metric}.n": 1, f"{metric}.sum": value, f"{metric}.sum2": value * value}


_NO_PRE = UserTotals()


def user_values(t: UserTotals, pre: UserTotals | None = None) -> dict[str, tuple[int, int, int]]:
    """Return each metric's per-user (x, y, c): y is 0 for non-ratio metrics, c is the
    metric over the pre-period `pre` (0 for ratios, and for a user exposed without one)."""
    p = pre or _NO_PRE
    clicked = int(t.clicks > 0)
    saw = int(t.impressions > 0)
    return {
        "refresh_requests": (t.refreshes, 0, p.refreshes),
        "clicks": (t.clicks, 0, p.clicks),
        "converted": (clicked, 0, int(p.clicks > 0)),
        "pvctr": (t.clicks, t.impressions, 0),
        "uvctr": (clicked * saw, saw, 0),
        "location_fixes": (t.fixes, 0, 0),
    }


def _terms(x: int, y: int, c: int) -> tuple[int, ...]:
    return x, x * x, y, y * y, x * y, c, c * c, x * c


def delta_fields(
    old: UserTotals | None, new: UserTotals, pre: UserTotals | None = None
) -> dict[str, int]:
    """Return the non-zero increments of flat stats fields when a user's totals go old → new.

    `old=None` means the user is newly exposed (adds 1 to `users`, and their covariate terms
    Σc and Σc²). `pre` is the user's pre-period, the same at every update of the user.
    """
    out: dict[str, int] = {"users": 1} if old is None else {}
    before = user_values(old, pre) if old is not None else None
    for m, (x, y, c) in user_values(new, pre).items():
        ox, oy, oc = before[m] if before is not None else (0, 0, 0)
        for name, n, o in zip(MOMENTS, _terms(x, y, c), _terms(ox, oy, oc), strict=True):
            if n != o:
                out[f"{m}.{name}"] = n - o
    return out


def stats_to_fields(s: VariantStats) -> dict[str, int]:
    """Return the flat `{"users": n, "<metric>.<moment>": v}` form the store keeps."""
    out = {"users": s.users}
    for m, mo in s.metrics.items():
        for name in MOMENTS:
            out[f"{m}.{name}"] = getattr(mo, name)
    for m, ob in s.requests.items():
        out |= {f"{m}.n": ob.n, f"{m}.sum": ob.sum, f"{m}.sum2": ob.sum2}
    return out


def stats_from_fields(
    fields: Mapping[str, int] | Mapping[bytes, bytes] | Mapping[str, str],
) -> VariantStats:
    """Return stats from the flat form (e.g. a Redis HGETALL); missing fields are 0."""
    flat = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in fields.items()}
    metrics: dict[str, Moments] = {
        m: Moments(**{name: flat.get(f"{m}.{name}", 0) for name in MOMENTS}) for m in USER_METRICS
    }
    requests = {
        m: Observations(
            n=flat.get(f"{m}.n", 0), sum=flat.get(f"{m}.sum", 0), sum2=flat.get(f"{m}.sum2", 0)
        )
        for m in REQUEST_METRICS
    }
    return VariantStats(users=flat.get("users", 0), metrics=metrics, requests=requests)


def apply_delta(
    stats: VariantStats, old: UserTotals | None, new: UserTotals, pre: UserTotals | None = None
) -> VariantStats:
    """Return `stats` after one user's totals went from `old` (None: new user) to `new`."""
    flat = stats_to_fields(stats)
    for k, d in delta_fields(old, new, pre).items():
        flat[k] = flat.get(k, 0) + d
    return stats_from_fields(flat)


def stats_from_users(
    users: Sequence[UserTotals], pres: Sequence[UserTotals | None] | None = None
) -> VariantStats:
    """Return a variant's stats computed from scratch over its users' totals (and, for
    CUPED, their pre-periods, in the same order)."""
    flat: dict[str, int] = {"users": len(users)}
    for i, u in enumerate(users):
        for m, xyc in user_values(u, pres[i] if pres is not None else None).items():
            for name, v in zip(MOMENTS, _terms(*xyc), strict=True):
                flat[f"{m}.{name}"] = flat.get(f"{m}.{name}", 0) + v
    return stats_from_fields(flat)


# --- analysis ---


def _mean_var(kind: Kind, n: int, s: int, s2: int) -> tuple[float, float]:
    if n == 0:
        return 0.0, 0.0
    mean = s / n
    if kind == "binomial":
        return mean, mean * (1 - mean)
    # (n Σx² − (Σx)²) / (n (n − 1)) in exact integers: no cancellation, unlike Σx² − (Σx)²/n.
    return mean, ((n * s2 - s * s) / (n * (n - 1)) if n > 1 else 0.0)


def summarize(spec: MetricSpec, n: int, mo: Moments) -> Summary:
    """Return mean and per-user variance of a metric (gbstats' statistic for its kind)."""
    mx, vx = _mean_var(spec.numerator, n, mo.sum_x, mo.sum_x2)
    if spec.denominator is None:
        return Summary(n, mx if n > 0 else None, vx)
    my, vy = _mean_var(spec.denominator, n, mo.sum_y, mo.sum_y2)
    if n == 0 or mo.sum_y == 0:
        return Summary(n, None, 0.0)
    mean = mo.sum_x / mo.sum_y
    if n <= 1 or my == 0:
        return Summary(n, mean, 0.0)
    cov = (n * mo.sum_xy - mo.sum_x * mo.sum_y) / (n * (n - 1))
    var = vx / my**2 - 2 * cov * mx / my**3 + mx**2 * vy / my**4
    return Summary(n, mean, var)


def srm_p_value(users: Sequence[int], weights: Sequence[float]) -> float:
    """Return the chi-square goodness-of-fit p-value of the users split (gbstats `check_srm`)."""
    total = sum(users)
    if not total:
        return 1.0
    total_w = sum(weights)
    x = 0.0
    for o, w in zip(users, weights, strict=True):
        if w <= 0:
            continue
        e = w / total_w * total
        x += (o - e) ** 2 / e
    return float(special.chdtrc(len(users) - 1, x))


def _cov(n: int, s_xc: int, s_x: int, s_c: int) -> float:
    """(Σxc − Σx Σc / n) / (n − 1), gbstats' sample covariance, in exact integers."""
    return (n * s_xc - s_x * s_c) / (n * (n - 1)) if n > 1 else 0.0


def _total(parts: Sequence[tuple[int, Moments]]) -> tuple[int, Moments]:
    n = sum(p[0] for p in parts)
    return n, Moments(**{k: sum(getattr(mo, k) for _, mo in parts) for k in MOMENTS})


def pooled_theta(kind: Kind, parts: Sequence[tuple[int, Moments]]) -> float:
    """Return Cov(x, c) / Var(c) over the users of all `parts` (gbstats `compute_theta`);
    0 when either period has no variance (gbstats then analyses without adjustment)."""
    n, mo = _total(parts)
    _, var_x = _mean_var(kind, n, mo.sum_x, mo.sum_x2)
    _, var_c = _mean_var(kind, n, mo.sum_c, mo.sum_c2)
    if var_x == 0 or var_c == 0:
        return 0.0
    return _cov(n, mo.sum_xc, mo.sum_x, mo.sum_c) / var_c


def adjusted(kind: Kind, n: int, mo: Moments, theta: float) -> Summary:
    """Return the metric as gbstats' `RegressionAdjustedStatistic` with this theta."""
    if n == 0:
        return Summary(0, None, 0.0)
    mean_x, var_x = _mean_var(kind, n, mo.sum_x, mo.sum_x2)
    mean_c, var_c = _mean_var(kind, n, mo.sum_c, mo.sum_c2)
    cov = _cov(n, mo.sum_xc, mo.sum_x, mo.sum_c)
    var = var_x + theta**2 * var_c - 2 * theta * cov if n > 1 else 0.0
    return Summary(n, mean_x - theta * mean_c, var, mean_x)


def cuped_pair(
    kind: Kind, a: tuple[int, Moments], b: tuple[int, Moments]
) -> tuple[Summary, Summary, float] | None:
    """Return baseline and arm adjusted with their pooled theta, or None when theta is 0."""
    theta = pooled_theta(kind, [a, b])
    if theta == 0:
        return None
    return adjusted(kind, *a, theta), adjusted(kind, *b, theta), theta


def _variance_reduction(plain: tuple[Summary, Summary], cup: tuple[Summary, Summary]) -> float:
    before = relative_variance(*plain)
    return 1 - relative_variance(*cup) / before if before > 0 else 0.0


class Guardrail(msgspec.Struct):
    """One guardrail metric of one treatment arm against the baseline."""

    metric: str
    variant: str
    relative_change: float | None
    ci: list[float] | None
    breached: bool


class VariantReport(msgspec.Struct):
    key: str
    users: int
    metrics: dict[str, MetricResult]


class Report(msgspec.Struct):
    """`GET /v1/experiments/{id}/report`; the first variant is the baseline."""

    experiment: str
    srm_p: float
    srm_warning: bool
    variants: list[VariantReport]
    power: dict[str, PowerResult] = msgspec.field(default_factory=dict)
    stats: StatsConfig = msgspec.field(default_factory=StatsConfig)
    guardrails: list[Guardrail] = msgspec.field(default_factory=list)


def _compare_arm(
    spec: MetricSpec,
    cuped: bool,
    stats: StatsConfig,
    plain: tuple[Summary, Summary],
    parts: tuple[tuple[int, Moments], tuple[int, Moments]],
) -> MetricResult:
    pair = cuped_pair(spec.numerator, *parts) if cuped else None
    if pair is None:
        return compare(*plain, inverse=spec.inverse, stats=stats)
    a, b, theta = pair
    out = compare(a, b, inverse=spec.inverse, stats=stats)
    if out.relative_lift is not None and a.mean is not None and b.mean is not None:
        usable = all(s.variance > 0 and s.n > 1 for s in (*plain, a, b))
        reduction = _variance_reduction(plain, (a, b)) if usable else 0.0
        out.cuped = Cuped(theta, reduction, b.mean, a.mean)
    return out


def _power(
    spec: MetricSpec, cuped: bool, stats: StatsConfig, parts: Sequence[tuple[int, Moments]]
) -> PowerResult:
    """Power from the baseline's per-user variance (CUPED-adjusted, theta over all arms)."""
    n, mo = parts[0]
    base = summarize(spec, n, mo)
    if cuped and (theta := pooled_theta(spec.numerator, parts)) != 0:
        base = adjusted(spec.numerator, n, mo, theta)
    n_arm = sum(p[0] for p in parts) / len(parts)
    tuning = stats.sequential_tuning if stats.sequential and stats.engine != "bayesian" else None
    mean, effect = base.base, stats.target_effect
    if mean is None or base.variance <= 0 or n_arm < 2:
        return PowerResult(power=POWER, mde=None, effect=effect, users_per_arm=None)
    return PowerResult(
        power=POWER,
        mde=mde(mean, base.variance, n_arm, alpha=stats.alpha, tuning=tuning),
        effect=effect,
        users_per_arm=users_per_arm(effect, mean, base.variance, alpha=stats.alpha, tuning=tuning),
    )


def build_report(exp_id: str, cfg: ExperimentConfig, stats: Mapping[str, VariantStats]) -> Report:
    """Return the report for `stats` keyed by variant key (a missing variant has no users)."""
    settings = cfg.stats
    per = [stats.get(v.key) or VariantStats() for v in cfg.variants]
    users = [s.users for s in per]
    srm_p = srm_p_value(users, variant_weights(cfg))
    variants = [VariantReport(v.key, s.users, {}) for v, s in zip(cfg.variants, per, strict=True)]
    power: dict[str, PowerResult] = {}
    tested: list[MetricResult] = []
    for m in cfg.metrics:
        spec = SPECS[m]
        cuped = settings.cuped and m in CUPED_METRICS
        parts = [(s.users, s.metrics.get(m) or Moments()) for s in per]
        plain = [summarize(spec, n, mo) for n, mo in parts]
        variants[0].metrics[m] = MetricResult(mean=finite(plain[0].base))
        for i in range(1, len(per)):
            r = _compare_arm(spec, cuped, settings, (plain[0], plain[i]), (parts[0], parts[i]))
            variants[i].metrics[m] = r
            tested.append(r)
        power[m] = _power(spec, cuped, settings, parts)
    apply_correction(tested, settings.correction, settings.alpha)
    guards = [
        _guardrail(g, cfg.variants[i].key, per[0], per[i], settings)
        for g in cfg.guardrails
        for i in range(1, len(per))
    ]
    return Report(exp_id, srm_p, srm_p < SRM_THRESHOLD, variants, power, settings, guards)


def _observed(metric: str, ob: Observations) -> Summary:
    """A per-request guardrail as a sample mean over requests (latency in ms)."""
    scale = _LATENCY_SCALE if metric == "decision_latency_ms" else 1.0
    spec = SPECS[metric]
    if spec.numerator == "binomial":
        mean, var = _mean_var("binomial", ob.n, ob.sum, ob.sum2)
    else:
        mean, var = _mean_var("count", ob.n, ob.sum, ob.sum2)
        mean, var = mean / scale, var / scale**2
    return Summary(ob.n, mean if ob.n > 0 else None, var)


def _summary_of(metric: str, s: VariantStats) -> Summary:
    if metric in REQUEST_METRICS:
        return _observed(metric, s.requests.get(metric) or Observations())
    return summarize(SPECS[metric], s.users, s.metrics.get(metric) or Moments())


def _guardrail(
    metric: str, variant: str, base: VariantStats, arm: VariantStats, stats: StatsConfig
) -> Guardrail:
    """Compare the arm with the baseline on a guardrail, with the experiment's engine (no
    CUPED, no correction: a guardrail is a warning, and corrections would make it deafer)."""
    inverse = SPECS[metric].inverse
    r = compare(_summary_of(metric, base), _summary_of(metric, arm), inverse=inverse, stats=stats)
    ci = r.ci
    breached = ci is not None and (ci[0] > 0 if inverse else ci[1] < 0)
    return Guardrail(metric, variant, r.relative_lift, ci, breached)
