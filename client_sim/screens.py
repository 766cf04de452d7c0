"""The dedupe comparison: duplicate entities per screen with no dedupe, greedy and optimal.

The device keeps each slot's last recommendations in its slot cache (`dedupe.cache`). Every
refresh of the time comparison's reference arm (first `dedupe.screens_per_user` of each of
the first `dedupe.users` users) asks each refreshed slot's recommender
(`dedupe.recommend`, independent per slot, so entities overlap as in production) at the
user's position. A full refresh allocates all slots at once; a refresh of some slots (an
event rule's directive) dedupes them against the slots already on screen
(`dedupe.refresh_slot`, pinning the others). Three devices run side by side on identical
recommendations: no dedupe, greedy, optimal, all with `dedupe.default_rules()`.

A duplicate is an item whose real-world thing (the catalogue's ground truth, never visible
to the rules) already shows earlier on the same screen: `dedupe.true_duplicates`. Greedy and
optimal are also compared on total kept score for the same full-screen inputs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from client_sim.device import ArmStats
from client_sim.mobility import Plan
from client_sim.scenario import Scenario
from dedupe import (
    SlotCache,
    SlotItems,
    default_rules,
    greedy,
    new_cache,
    optimal,
    put,
    refresh_slot,
    visible,
)
from synth.catalogue import Catalogue, recommend, true_duplicates

__all__ = ["ScreensUser", "screens_user"]


@dataclasses.dataclass(slots=True)
class ScreensUser:
    screens: int
    dups_none: int
    dups_greedy: int
    dups_optimal: int
    full_screens: int
    score_greedy: float
    score_optimal: float


def screens_user(
    sc: Scenario, catalogue: Catalogue, uid: str, plan: Plan, ref: ArmStats
) -> ScreensUser:
    """Replay one user's refreshes through three slot caches."""
    slots = list(sc.catalogue.slots)
    rules = default_rules()
    caches: dict[str, SlotCache] = {k: new_cache(slots) for k in ("none", "greedy", "optimal")}
    out = ScreensUser(0, 0, 0, 0, 0, 0.0, 0.0)
    for ts, which in ref.refresh_log[: sc.dedupe.screens_per_user]:
        lat, lng = (float(v[0]) for v in plan.at(np.array([ts])))
        targets = slots if which is None else [s for s in slots if s in which] or slots
        # dedupe.recommend overflows np.exp for positions thousands of km from the catalogue
        # (a traveller abroad); the score is then 0.0, which is right, so silence the warning.
        with np.errstate(over="ignore"):
            fresh = {
                s: recommend(catalogue, s, user_id=uid, n=sc.catalogue.items_per_slot, now_ms=ts,
                             lat=lat, lng=lng)
                for s in targets
            }  # fmt: skip
        if len(targets) == len(slots):
            raw = [SlotItems(s, fresh[s]) for s in slots]
            g = greedy(raw, rules, now_ms=ts)
            o = optimal(raw, rules, now_ms=ts)
            out.full_screens += 1
            out.score_greedy += g.total_score
            out.score_optimal += o.total_score
            for key, alloc in (("none", raw), ("greedy", g.slots), ("optimal", o.slots)):
                cache = caches[key]
                for si in alloc:
                    cache = put(cache, si.slot, si.items, now_ms=ts)
                caches[key] = cache
        else:
            for s in targets:
                caches["none"] = put(caches["none"], s, fresh[s], now_ms=ts)
                for key in ("greedy", "optimal"):
                    caches[key], _ = refresh_slot(caches[key], s, fresh[s], rules, now_ms=ts,
                                                  strategy=key)  # type: ignore[arg-type]  # fmt: skip
        out.screens += 1
        out.dups_none += true_duplicates(catalogue, visible(caches["none"], now_ms=ts))
        out.dups_greedy += true_duplicates(catalogue, visible(caches["greedy"], now_ms=ts))
        out.dups_optimal += true_duplicates(catalogue, visible(caches["optimal"], now_ms=ts))
    return out
