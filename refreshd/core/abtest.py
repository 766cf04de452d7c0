"""One treatment arm against the baseline, and the corrections across arms and metrics.

The numbers are gbstats' (GrowthBook's engine, v0.8), formula for formula:

- frequentist: `TwoSidedTTest` — Welch t-test on the relative lift (delta-method variance,
  Welch–Satterthwaite df) for `ci` and `p_value`, the same test on the difference for
  `absolute_ci`;
- sequential: `SequentialTwoSidedTTest` — the always-valid interval and p-value of
  Waudby-Smith et al. (eq. 9 and 155 of arXiv:2103.06476v7) with mixing parameter ρ from
  `sequential_tuning`: peeking at the report any number of times keeps the error rate at alpha;
- Bayesian: `EffectBayesianABTest` — a Gaussian posterior of the relative lift from the data's
  normal approximation and the prior (improper by default: then the posterior is the data),
  chance to win P(lift > 0) and the risk (expected loss) of choosing either side;
- corrections: GrowthBook's Holm–Bonferroni and Benjamini–Hochberg adjustments of the p-values
  of every (treatment arm, metric) of a report (`adjust_p_values`).

A `Summary` under CUPED carries the adjusted mean and variance and the unadjusted mean; as in
gbstats the lift is relative to the unadjusted baseline and the delta-method variance uses the
unadjusted means. Where gbstats would return its placeholder result (no users, zero variance,
zero baseline) the fields are null.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from scipy import special  # what scipy.stats computes these with, at a fraction of its import

from refreshd.core.experiments import Prior, StatsConfig

__all__ = [
    "ALPHA",
    "Cuped",
    "MetricResult",
    "Risk",
    "Summary",
    "adjust_p_values",
    "apply_correction",
    "compare",
    "finite",
    "relative_variance",
    "sequential_halfwidth",
    "sequential_rho",
]

# 95 % intervals, gbstats' default alpha.
ALPHA = 0.05
DEFAULT_STATS = StatsConfig()


@dataclass(frozen=True, slots=True)
class Summary:
    """A variant's metric as gbstats sees it; `mean` is None when undefined (no data).

    Under CUPED `mean` and `variance` are the regression-adjusted ones and `unadjusted_mean`
    the plain mean; without it `unadjusted_mean` is None and `mean` serves for both.
    """

    n: int
    mean: float | None
    variance: float
    unadjusted_mean: float | None = None

    @property
    def base(self) -> float | None:
        """The mean lifts are relative to (gbstats' `unadjusted_mean`)."""
        return self.mean if self.unadjusted_mean is None else self.unadjusted_mean


class Risk(msgspec.Struct):
    """Expected loss, in relative lift, of shipping each side if it is in fact the worse one."""

    baseline: float
    variant: float


class Cuped(msgspec.Struct):
    """What CUPED did to one metric of one arm (theta pooled over it and the baseline)."""

    theta: float
    variance_reduction: float  # 1 − var(adjusted lift) / var(unadjusted lift)
    adjusted_mean: float
    baseline_adjusted_mean: float


class MetricResult(msgspec.Struct, kw_only=True):
    """One metric of one variant; lift fields are relative to the baseline, null for it.

    Under the Bayesian engine `relative_lift` and `ci` are the posterior mean and credible
    interval and `p_value` is null. `significant` is the decision: the (adjusted, when a
    correction is set) p-value below alpha, or for Bayesian a chance to win of at least
    1 − alpha or at most alpha.
    """

    mean: float | None
    relative_lift: float | None = None
    absolute_lift: float | None = None
    ci: list[float] | None = None
    absolute_ci: list[float] | None = None
    p_value: float | None = None
    adjusted_p_value: float | None = None
    significant: bool | None = None
    chance_to_win: float | None = None
    risk: Risk | None = None
    cuped: Cuped | None = None


def finite(x: float | None) -> float | None:
    """Return `x` as a float, or None for None, NaN and infinities (JSON has none of them)."""
    return float(x) if x is not None and math.isfinite(x) else None


def _interval(mid: float, half: float) -> list[float] | None:
    lo, hi = finite(mid - half), finite(mid + half)
    return None if lo is None or hi is None else [lo, hi]


def relative_variance(a: Summary, b: Summary) -> float:
    """Return the delta-method variance of the relative lift (gbstats `frequentist_variance`)."""
    ma, mb = a.base, b.base
    assert ma is not None and mb is not None
    return b.variance / (ma**2 * b.n) + a.variance * mb**2 / (ma**4 * a.n)


def sequential_rho(alpha: float, tuning: float) -> float:
    """Return the mixing parameter of the always-valid interval (eq. 161)."""
    return math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)


def sequential_halfwidth(variance: float, n: float, alpha: float, tuning: float) -> float:
    """Return the always-valid interval's half width for an estimator of `variance` (eq. 9).

    `n` is both arms' users; `variance` is the estimator's (so `variance * n` is gbstats' s²).
    """
    rho = sequential_rho(alpha, tuning)
    nr2 = n * rho**2
    return math.sqrt(variance * n) * math.sqrt(
        2 * (nr2 + 1) * math.log(math.sqrt(nr2 + 1) / alpha) / (n * rho) ** 2
    )


def _sequential_p(estimate: float, variance: float, n: int, alpha: float, tuning: float) -> float:
    # eq. 155: p = min(1, 1 / e-value), computed in logs so a huge e-value cannot overflow.
    rho2 = sequential_rho(alpha, tuning) ** 2
    tr2p1 = n * rho2 + 1
    log_e = rho2 * (estimate**2 * n / variance) / (2 * tr2p1) - 0.5 * math.log(tr2p1)
    return math.exp(-log_e) if log_e > 0 else 1.0


def _bayes(
    estimate: float, variance: float, prior_mean: float, prior_var: float, proper: bool
) -> tuple[float, float]:
    """Return the posterior (mean, stddev) of an effect (gbstats `EffectBayesianABTest`)."""
    precision = 1 / variance + (1 / prior_var if proper else 0.0)
    mean = (estimate / variance + prior_mean / prior_var) / precision if proper else estimate
    return mean, math.sqrt(1 / precision)


def _risk(mu: float, sigma: float) -> tuple[float, float]:
    """Return (risk of the baseline, risk of the treatment) for lift ~ N(mu, sigma²).

    gbstats takes truncated-normal means; in closed form, with a = −mu/sigma, they are
    E[max(lift, 0)] = (1 − Φ(a)) mu + sigma φ(a) and E[max(−lift, 0)] = −Φ(a) mu + sigma φ(a).
    """
    a = -mu / sigma
    pdf = math.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
    cdf = float(special.ndtr(a))
    return float(special.ndtr(-a)) * mu + sigma * pdf, -cdf * mu + sigma * pdf


def compare(
    a: Summary, b: Summary, *, inverse: bool = False, stats: StatsConfig = DEFAULT_STATS
) -> MetricResult:
    """Return variant `b`'s result against baseline `a`, as gbstats computes it."""
    out = MetricResult(mean=finite(b.base))
    if a.mean is None or b.mean is None or a.n == 0 or b.n == 0:
        return out
    diff = b.mean - a.mean
    out.absolute_lift = finite(diff)
    if a.mean == 0 or a.base == 0:
        return out
    assert a.base is not None
    lift = diff / a.base
    out.relative_lift = finite(lift)
    # gbstats gives no test for a non-positive variance; n >= 2 keeps Welch's df finite.
    if a.variance <= 0 or b.variance <= 0 or a.n < 2 or b.n < 2:
        return out
    alpha = stats.alpha
    var_rel = relative_variance(a, b)
    var_abs = a.variance / a.n + b.variance / b.n
    if stats.engine == "bayesian":
        _bayesian(out, lift, var_rel, diff, var_abs, a.base, stats.prior, alpha, inverse)
    elif stats.sequential:
        n, tuning = a.n + b.n, stats.sequential_tuning
        out.ci = _interval(lift, sequential_halfwidth(var_rel, n, alpha, tuning))
        out.absolute_ci = _interval(diff, sequential_halfwidth(var_abs, n, alpha, tuning))
        out.p_value = finite(_sequential_p(lift, var_rel, n, alpha, tuning))
    else:
        va, vb = a.variance / a.n, b.variance / b.n
        dof = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
        t_crit = float(special.stdtrit(dof, 1 - alpha / 2))
        out.ci = _interval(lift, t_crit * math.sqrt(var_rel))
        out.absolute_ci = _interval(diff, t_crit * math.sqrt(var_abs))
        out.p_value = finite(2 * float(special.stdtr(dof, -abs(lift) / math.sqrt(var_rel))))
    if stats.engine != "bayesian":
        # The chance to win and risk beside a frequentist result: the Bayesian test's.
        prior = stats.prior
        mu, sigma = _bayes(lift, var_rel, prior.mean, prior.stddev**2, prior.proper)
        _win(out, mu, sigma, inverse)
    out.significant = _significant(out, alpha)
    return out


def _bayesian(
    out: MetricResult,
    lift: float,
    var_rel: float,
    diff: float,
    var_abs: float,
    base: float,
    prior: Prior,
    alpha: float,
    inverse: bool,
) -> None:
    z = float(special.ndtri(1 - alpha / 2))
    mu, sigma = _bayes(lift, var_rel, prior.mean, prior.stddev**2, prior.proper)
    out.relative_lift = finite(mu)
    out.ci = _interval(mu, z * sigma)
    # The difference's posterior: gbstats rescales the relative prior by the baseline mean.
    mu_abs, sigma_abs = _bayes(
        diff, var_abs, prior.mean * abs(base), prior.stddev**2 * base**2, prior.proper
    )
    out.absolute_lift = finite(mu_abs)
    out.absolute_ci = _interval(mu_abs, z * sigma_abs)
    _win(out, mu, sigma, inverse)


def _win(out: MetricResult, mu: float, sigma: float, inverse: bool) -> None:
    ctw = float(special.ndtr(mu / sigma))
    out.chance_to_win = finite(1 - ctw if inverse else ctw)
    ctrl, trt = _risk(mu, sigma)
    # For an inverse metric a positive lift is the loss: gbstats swaps the two risks.
    ctrl, trt = (trt, ctrl) if inverse else (ctrl, trt)
    if finite(ctrl) is not None and finite(trt) is not None:
        out.risk = Risk(ctrl, trt)


def _significant(out: MetricResult, alpha: float) -> bool | None:
    p = out.adjusted_p_value if out.adjusted_p_value is not None else out.p_value
    if p is not None:
        return p < alpha
    if out.chance_to_win is not None:
        return out.chance_to_win >= 1 - alpha or out.chance_to_win <= alpha
    return None


def adjust_p_values(p_values: Sequence[float], method: str) -> list[float]:
    """Return the adjusted p-values, in input order, as GrowthBook adjusts a report's.

    Holm–Bonferroni: ascending, p·(m − i) capped at 1, then a running maximum.
    Benjamini–Hochberg: descending, p·m / (m − i) capped at 1, then a running minimum.
    (Stable sorts, so ties keep input order as GrowthBook's do.)
    """
    m = len(p_values)
    if m == 0:
        return []
    holm = method == "holm-bonferroni"
    order = sorted(range(m), key=lambda i: p_values[i] if holm else -p_values[i])
    out = [0.0] * m
    running = None
    for rank, i in enumerate(order):
        p = min(p_values[i] * (m - rank) if holm else p_values[i] * m / (m - rank), 1.0)
        if running is not None:
            p = max(p, running) if holm else min(p, running)
        out[i] = running = p
    return out


def apply_correction(results: Sequence[MetricResult], method: str | None, alpha: float) -> None:
    """Set `adjusted_p_value` and `significant` on results with a p-value, all in one family."""
    if method is None:
        return
    tested = [r for r in results if r.p_value is not None]
    adjusted = adjust_p_values([r.p_value for r in tested if r.p_value is not None], method)
    for r, p in zip(tested, adjusted, strict=True):
        r.adjusted_p_value = p
        r.significant = p < alpha
