"""What a refresh is worth as a function of how old the list on screen is, from randomised logs.

The intent model says how likely the user is to click; it does not say whether *refreshing*
changes that. A list refreshed a minute ago gains nothing from another refresh, however keen
the user; a list from last night gains the most. This module measures that gain from
exploration traffic (decisions whose refresh was a coin flip, `explore` in the log), where the
refreshed and the not-refreshed rows are alike except for the refresh:

- rows are grouped by the age of the list on screen (`since_refresh_s`, log-spaced buckets;
  a user never refreshed counts as the oldest bucket); a bucket with too few rows or clicks to
  measure merges with its older neighbours;
- in each bucket, r = mean clicks soon after the decision (`intent.dataset.OUTCOME_WINDOW_S`)
  without a refresh / with one: the
  share of a fresh list's clicks that the old list still gets; the gain is 1 − r;
- the gains are made non-decreasing in age (pool-adjacent-violators weighted by the inverse
  variance of each ratio: an older list is never worth *less* refreshing) and scaled so the
  oldest group is 1.

What is measured is "refresh now" against "not now, and whatever the policy does next": after a
"no" a later decision in the same window may still refresh (after a refresh the cooldown rules
that out), so the gain is, if anything, understated for lists the policy would soon refresh.

The curve multiplies the intent probability into the score the policy thresholds
(`IntentModel.predict`): P(click) × gain(age), the expected clicks a refresh adds, in units of a
fully stale list's. No curve (too few randomised rows, or no measurable gain) leaves the score
the plain probability. Nothing here knows how the world makes lists stale.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_right
from operator import itemgetter

import numpy as np

__all__ = ["AGE_FEATURE", "BUCKET_EDGES_S", "MIN_CLICKS", "MIN_ROWS", "Staleness", "fit_staleness"]

# The feature that carries the age of the list on screen, in seconds.
AGE_FEATURE = "since_refresh_s"

# Bucket lower edges in seconds: 0, 1, 2, 5, 10, 20, 40, 80, 160, 320 min.
BUCKET_EDGES_S = (0, 60, 120, 300, 600, 1200, 2400, 4800, 9600, 19200)
# A group of age buckets is measured only with this many randomised rows on each side and this
# many clicks after a refresh; thinner buckets merge with their older neighbours.
MIN_ROWS = 30
MIN_CLICKS = 200
# A never-refreshed user's list is older than any bucket edge.
_NEVER = math.inf
_first = itemgetter(0)


@dataclasses.dataclass(frozen=True, slots=True)
class Staleness:
    """A non-decreasing gain curve: `points` are (age in whole seconds, gain in [0, 1])."""

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a staleness curve needs at least one point")
        ages = [a for a, _ in self.points]
        gains = [g for _, g in self.points]
        if not all(math.isfinite(a) and a >= 0 for a in ages):
            raise ValueError("staleness ages must be finite and not negative")
        if ages != sorted(ages) or len(set(ages)) != len(ages):
            raise ValueError("staleness ages must be strictly increasing")
        if any(not 0.0 <= g <= 1.0 for g in gains) or gains != sorted(gains):
            raise ValueError("staleness gains must be non-decreasing within [0, 1]")

    def gain(self, age_s: np.ndarray) -> np.ndarray:
        """Return the gain at each age; a negative or NaN age (never refreshed) is the oldest."""
        age = np.asarray(age_s, dtype=np.float64)
        age = np.where((age < 0) | np.isnan(age), _NEVER, age)
        xs = np.array([a for a, _ in self.points])
        ys = np.array([g for _, g in self.points])
        return np.interp(np.minimum(age, xs[-1]), xs, ys)

    def gain_one(self, age_s: float) -> float:
        """Return the gain at one age (linear between points, flat beyond them)."""
        pts = self.points
        if not age_s >= 0 or age_s >= pts[-1][0]:  # negative or NaN: never refreshed
            return pts[-1][1]
        if age_s <= pts[0][0]:
            return pts[0][1]
        i = bisect_right(pts, age_s, key=_first)
        (a0, g0), (a1, g1) = pts[i - 1], pts[i]
        return g0 + (g1 - g0) * (age_s - a0) / (a1 - a0)

    def to_text(self) -> str:
        return ",".join(f"{a:.0f}:{g:.4f}" for a, g in self.points)

    @classmethod
    def from_text(cls, text: str) -> Staleness:
        try:
            pairs = [item.split(":") for item in text.strip().split(",")]
            return cls(tuple((float(a), float(g)) for a, g in pairs))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"bad staleness curve {text!r}: {exc}") from None


def _pav(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Return the weighted least-squares non-decreasing fit (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for v, w in zip(values.tolist(), weights.tolist(), strict=True):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            b, a = blocks.pop(), blocks.pop()
            tw = a[1] + b[1]
            blocks.append([(a[0] * a[1] + b[0] * b[1]) / tw, tw, a[2] + b[2]])
    return np.array([m for m, _, c in blocks for _ in range(int(c))])


def _groups(bucket: np.ndarray, treated: np.ndarray, y: np.ndarray,
            min_rows: int, min_clicks: int) -> list[tuple[int, int, np.ndarray]]:  # fmt: skip
    """Merge adjacent buckets (young to old) until each group can be measured.

    A group needs `min_rows` rows on each side and `min_clicks` clicks after a refresh; a tail
    that never gets there joins the group before it. Returns (first, last bucket, row mask).
    """
    groups: list[tuple[int, int, np.ndarray]] = []
    first, mask = 0, np.zeros(len(bucket), dtype=bool)
    for k in range(len(BUCKET_EDGES_S)):
        mask = mask | (bucket == k)
        on, off = mask & treated, mask & ~treated
        if on.sum() >= min_rows and off.sum() >= min_rows and y[on].sum() >= min_clicks:
            groups.append((first, k, mask))
            first, mask = k + 1, np.zeros(len(bucket), dtype=bool)
    if mask.any() and groups:
        lo, _, prev = groups.pop()
        groups.append((lo, len(BUCKET_EDGES_S) - 1, prev | mask))
    return groups


def fit_staleness(
    age_s: np.ndarray,
    refreshed: np.ndarray,
    clicks: np.ndarray,
    *,
    min_rows: int = MIN_ROWS,
    min_clicks: int = MIN_CLICKS,
) -> Staleness | None:
    """Fit the gain curve from randomised rows (module docstring); None if it cannot."""
    age = np.asarray(age_s, dtype=np.float64)
    age = np.where((age < 0) | np.isnan(age), _NEVER, age)
    treated = np.asarray(refreshed, dtype=bool)
    y = np.asarray(clicks, dtype=np.float64)
    bucket = np.searchsorted(np.array(BUCKET_EDGES_S, dtype=np.float64), age, side="right") - 1
    ages, gains, weights = [], [], []
    for lo_k, hi_k, mask in _groups(bucket, treated, y, min_rows, min_clicks):
        on, off = y[mask & treated], y[mask & ~treated]
        fresh, kept = on.mean(), off.mean()
        lo = BUCKET_EDGES_S[lo_k]
        hi = BUCKET_EDGES_S[hi_k + 1] if hi_k + 1 < len(BUCKET_EDGES_S) else 2 * BUCKET_EDGES_S[-1]
        ages.append(float(round(math.sqrt(max(lo, 30) * hi))))  # the group's geometric middle
        ratio = kept / fresh
        gains.append(1.0 - ratio)
        # Delta-method variance of the ratio of two means: noisy groups weigh less in the fit.
        var = ratio**2 * (
            off.var() / max(kept**2, 1e-12) / len(off) + on.var() / fresh**2 / len(on)
        )
        weights.append(1.0 / max(var, 1e-9))
    if not gains:
        return None
    fitted = np.clip(_pav(np.array(gains), np.array(weights)), 0.0, None)
    top = float(fitted[-1])
    if top <= 0:
        return None  # refreshing made no measurable difference at any age
    scaled = (round(float(g) / top, 4) for g in fitted)
    return Staleness(tuple(zip(ages, scaled, strict=True)))
