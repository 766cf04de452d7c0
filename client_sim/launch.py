"""What a device observes of a visit before and early in it: launch source, bypass, scroll depth.

Modelling choices (the evidence behind the defaults is in docs/simulator.md):

- Every visit has a launch source (`intent.features.LAUNCH_SOURCES`): launcher icon, push
  notification, deep link, scan/pay shortcut, return from a payment flow, widget. The device
  knows it before the homepage renders and reports it at every decide of the visit.
- The source depends on the visit's latent intent through `[launch]`: P(source | intent) =
  λ · P₁(source | intent) + (1 − λ) · M(source), with P₁ the scenario's `browse` or `utility`
  weights and M = π · P₁(· | browse) + (1 − π) · P₁(· | utility) (π = `marginal_browse_share`).
  Both intents share M, so at λ = 0 the source is independent of intent (the world before this
  signal existed) and at λ = 1 it is drawn from the intent's own conditional. No published
  figure says how informative the source is on a payments homepage: λ is a swept parameter.
  Because P_λ(· | browse) − P_λ(· | utility) = λ · (P₁(· | browse) − P₁(· | utility)), the
  AUC of the source alone is 0.5 + λ · (AUC at λ = 1 − 0.5) (`source_auc`).
- A launch from a source listed in `[launch].bypass` skips the homepage with that probability
  (a scan shortcut opens the scanner, a pay widget the pay code): the visit happens (payments,
  background) but shows no homepage view, so the device never asks `/v1/decide` in it.
- Each scroll moves the user down the feed by an exponential step whose mean depends on intent
  the same way, with its own knob κ (`[in_visit]`); the depth is capped at the feed's end.

Draws: one uniform pair per visit (source, bypass) from the user's "launch" stream and one
uniform per possible scroll from the "depth" stream, both indexed by the visit's rank among the
day's starts like every other per-visit draw. Changing λ, κ or the weights changes which source
or depth a uniform maps to, never any other draw of the world (common random numbers).
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_right
from itertools import accumulate

from client_sim.scenario import LAUNCH_SOURCES, InVisit, Launch

__all__ = ["Launcher", "depth_auc", "depth_means", "mixed", "source_auc"]


def _normalised(weights: dict[str, float]) -> tuple[float, ...]:
    total = sum(weights.values())
    return tuple(weights.get(s, 0.0) / total for s in LAUNCH_SOURCES)


def mixed(cfg: Launch) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Return P(source | browse) and P(source | utility) at the scenario's λ, in source order."""
    pb, pu = _normalised(cfg.browse), _normalised(cfg.utility)
    lam, pi = cfg.informativeness, cfg.marginal_browse_share
    m = [pi * b + (1.0 - pi) * u for b, u in zip(pb, pu, strict=True)]
    return (
        tuple(lam * b + (1.0 - lam) * x for b, x in zip(pb, m, strict=True)),
        tuple(lam * u + (1.0 - lam) * x for u, x in zip(pu, m, strict=True)),
    )


def source_auc(pb: tuple[float, ...], pu: tuple[float, ...]) -> float:
    """Return the AUC of the best score of the source alone (its likelihood ratio) for browse
    against utility visits: P(a browse visit's source ranks above a utility one's), ties half."""

    def lr(i: int) -> float:
        return pb[i] / pu[i] if pu[i] > 0 else float("inf")

    auc = 0.0
    for i in range(len(pb)):
        for j in range(len(pu)):
            if i == j or lr(i) == lr(j):
                auc += 0.5 * pb[i] * pu[j]
            elif lr(i) > lr(j):
                auc += pb[i] * pu[j]
    return auc


def depth_means(cfg: InVisit) -> tuple[float, float]:
    """Return the mean depth step of a browse and of a utility visit at the scenario's κ."""
    kappa, pi = cfg.informativeness, cfg.marginal_browse_share
    mb, mu = cfg.depth_per_scroll_browse, cfg.depth_per_scroll_utility
    m = pi * mb + (1.0 - pi) * mu
    return kappa * mb + (1.0 - kappa) * m, kappa * mu + (1.0 - kappa) * m


def depth_auc(cfg: InVisit) -> float:
    """Return the AUC of one depth step for browse against utility (exponential steps)."""
    mb, mu = depth_means(cfg)
    return 0.5 if mb + mu <= 0 else mb / (mb + mu)


@dataclasses.dataclass(frozen=True, slots=True)
class Launcher:
    """The scenario's launch distributions, ready for inverse-CDF draws."""

    cdf_browse: tuple[float, ...]
    cdf_utility: tuple[float, ...]
    bypass: tuple[float, ...]  # by source

    @classmethod
    def of(cls, cfg: Launch) -> Launcher:
        pb, pu = mixed(cfg)
        return cls(
            tuple(accumulate(pb)),
            tuple(accumulate(pu)),
            tuple(cfg.bypass.get(s, 0.0) for s in LAUNCH_SOURCES),
        )

    def draw(self, u_source: float, u_bypass: float, browse: bool) -> tuple[str, bool]:
        """Return (source, whether the visit bypasses the homepage) for two uniforms."""
        cdf = self.cdf_browse if browse else self.cdf_utility
        # The last cumulative weight may fall a rounding error short of 1: clamp the index.
        i = min(bisect_right(cdf, u_source * cdf[-1]), len(cdf) - 1)
        return LAUNCH_SOURCES[i], u_bypass < self.bypass[i]
