"""Power of an experiment metric: the smallest lift the current sample detects, and the
users a given lift needs.

These are GrowthBook's power-calculation formulas (its `powerEst` and `findMde`): a two-sided
z-test on the relative lift with equal arms, the per-user variance of the baseline, and under
sequential testing the always-valid interval's wider variance. The power is 80 % (GrowthBook's
target). A Holm or BH correction is not taken into account: with one, the real MDE is larger.
"""

from __future__ import annotations

import math

import msgspec
from scipy import special

from refreshd.core.abtest import sequential_halfwidth

__all__ = ["POWER", "PowerResult", "mde", "power", "users_per_arm"]

POWER = 0.8
# 2**40 users per arm: beyond that the question has no useful answer.
_MAX_DOUBLINGS = 40


class PowerResult(msgspec.Struct, kw_only=True):
    """`mde`: the relative lift detected with `power` at the current users per arm (null when
    the sample is too small for any); `users_per_arm`: users each arm needs for `effect`."""

    power: float
    mde: float | None
    effect: float
    users_per_arm: int | None


def _sequential_variance(variance: float, n_arm: float, alpha: float, tuning: float) -> float:
    """Return the per-user variance that makes a z-interval as wide as the always-valid one
    (GrowthBook's `sequentialPowerSequentialVariance`)."""
    z_star = float(special.ndtri(1 - alpha / 2))
    z_seq = sequential_halfwidth(1.0, n_arm, alpha, tuning)  # unit variance: the z multiplier
    return variance * (z_seq / z_star) ** 2


def power(
    effect: float,
    mean: float,
    variance: float,
    n_arm: float,
    *,
    alpha: float,
    tuning: float | None = None,
) -> float:
    """Return the power of the two-sided test to detect relative `effect` (`powerEst`)."""
    z_star = float(special.ndtri(1 - alpha / 2))
    v = variance if tuning is None else _sequential_variance(variance, n_arm, alpha, tuning)
    se = math.sqrt(v / (mean**2 * n_arm) + v * (mean * (1 + effect)) ** 2 / (mean**4 * n_arm))
    d = effect / se
    return float(1 - special.ndtr(z_star - d) + special.ndtr(-z_star - d))


def mde(
    mean: float, variance: float, n_arm: float, *, alpha: float, tuning: float | None = None
) -> float | None:
    """Return the relative lift detectable with 80 % power (`findMde`), None if none is."""
    if mean == 0 or variance <= 0 or n_arm <= 0:
        return None
    z = float(special.ndtri(1 - alpha / 2) - special.ndtri(1 - POWER))
    v = variance if tuning is None else _sequential_variance(variance, n_arm, alpha, tuning)
    if n_arm <= v * z**2 / (2 * mean**2):
        return None
    sigma2 = v / n_arm
    a = 1 - z**2 * sigma2 / mean**2
    b = -2 * mean
    c = mean**2 - z**2 * sigma2
    root = (-b + math.sqrt(b**2 - 4 * a * c)) / (2 * a)
    return (root - mean) / mean


def users_per_arm(
    effect: float, mean: float, variance: float, *, alpha: float, tuning: float | None = None
) -> int | None:
    """Return the fewest users per arm whose power for `effect` reaches 80 %."""
    if mean == 0 or variance <= 0 or effect <= 0:
        return None

    def enough(n: int) -> bool:
        return power(effect, mean, variance, n, alpha=alpha, tuning=tuning) >= POWER

    hi = 2
    for _ in range(_MAX_DOUBLINGS):
        if enough(hi):
            break
        hi *= 2
    else:
        return None
    lo = hi // 2  # not enough (or 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi
