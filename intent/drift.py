"""Population stability index (PSI): how far one score distribution moved from another.

PSI = Σ (a_i − e_i) · ln(a_i / e_i) over bins, with e_i and a_i the shares of the expected
and the actual scores in bin i. The bins are quantile bins of the expected scores (deciles by
default), so each holds about the same share of them and a shift anywhere in the range shows.
The usual reading: below 0.1 stable, 0.1–0.2 a moderate shift, above 0.2 a significant one.

Pure: no I/O, no clock; the service and the shadow comparison call the same function.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["EPSILON", "psi"]

# An empty bin's share is raised to this, so ln(a/e) stays finite; 1e-4 keeps one empty bin
# of ten from contributing more than ~0.9 on its own (0.1 · ln(0.1/1e-4)).
EPSILON = 1e-4


def psi(
    expected_scores: Sequence[float] | np.ndarray,
    actual_scores: Sequence[float] | np.ndarray,
    bins: int = 10,
) -> float:
    """Return the PSI of `actual_scores` against `expected_scores` in `bins` quantile bins.

    Bin edges are the expected scores' quantiles; edges that coincide (many equal scores) merge
    their bins, so a point mass is one bin and not several empty ones. A score equal to an edge
    falls in the bin above it, for both distributions alike. Shares of empty bins are raised
    to `EPSILON`. Raises ValueError when either side is empty or `bins` < 1.
    """
    expected = np.asarray(expected_scores, dtype=np.float64)
    actual = np.asarray(actual_scores, dtype=np.float64)
    if bins < 1:
        raise ValueError("bins must be >= 1")
    if not len(expected) or not len(actual):
        raise ValueError("psi needs expected and actual scores")
    inner = np.unique(np.quantile(expected, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    e = _shares(expected, inner)
    a = _shares(actual, inner)
    return float(np.sum((a - e) * np.log(a / e)))


def _shares(scores: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(
        np.searchsorted(inner_edges, scores, side="right"), minlength=len(inner_edges) + 1
    )
    return np.maximum(counts / len(scores), EPSILON)
