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

The statistics are gbstats' (GrowthBook's engine, v0.8) with its default settings:
count metrics are `SampleMeanStatistic`, binomials `ProportionStatistic` (variance p(1−p)),
ratios `RatioStatistic` (delta method); frequentist two-sided Welch t-test on the relative
lift (delta-method variance, Welch–Satterthwaite df) for `ci` and `p_value`, the same test on
the absolute difference for `absolute_ci`; Bayesian chance to win from `EffectBayesianABTest`
with its default improper prior on the relative effect, i.e. Φ(lift / se). Where gbstats
would return its placeholder result (no users, zero variance, zero baseline) the fields are
null. SRM is gbstats' `check_srm` (chi-square goodness of fit against the weights).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec
from scipy import special  # what scipy.stats computes these with, at a fraction of its import

from refreshd.core.experiments import METRICS, ExperimentConfig, variant_weights

__all__ = [
    "INVERSE_METRICS",
    "MOMENTS",
    "SPECS",
    "SRM_THRESHOLD",
    "MetricResult",
    "MetricSpec",
    "Moments",
    "Report",
    "UserTotals",
    "VariantReport",
    "VariantStats",
    "apply_delta",
    "build_report",
    "compare",
    "delta_fields",
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
# 95 % intervals, gbstats' default alpha.
ALPHA = 0.05

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
}
INVERSE_METRICS = frozenset(m for m, s in SPECS.items() if s.inverse)
MOMENTS = ("sum_x", "sum_x2", "sum_y", "sum_y2", "sum_xy")


class UserTotals(msgspec.Struct, frozen=True, kw_only=True):
    """One user's running totals in one experiment since exposure (kept in the user state)."""

    refreshes: int = 0
    clicks: int = 0
    impressions: int = 0


class Moments(msgspec.Struct, frozen=True, kw_only=True):
    """Σx, Σx², Σy, Σy², Σxy over a variant's users (y is the ratio denominator)."""

    sum_x: int = 0
    sum_x2: int = 0
    sum_y: int = 0
    sum_y2: int = 0
    sum_xy: int = 0


def _zero_metrics() -> dict[str, Moments]:
    return {m: Moments() for m in METRICS}


class VariantStats(msgspec.Struct, frozen=True, kw_only=True):
    users: int = 0
    metrics: dict[str, Moments] = msgspec.field(default_factory=_zero_metrics)


def user_values(t: UserTotals) -> dict[str, tuple[int, int]]:
    """Return each metric's per-user (x, y); y is 0 for non-ratio metrics."""
    clicked = int(t.clicks > 0)
    saw = int(t.impressions > 0)
    return {
        "refresh_requests": (t.refreshes, 0),
        "clicks": (t.clicks, 0),
        "converted": (clicked, 0),
        "pvctr": (t.clicks, t.impressions),
        "uvctr": (clicked * saw, saw),
    }


def _terms(x: int, y: int) -> tuple[int, int, int, int, int]:
    return x, x * x, y, y * y, x * y


def delta_fields(old: UserTotals | None, new: UserTotals) -> dict[str, int]:
    """Return the non-zero increments of flat stats fields when a user's totals go old → new.

    `old=None` means the user is newly exposed (adds 1 to `users`).
    """
    out: dict[str, int] = {"users": 1} if old is None else {}
    before = user_values(old) if old is not None else None
    for m, (x, y) in user_values(new).items():
        ox, oy = before[m] if before is not None else (0, 0)
        for name, n, o in zip(MOMENTS, _terms(x, y), _terms(ox, oy), strict=True):
            if n != o:
                out[f"{m}.{name}"] = n - o
    return out


def stats_to_fields(s: VariantStats) -> dict[str, int]:
    """Return the flat `{"users": n, "<metric>.<moment>": v}` form the store keeps."""
    out = {"users": s.users}
    for m, mo in s.metrics.items():
        for name in MOMENTS:
            out[f"{m}.{name}"] = getattr(mo, name)
    return out


def stats_from_fields(
    fields: Mapping[str, int] | Mapping[bytes, bytes] | Mapping[str, str],
) -> VariantStats:
    """Return stats from the flat form (e.g. a Redis HGETALL); missing fields are 0."""
    flat = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in fields.items()}
    metrics: dict[str, Moments] = {
        m: Moments(**{name: flat.get(f"{m}.{name}", 0) for name in MOMENTS}) for m in METRICS
    }
    return VariantStats(users=flat.get("users", 0), metrics=metrics)


def apply_delta(stats: VariantStats, old: UserTotals | None, new: UserTotals) -> VariantStats:
    """Return `stats` after one user's totals went from `old` (None: new user) to `new`."""
    flat = stats_to_fields(stats)
    for k, d in delta_fields(old, new).items():
        flat[k] = flat.get(k, 0) + d
    return stats_from_fields(flat)


def stats_from_users(users: Sequence[UserTotals]) -> VariantStats:
    """Return a variant's stats computed from scratch over its users' totals."""
    flat: dict[str, int] = {"users": len(users)}
    for u in users:
        for m, (x, y) in user_values(u).items():
            for name, v in zip(MOMENTS, _terms(x, y), strict=True):
                flat[f"{m}.{name}"] = flat.get(f"{m}.{name}", 0) + v
    return stats_from_fields(flat)


# --- analysis ---


@dataclass(frozen=True, slots=True)
class Summary:
    """A variant's metric as gbstats sees it; `mean` is None when undefined (no data)."""

    n: int
    mean: float | None
    variance: float


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


class MetricResult(msgspec.Struct, kw_only=True):
    """One metric of one variant; lift fields are relative to the baseline, null for it."""

    mean: float | None
    relative_lift: float | None = None
    absolute_lift: float | None = None
    ci: list[float] | None = None
    absolute_ci: list[float] | None = None
    p_value: float | None = None
    chance_to_win: float | None = None


def _num(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _interval(mid: float, half: float) -> list[float] | None:
    lo, hi = _num(mid - half), _num(mid + half)
    return None if lo is None or hi is None else [lo, hi]


def compare(a: Summary, b: Summary, *, inverse: bool = False, alpha: float = ALPHA) -> MetricResult:
    """Return variant `b`'s result against baseline `a`, as gbstats computes it."""
    out = MetricResult(mean=_num(b.mean))
    if a.mean is None or b.mean is None or a.n == 0 or b.n == 0:
        return out
    out.absolute_lift = _num(b.mean - a.mean)
    if a.mean == 0:
        return out
    lift = (b.mean - a.mean) / a.mean
    out.relative_lift = _num(lift)
    # gbstats gives no test for a non-positive variance; n >= 2 keeps Welch's df finite.
    if a.variance <= 0 or b.variance <= 0 or a.n < 2 or b.n < 2:
        return out
    va, vb = a.variance / a.n, b.variance / b.n
    dof = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    se_rel = math.sqrt(vb / a.mean**2 + va * b.mean**2 / a.mean**4)
    se_abs = math.sqrt(va + vb)
    t_crit = float(special.stdtrit(dof, 1 - alpha / 2))
    out.ci = _interval(lift, t_crit * se_rel)
    out.absolute_ci = _interval(b.mean - a.mean, t_crit * se_abs)
    out.p_value = _num(2 * float(special.stdtr(dof, -abs(lift) / se_rel)))
    z = lift / se_rel
    out.chance_to_win = _num(float(special.ndtr(-z if inverse else z)))
    return out


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


def build_report(
    exp_id: str,
    cfg: ExperimentConfig,
    stats: Mapping[str, VariantStats],
    *,
    alpha: float = ALPHA,
) -> Report:
    """Return the report for `stats` keyed by variant key (a missing variant has no users)."""
    per = [stats.get(v.key) or VariantStats() for v in cfg.variants]
    users = [s.users for s in per]
    srm_p = srm_p_value(users, variant_weights(cfg))
    variants = [VariantReport(v.key, s.users, {}) for v, s in zip(cfg.variants, per, strict=True)]
    for m in cfg.metrics:
        spec = SPECS[m]
        sums = [summarize(spec, s.users, s.metrics.get(m) or Moments()) for s in per]
        base = sums[0]
        variants[0].metrics[m] = MetricResult(mean=_num(base.mean))
        for vr, b in zip(variants[1:], sums[1:], strict=True):
            vr.metrics[m] = compare(base, b, inverse=spec.inverse, alpha=alpha)
    return Report(exp_id, srm_p, srm_p < SRM_THRESHOLD, variants)
