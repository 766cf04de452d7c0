"""Comparisons with 95 % bootstrap confidence intervals over users.

Users are the unit of randomisation, so the bootstrap resamples users (with replacement, the
same resample for baseline and policy, which share users: a paired bootstrap). A metric is
any function of per-user totals, so ratio metrics (PVCTR = Σclicks / Σexposures) and the
equal-click-PV interpolation are recomputed on every resample, as the delta method would
linearise them. Medians of pooled per-event values (detection delays) are weighted medians
under each resample's user weights.

Every metric is reported as `{"baseline", "policy", "relative_change", "ci"}` with the CI of
the relative change; a baseline of zero makes the relative change undefined (null).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping

import numpy as np

__all__ = [
    "Boot",
    "Metric",
    "chain_mix",
    "compare",
    "frontier_mix",
    "interp_mix",
    "metric",
    "mix_weight",
    "round_sig",
]

Metric = dict[str, object]
Totals = Mapping[str, float]
Fn = Callable[[Totals], tuple[float, float] | None]


def round_sig(x: float | None, sig: int = 6) -> float | None:
    """Round to `sig` significant digits so reports are stable and readable."""
    if x is None or not math.isfinite(x):
        return None
    if x == 0:
        return 0.0
    return float(f"{x:.{sig}g}")


class Boot:
    """Resampling weights: W[b, u] = how often user u is drawn in resample b."""

    def __init__(self, n_users: int, replicates: int, seed: int) -> None:
        rng = np.random.default_rng([seed, 0xB007])
        self.n = n_users
        if n_users == 0:
            self.W = np.zeros((replicates, 0))
        else:
            idx = rng.integers(0, n_users, size=(replicates, n_users))
            self.W = np.zeros((replicates, n_users), dtype=np.float64)
            rows = np.repeat(np.arange(replicates), n_users)
            np.add.at(self.W, (rows, idx.ravel()), 1.0)

    def totals(
        self, per_user: Mapping[str, np.ndarray]
    ) -> tuple[dict[str, float], list[dict[str, float]]]:
        """Return the point totals and each resample's totals."""
        names = list(per_user)
        X = np.column_stack([np.asarray(per_user[k], dtype=np.float64) for k in names])
        point = dict(zip(names, X.sum(axis=0).tolist(), strict=True))
        reps = self.W @ X if len(X) else np.zeros((len(self.W), len(names)))
        return point, [dict(zip(names, r.tolist(), strict=True)) for r in reps]

    def weighted_medians(self, values: np.ndarray, owners: np.ndarray) -> tuple[float, np.ndarray]:
        """Return the pooled median and its value under each resample's user weights."""
        if len(values) == 0:
            return math.nan, np.full(len(self.W), math.nan)
        order = np.argsort(values, kind="stable")
        v, o = values[order], owners[order]
        cw = np.cumsum(self.W[:, o], axis=1)
        half = cw[:, -1:] / 2
        pos = np.minimum((cw < half).sum(axis=1), len(v) - 1)
        return float(np.median(values)), v[pos]


def _rel(base: float, pol: float) -> float:
    return pol / base - 1.0 if base and math.isfinite(base) and math.isfinite(pol) else math.nan


def metric(point: tuple[float, float] | None, reps: list[tuple[float, float] | None]) -> Metric:
    """Return a report entry from a point estimate and resampled (baseline, policy) pairs."""
    if point is None:
        return {"baseline": None, "policy": None, "relative_change": None, "ci": None}
    base, pol = point
    rel = _rel(base, pol)
    samples = np.array([_rel(*r) for r in reps if r is not None], dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    ci = None
    if math.isfinite(rel) and len(samples) >= 0.9 * max(1, len(reps)):
        lo, hi = np.percentile(samples, [2.5, 97.5])
        ci = [round_sig(float(lo)), round_sig(float(hi))]
    return {
        "baseline": round_sig(base),
        "policy": round_sig(pol),
        "relative_change": round_sig(rel),
        "ci": ci,
    }


def compare(boot: Boot, per_user: Mapping[str, np.ndarray], fn: Fn) -> Metric:
    """Return the metric `fn` computes from totals, with its bootstrap CI."""
    point, reps = boot.totals(per_user)
    return metric(fn(point), [fn(r) for r in reps])


def interp_mix(curve: list[dict[str, float]], key: str, target: float) -> dict[str, float] | None:
    """Return the mixture of two adjacent curve points whose `key` equals `target`.

    Mixing two policies (a share of users on each) moves every total linearly between them,
    so interpolating all totals with one weight is what such a mixed policy would achieve.
    None when `target` is outside the curve.
    """
    pts = sorted(curve, key=lambda p: p[key])
    for a, b in itertools.pairwise(pts):
        lo, hi = a[key], b[key]
        if lo <= target <= hi:
            w = 0.0 if hi == lo else (target - lo) / (hi - lo)
            return {k: (1 - w) * a[k] + w * b[k] for k in a}
    if pts and len(pts) == 1 and pts[0][key] == target:
        return dict(pts[0])
    return None


def mix_weight(
    curve: list[dict[str, float]], key: str, target: float
) -> tuple[int, int, float] | None:
    """Return (i, j, w): the adjacent pair of curve points (indices into `curve`, sorted by
    `key`) whose mixture (1 − w)·i + w·j has `key` equal to `target`; None outside the curve."""
    order = sorted(range(len(curve)), key=lambda i: curve[i][key])
    for a, b in itertools.pairwise(order):
        lo, hi = curve[a][key], curve[b][key]
        if lo <= target <= hi:
            return a, b, 0.0 if hi == lo else (target - lo) / (hi - lo)
    if len(order) == 1 and curve[order[0]][key] == target:
        return order[0], order[0], 0.0
    return None


def chain_mix(
    curve: list[dict[str, float]], key: str, target: float, cost: str
) -> tuple[int, int, float] | None:
    """Return (i, i + 1, w): the mixture of two *consecutive* points of a one-parameter family
    (`curve` in parameter order: thresholds or gaps) whose `key` equals `target`.

    The family is a curve indexed by its parameter, so the two arms mixed are neighbours in
    that parameter, never arms that merely happen to be neighbours in click PV (arms whose
    click PVs tie make that order arbitrary). When noise makes the curve cross `target` more
    than once, the crossing with the highest `cost` is taken: conservative, it never picks
    the cheapest of several noisy crossings. None when no two neighbours bracket `target`.
    """
    best: tuple[int, int, float] | None = None
    best_cost = -math.inf
    for i in range(len(curve) - 1):
        a, b = curve[i][key], curve[i + 1][key]
        if not min(a, b) <= target <= max(a, b):
            continue
        w = 0.0 if a == b else (target - a) / (b - a)
        c = (1 - w) * curve[i][cost] + w * curve[i + 1][cost]
        if c > best_cost:
            best, best_cost = (i, i + 1, w), c
    if best is None and len(curve) == 1 and curve[0][key] == target:
        return 0, 0, 0.0
    return best


def frontier_mix(
    curve: list[dict[str, float]], key: str, target: float, cost: str
) -> dict[str, float] | None:
    """Return the cheapest mixture of any two curve points whose `key` equals `target`.

    The frontier of a sweep is the lower convex hull of its points in (`key`, `cost`): any two
    arms mixed (a share of users on each) are available, not only neighbours, so a
    non-convex sweep is never a softer baseline than the best mix of its own arms.
    """
    best: dict[str, float] | None = None
    for a, b in itertools.combinations_with_replacement(curve, 2):
        lo, hi = (a, b) if a[key] <= b[key] else (b, a)
        if not lo[key] <= target <= hi[key]:
            continue
        span = hi[key] - lo[key]
        w = 0.0 if span == 0 else (target - lo[key]) / span
        mixed = {k: (1 - w) * lo[k] + w * hi[k] for k in lo}
        if best is None or mixed[cost] < best[cost]:
            best = mixed
    return best


def poisson_ppf(u: float, mean: float) -> int:
    """Return the Poisson(mean) quantile at u (monotone in both: common random numbers)."""
    if mean <= 0:
        return 0
    k, p = 0, math.exp(-mean)
    cdf = p
    while u > cdf and k < 1000:
        k += 1
        p *= mean / k
        cdf += p
    return k
