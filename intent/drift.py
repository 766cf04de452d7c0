"""Distribution drift between two samples of scores (or of one feature): the PSI.

The population stability index compares the share of each sample in bins cut at the
quantiles of the expected (reference) sample: sum over bins of (a - e) * ln(a / e). The usual
reading: below 0.1 the distributions are alike, 0.1-0.25 a moderate shift, above 0.25 a
large one. The shadow report compares a challenger's scores with the champion's on the same
decisions; monitoring compares today's scores with the training holdout's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["EMPTY_BIN_SHARE", "psi"]

# The share an empty bin counts as, so ln(a / e) stays finite: a bin holding nothing of one
# sample and 1 % of the other then adds ~0.05, a visible but not overwhelming shift.
EMPTY_BIN_SHARE = 1e-4


def psi(
    expected_scores: Sequence[float] | np.ndarray,
    actual_scores: Sequence[float] | np.ndarray,
    bins: int = 10,
) -> float:
    """Return the PSI of `actual_scores` against `expected_scores` (NaN if either is empty).

    Bin edges are the expected sample's quantiles, so each bin holds about 1/bins of it; tied
    quantiles (many equal scores) merge into one bin. Values outside the expected range fall
    into the outer bins.
    """
    if bins < 1:
        raise ValueError("bins must be >= 1")
    expected = np.asarray(expected_scores, dtype=np.float64)
    actual = np.asarray(actual_scores, dtype=np.float64)
    if len(expected) == 0 or len(actual) == 0:
        return math.nan
    inner = np.unique(np.quantile(expected, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    # side="right": a score equal to an edge goes to the bin above it, in both samples alike.
    e = np.bincount(np.searchsorted(inner, expected, side="right"), minlength=len(inner) + 1)
    a = np.bincount(np.searchsorted(inner, actual, side="right"), minlength=len(inner) + 1)
    e_share = np.maximum(e / len(expected), EMPTY_BIN_SHARE)
    a_share = np.maximum(a / len(actual), EMPTY_BIN_SHARE)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))
