"""Fast mode: every comparison in-process, on a virtual clock, reproducible from the seed.

Order of work: train the intent model on its own cohort (`client_sim.training`), then build
the evaluation users in chunks and run every time arm on each chunk (`client_sim.timeexp`),
keeping what the other comparisons need for the first users; then the space, events and
dedupe comparisons on those users. Chunks bound memory: a chunk's users and states are
dropped once its arms have run.
"""

from __future__ import annotations

import dataclasses
import gc
from typing import Any

from client_sim.device import UserWorld, build_world
from client_sim.mobility import HOUR_MS, Plan
from client_sim.places import PlaceSet, build_places
from client_sim.population import EVAL
from client_sim.progress import Progress
from client_sim.scenario import Scenario
from client_sim.screens import ScreensUser, screens_user
from client_sim.space import SpaceUser, run_space_user
from client_sim.sync import SyncUser, sync_user
from client_sim.timeexp import Arm, TimeResult, make_arms, run_arms
from client_sim.training import Trained, train_model
from refreshd.core.rules import RuleSet, default_rules
from synth.catalogue import make_catalogue

__all__ = ["CHUNK", "FastResult", "run_fast"]

# Evaluation users arrive with a day of history under the production rule (timeexp.run_arms).
WARMUP_MS = 24 * HOUR_MS
# Users per chunk: enough rows per scoring batch, small enough that states stay in memory.
CHUNK = 1000


@dataclasses.dataclass
class FastResult:
    scenario: Scenario
    users: int
    hours: float
    seed: int
    places: PlaceSet
    trained: Trained
    arms: list[Arm]
    reference_key: str
    time: TimeResult
    space: list[SpaceUser]
    sync: list[SyncUser]
    screens: list[ScreensUser]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def run_fast(
    sc: Scenario,
    *,
    users: int,
    hours: float,
    seed: int,
    progress: Progress | None = None,
    bounds: bool = False,
) -> FastResult:
    """Run every comparison of the scenario for `users` users over `hours` hours.

    `bounds` adds the diagnostic arms that read the ground truth (`client_sim.timeexp`).
    """
    places = build_places(sc.places)
    rules = RuleSet(default_rules())
    t0 = sc.start_ms
    t1 = t0 + int(hours * HOUR_MS)
    n_train = sc.time.train_users
    n_space = min(users, sc.space.users)
    n_dedupe = min(users, sc.dedupe.users)
    keep = max(n_space, n_dedupe)
    n_arms = len(sc.time.fixed_intervals_min) + len(set(sc.time.threshold_quantiles))
    prog = progress or Progress(1, enabled=False)
    prog.total = n_train + users * (n_arms + 2) + n_space + n_dedupe
    prog.set_stage("training (exploration)")
    trained = train_model(sc, places, rules, seed=seed, users=n_train, progress=prog.advance)
    arms = make_arms(sc, trained.thresholds, bounds=bounds)
    ref_key = f"fixed_{sc.time.reference_interval_min:g}m"
    result = TimeResult(arms, {})
    kept: dict[int, tuple[UserWorld, Plan]] = {}
    prog.total = n_train + users * (len(arms) + 2) + n_space + n_dedupe
    for lo in range(0, users, CHUNK):
        prog.set_stage(f"time arms, users {lo}-{min(users, lo + CHUNK)}")
        built = [
            build_world(
                sc, places, seed=seed, cohort=EVAL, index=i, t0=t0, t1=t1, warmup_ms=WARMUP_MS
            )
            for i in range(lo, min(users, lo + CHUNK))
        ]
        prog.advance(2 * len(built))
        # The chunk's worlds (millions of small objects, no reference cycles) live until the
        # chunk ends: moving everything alive now out of the cyclic collector's generations
        # spares every later collection from rescanning them. Reference counting still frees
        # them when the chunk is dropped.
        gc.freeze()
        run_arms(sc, [b.world for b in built], arms, rules, trained.model, result,
                 reference_key=ref_key, record_users=keep, progress=prog.advance)  # fmt: skip
        for b in built:
            if b.world.user.index < keep:
                kept[b.world.user.index] = (b.world, b.plan)
    prog.set_stage("space (geo.locate)")
    space = []
    for i in range(n_space):
        world, plan = kept[i]
        space.append(run_space_user(sc, places, world, plan, result.reference.get(i),
                                    seed=seed, t0=t0, t1=t1))  # fmt: skip
        prog.advance()
    prog.set_stage("events (push vs piggyback)")
    sync = [sync_user(sc, result.reference[i], seed=seed, index=i) for i in range(users)]
    prog.set_stage("dedupe screens")
    catalogue = make_catalogue(sc.catalogue.seed, centre=places.centre,
                               dup_rate=sc.catalogue.dup_rate,
                               overlap=sc.catalogue.overlap)  # fmt: skip
    screens = []
    for i in range(n_dedupe):
        world, plan = kept[i]
        screens.append(screens_user(sc, catalogue, world.user.uid, plan, result.reference[i]))
        prog.advance()
    return FastResult(sc, users, hours, seed, places, trained, arms, ref_key, result, space,
                      sync, screens)  # fmt: skip
