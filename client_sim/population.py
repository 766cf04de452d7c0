"""Users: archetype, time zone, session rate, base browse intent, home and work.

Modelling choices:

- The archetype is drawn from the scenario's mix; everything else about a user is drawn from
  their archetype's distributions, so two users of one archetype differ as people do.
- A user's session rate is log-normal around the archetype's mean: app use is heavy-tailed,
  a few users open the app many times more often than the median one.
- `base_logit` is the user's latent propensity to browse the homepage (rather than pay and
  leave). It is never visible to the policy; only its consequences (clicks, scrolls, long
  visits) are.
- Homes are spread uniformly over a disc of `mobility.home_km` around the city centre, work
  places over a smaller central disc: commutes run inwards, as in most cities.
- A share of devices does not report its time zone (`population.reports_tz_share`), so the
  model cannot always rely on the hour feature.

Common random numbers: every random stream is derived from (seed, cohort, user, purpose), so
two policies compared on the same seed see the same users, sessions, latent intents and
per-view uniforms, whatever else they do: a stream never depends on how many draws another
stream made, on how many users are simulated, or on which arms run. Purposes are named and
hashed with crc32 (stable across processes, unlike hash()).
"""

from __future__ import annotations

import dataclasses
import math
import zlib

import numpy as np

from client_sim.places import PlaceSet, offset
from client_sim.scenario import ARCHETYPES, Scenario

__all__ = ["EVAL", "TRAIN", "User", "make_user", "make_users", "stream"]

# Cohorts: the users the model is trained on are never the users it is evaluated on.
EVAL = 0
TRAIN = 1


def _code(purpose: str) -> int:
    return zlib.crc32(purpose.encode())


def stream(seed: int, cohort: int, user: int, purpose: str) -> np.random.Generator:
    """Return the generator for one user's draws of one kind."""
    return np.random.default_rng([seed, cohort, user, _code(purpose)])


@dataclasses.dataclass(frozen=True, slots=True)
class User:
    """One simulated person (the latent parts are never sent to the service)."""

    index: int
    cohort: int
    uid: str
    archetype: str
    tz_offset_min: int
    reports_tz: bool
    sessions_per_day: float
    base_logit: float  # latent
    home: tuple[float, float]
    work: tuple[float, float] | None


def _disc(rng_u: float, rng_v: float, radius_m: float) -> tuple[float, float]:
    r = radius_m * math.sqrt(rng_u)
    theta = 2 * math.pi * rng_v
    return r * math.cos(theta), r * math.sin(theta)


def make_user(sc: Scenario, places: PlaceSet, seed: int, cohort: int, index: int) -> User:
    """Return user `index` of a cohort; depends only on (seed, cohort, index)."""
    rng = stream(seed, cohort, index, "profile")
    names = [a for a in ARCHETYPES if sc.population.mix.get(a, 0.0) > 0]
    weights = [sc.population.mix[a] for a in names]
    total = sum(weights)
    archetype = str(rng.choice(names, p=[w / total for w in weights]))
    arch = sc.archetype(archetype)
    s = arch.sessions_sd_log
    rate = arch.sessions_per_day * math.exp(s * float(rng.normal()) - s * s / 2)
    base = float(rng.normal(arch.browse_logit, arch.browse_logit_sd))
    reports_tz = bool(rng.random() < sc.population.reports_tz_share)
    lat0, lng0 = places.centre
    home = offset(lat0, lng0, *_disc(float(rng.random()), float(rng.random()),
                                      sc.mobility.home_km * 1000))  # fmt: skip
    work = offset(lat0, lng0, *_disc(float(rng.random()), float(rng.random()),
                                      sc.mobility.work_km * 1000))  # fmt: skip
    prefix = "u" if cohort == 0 else "t"
    return User(
        index=index,
        cohort=cohort,
        uid=f"{prefix}{index:06d}",
        archetype=archetype,
        tz_offset_min=sc.scenario.tz_offset_min,
        reports_tz=reports_tz,
        sessions_per_day=rate,
        base_logit=base,
        home=home,
        work=work if arch.mobility == "commute" else None,
    )


def make_users(sc: Scenario, places: PlaceSet, seed: int, cohort: int, n: int) -> list[User]:
    """Return the first `n` users of a cohort."""
    return [make_user(sc, places, seed, cohort, i) for i in range(n)]
