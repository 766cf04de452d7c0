"""How a user reacts to the homepage: clicks, pull-to-refresh, negative feedback.

Modelling choices:

- *Freshness* of what the homepage shows decays with the time since its recommendations were
  computed and with the distance the user moved since (nearby offers stop being nearby):
  F = floor + (1 − floor) · exp(−age / tau) · exp(−moved / D). The floor is the value of
  recommendations that do not age (a favourite service, a standing offer).
- Clicks at a view are Poisson with mean rate(intent) · intensity · F · fold: a browsing user
  clicks fresh recommendations, a paying user rarely clicks anything. `fold` is 1 once the
  user has scrolled into the feed during the visit and `above_fold_share` before: on a
  payment app's homepage the service grid fills the first screen, and only the slots that
  peek above the fold are seen without scrolling. The Poisson count is taken by
  inverse CDF from the look's uniform, so with common random numbers a fresher list never
  gets fewer clicks than a staler one.
- A browsing user who sees a stale list (F below `pull_staleness`) pulls to refresh with
  probability `pull_prob`: the user compensates for a policy that refreshes too little, and
  that pull is a refresh request the policy is charged for.
- Negative feedback ("not interested") happens at a view with probability `feedback_prob`,
  twice as often on a fully stale list as on a fresh one: repeated, irrelevant items annoy.
- An *exposure* (an `impression` event) is one freshly served list rendered on the homepage,
  the server-side notion the reference measures: exposure PV moves with refresh requests
  there, and PVCTR = click PV / exposure PV.
"""

from __future__ import annotations

import math

from client_sim.scenario import Behaviour, Clicks
from client_sim.sessions import Latent
from client_sim.stats import poisson_ppf

__all__ = ["clicks", "freshness", "gives_feedback", "poisson_ppf", "pulls"]


def freshness(age_ms: float, moved_m: float, cfg: Clicks) -> float:
    """Return the value (0..1) of a list computed `age_ms` ago, `moved_m` metres away."""
    decay = math.exp(-max(age_ms, 0.0) / (cfg.freshness_tau_s * 1000.0))
    decay *= math.exp(-max(moved_m, 0.0) / cfg.freshness_distance_m)
    return cfg.freshness_floor + (1.0 - cfg.freshness_floor) * decay


def clicks(latent: Latent, fresh: float, u: float, cfg: Clicks, *, in_feed: bool = True) -> int:
    """Return how many items the user clicks at one view of the homepage."""
    rate = cfg.browse_rate if latent.browse else cfg.utility_rate
    fold = 1.0 if in_feed else cfg.above_fold_share
    return poisson_ppf(u, rate * latent.intensity * fresh * fold)


def pulls(latent: Latent, fresh: float, u: float, cfg: Behaviour) -> bool:
    """Return whether a browsing user pulls to refresh a stale list."""
    return latent.browse and fresh < cfg.pull_staleness and u < cfg.pull_prob


def gives_feedback(fresh: float, u: float, cfg: Behaviour) -> bool:
    """Return whether the user marks an item "not interested" at this view."""
    return u < cfg.feedback_prob * (2.0 - fresh)
