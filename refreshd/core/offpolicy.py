"""Off-policy estimates: what a candidate policy would change, from randomised decisions.

Exploration decisions (`explore` in the log) refresh by a logged coin flip whose probability
of the answer given is their `propensity`, whatever the user does. For each of them the replay
knows what the deterministic part of the deployed policy would have answered (`baseline`) and
what the candidate would (`candidate`), so the outcome observed under the coin flip estimates
either policy's outcome by inverse-propensity weighting: a row counts for a policy, weighted
by 1 / propensity, when the coin agreed with it.

The change per decision, E[y(candidate) − y(baseline)], is estimated two ways:

- `ips_change`: the mean of y · (1[a = candidate] − 1[a = baseline]) / p — unbiased; the CI is
  the normal one over those per-row terms (rows are independent draws).
- `snips_change`: each policy's value self-normalised by its weights' sum (a ratio, bias of
  order 1/n, lower variance when the weights' sum strays from n); the CI by the delta method
  on the two ratios.

Rows where baseline and candidate agree contribute nothing to either difference, but they
count in n: they are the decisions the candidate does not change.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import msgspec

__all__ = ["Z95", "Estimate", "Sample", "ips_change", "snips_change"]

Z95 = 1.959963984540054  # the normal quantile of a two-sided 95 % interval


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """One mature exploration decision: its outcome, the coin flip and the two policies."""

    outcome: float  # clicks in the decision's label window (intent.dataset)
    refreshed: bool  # what the coin answered
    propensity: float  # P(that answer) under the logging policy
    baseline: bool  # what the deployed policy's deterministic part would have answered
    candidate: bool  # what the candidate would have answered


class Estimate(msgspec.Struct, frozen=True):
    """A change per decision with its standard error and 95 % CI over `n` samples."""

    value: float
    se: float
    ci: tuple[float, float]
    n: int

    def scaled(self, k: float) -> Estimate:
        """Return the estimate times a known constant (a count of decisions, 1 / clicks)."""
        lo, hi = sorted((self.ci[0] * k, self.ci[1] * k))
        return Estimate(self.value * k, self.se * abs(k), (lo, hi), self.n)


def _estimate(value: float, var: float, n: int) -> Estimate:
    se = math.sqrt(max(var, 0.0) / n) if n else math.nan
    return Estimate(value, se, (value - Z95 * se, value + Z95 * se), n)


def _weights(s: Sample) -> tuple[float, float]:
    w = 1.0 / s.propensity
    return (w if s.refreshed == s.candidate else 0.0), (w if s.refreshed == s.baseline else 0.0)


def ips_change(samples: Sequence[Sample]) -> Estimate:
    """Return the inverse-propensity estimate of the change per decision."""
    n = len(samples)
    if n == 0:
        return _estimate(math.nan, math.nan, 0)
    terms = []
    for s in samples:
        wc, wb = _weights(s)
        terms.append(s.outcome * (wc - wb))
    mean = sum(terms) / n
    var = sum((t - mean) ** 2 for t in terms) / (n - 1) if n > 1 else math.nan
    return _estimate(mean, var, n)


def snips_change(samples: Sequence[Sample]) -> Estimate:
    """Return the self-normalised estimate of the change per decision (delta-method CI)."""
    n = len(samples)
    if n == 0:
        return _estimate(math.nan, math.nan, 0)
    ws = [_weights(s) for s in samples]
    wc_mean = sum(w[0] for w in ws) / n
    wb_mean = sum(w[1] for w in ws) / n
    if wc_mean == 0 or wb_mean == 0:  # no coin ever agreed with one of them
        return _estimate(math.nan, math.nan, n)
    vc = sum(w[0] * s.outcome for w, s in zip(ws, samples, strict=True)) / n / wc_mean
    vb = sum(w[1] * s.outcome for w, s in zip(ws, samples, strict=True)) / n / wb_mean
    # Influence of each row on vc − vb (the linearised ratios); its variance / n is the
    # delta method's.
    psi = [
        w[0] * (s.outcome - vc) / wc_mean - w[1] * (s.outcome - vb) / wb_mean
        for w, s in zip(ws, samples, strict=True)
    ]
    var = sum(p * p for p in psi) / (n - 1) if n > 1 else math.nan
    return _estimate(vc - vb, var, n)
