"""Fast mode: every comparison in-process, on a virtual clock, reproducible from the seed.

Order of work: train the intent model on its own cohort (`client_sim.training`), then build
the evaluation users in chunks and run every time arm on each chunk (`client_sim.timeexp`),
keeping what the other comparisons need for the first users; then the space, events and
dedupe comparisons on those users. Chunks bound memory: a chunk's users and states are
dropped once its arms have run.

Then the sweep is extended (`extend_arms`, a fixed rule, never a look at which result is
better): while a policy arm's click PV lies outside the fixed sweep's click-PV range, longer
(or shorter) fixed intervals are added; while a threshold family (the intent policy, and the
`bound_visit` oracle with `--bounds`) or a heuristic family has no two arms whose click PVs
bracket the reference rule's (the operating point), its next thresholds or gaps outward are
added. The added arms live the same users again (worlds rebuilt from the seed, the same
warm-up), so every arm still shares every draw.
"""

from __future__ import annotations

import dataclasses
import gc
from typing import Any

import numpy as np

from client_sim.device import UserWorld, build_world
from client_sim.experiment import ExperimentResult, ExperimentRun
from client_sim.mobility import HOUR_MS, Plan
from client_sim.places import PlaceSet, build_places
from client_sim.population import EVAL
from client_sim.progress import Progress
from client_sim.scenario import Scenario
from client_sim.screens import ScreensUser, screens_user
from client_sim.space import SpaceUser, run_space_user
from client_sim.stats import Boot
from client_sim.sync import SyncUser, sync_user
from client_sim.timeexp import (
    HEURISTICS,
    WARMUP_MS,
    Arm,
    TimeResult,
    fixed_arm,
    heuristic_arm,
    intent_arm,
    make_arms,
    run_arms,
)
from client_sim.training import Trained, train_model
from refreshd.core.experiments import ExperimentConfig
from refreshd.core.rules import RuleSet, default_rules
from synth.catalogue import make_catalogue

__all__ = ["CHUNK", "FastResult", "extend_arms", "run_fast"]

# Users per chunk: enough rows per scoring batch, small enough that states stay in memory.
CHUNK = 1000
# Extension steps, tried in order, two per round, at most EXTEND_ROUNDS rounds.
LONGER_MIN = (90.0, 120.0, 180.0, 240.0, 360.0, 480.0, 720.0, 1440.0)
SHORTER_MIN = (0.5,)  # the engine's cooldown (30 s) makes shorter intervals the same arm
INTENT_LOWER_Q = (0.2, 0.15, 0.1, 0.05, 0.02, 0.0)
INTENT_HIGHER_Q = (0.8, 0.85, 0.9, 0.95, 0.98)
BOUND_LOWER = (0.15, 0.1, 0.05, 0.02, 0.0)
BOUND_HIGHER = (0.5, 0.6, 0.8)
GAPS_LONGER_MIN = (60.0, 120.0, 240.0, 480.0)
EXTEND_ROUNDS = 4


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
    experiment: ExperimentResult | None = None  # with `--experiment` (client_sim.experiment)


def run_fast(
    sc: Scenario,
    *,
    users: int,
    hours: float,
    seed: int,
    progress: Progress | None = None,
    bounds: bool = False,
    experiment: tuple[str, ExperimentConfig] | None = None,
) -> FastResult:
    """Run every comparison of the scenario for `users` users over `hours` hours.

    `bounds` adds the diagnostic arms that read the ground truth (`client_sim.timeexp`);
    `experiment` (id, config) also runs that threshold experiment on the same users, from the
    same warm-up, with its paired comparison (`client_sim.experiment`).
    """
    places = build_places(sc.places)
    rules = RuleSet(default_rules())
    t0 = sc.start_ms
    t1 = t0 + int(hours * HOUR_MS)
    n_train = sc.time.train_users
    n_space = min(users, sc.space.users)
    n_dedupe = min(users, sc.dedupe.users)
    keep = max(n_space, n_dedupe)
    n_arms = len(sc.time.fixed_sweep_min) + len(set(sc.time.threshold_quantiles))
    prog = progress or Progress(1, enabled=False)
    prog.total = n_train + users * (n_arms + 2) + n_space + n_dedupe
    prog.set_stage("training (exploration)")
    trained = train_model(sc, places, rules, seed=seed, users=n_train, progress=prog.advance)
    arms = make_arms(sc, trained.thresholds, bounds=bounds)
    exp = None
    if experiment is not None:
        exp = ExperimentRun(sc, *experiment, rules, trained.model, seed=seed)
    ref_key = f"fixed_{sc.time.reference_interval_min:g}m"
    ref_policy = next(a for a in arms if a.key == ref_key).policy
    result = TimeResult(list(arms), {})
    kept: dict[int, tuple[UserWorld, Plan]] = {}
    prog.total = n_train + users * (len(arms) + 2) + n_space + n_dedupe
    if exp is not None:
        prog.total += users * exp.passes

    def time_pass(pass_arms: list[Arm], label: str) -> None:
        for lo in range(0, users, CHUNK):
            prog.set_stage(f"{label}, users {lo}-{min(users, lo + CHUNK)}")
            built = [
                build_world(
                    sc, places, seed=seed, cohort=EVAL, index=i, t0=t0, t1=t1,
                    warmup_ms=WARMUP_MS,
                )
                for i in range(lo, min(users, lo + CHUNK))
            ]  # fmt: skip
            prog.advance(2 * len(built))
            # The chunk's worlds (millions of small objects, no reference cycles) live until
            # the chunk ends: moving everything alive now out of the cyclic collector's
            # generations spares every later collection from rescanning them. Reference
            # counting still frees them when the chunk is dropped.
            gc.freeze()
            worlds = [b.world for b in built]
            carries = run_arms(sc, worlds, pass_arms, rules, trained.model, result,
                               reference_key=ref_key, record_users=keep, progress=prog.advance,
                               warm_policy=ref_policy)  # fmt: skip
            if label == "time arms" and exp is not None:
                prog.set_stage(f"experiment, users {lo}-{min(users, lo + CHUNK)}")
                exp.chunk(worlds, carries, progress=prog.advance)
            if label == "time arms":
                for b in built:
                    if b.world.user.index < keep:
                        kept[b.world.user.index] = (b.world, b.plan)

    time_pass(arms, "time arms")
    boot = Boot(users, sc.report.bootstrap, seed)  # the report's resamples (client_sim.report)
    for _ in range(EXTEND_ROUNDS):
        more = extend_arms(sc, result, trained, ref_key, boot)
        if not more:
            break
        result.arms += more
        prog.total += users * (len(more) + 3)
        time_pass(more, "sweep extension")
    result.arms.sort(key=_arm_order)
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
    return FastResult(sc, users, hours, seed, places, trained, result.arms, ref_key, result,
                      space, sync, screens,
                      experiment=exp.result() if exp is not None else None)  # fmt: skip


_KIND_ORDER = ("fixed", "intent", *HEURISTICS, "bound_prior", "bound_signal", "bound_visit")


def _arm_order(a: Arm) -> tuple[int, float]:
    return _KIND_ORDER.index(a.kind), a.value


def _next(candidates: tuple[float, ...], have: set[float], n: int = 2) -> list[float]:
    return [c for c in candidates if c not in have][:n]


def extend_arms(
    sc: Scenario, result: TimeResult, trained: Trained, ref_key: str, boot: Boot | None = None
) -> list[Arm]:
    """Return the arms to add so the sweeps cover the policy arms and the operating point.

    The rule is fixed in advance: (1) every policy arm's click PV (intent, heuristics, and the
    bound arms when run) must lie inside the fixed sweep's click-PV range; (2) each threshold
    family (intent; the `bound_signal` and `bound_visit` oracles) and each heuristic family
    must have arms on both sides of the reference rule's click PV, the operating point. Both
    must hold on the point totals and on every bootstrap resample of `boot` (the report's), so
    no resample lacks the comparison its CI needs. An empty list: done.
    """
    keys = [a.key for a in result.arms]
    X = np.column_stack([result.matrix(k)[:, 1] for k in keys])  # per-user click PV
    C = X.sum(axis=0)[None, :]
    if boot is not None and len(X):
        C = np.vstack([C, boot.W @ X])  # rows: point, then each resample
    col = {k: C[:, i] for i, k in enumerate(keys)}
    target = col[ref_key]
    by_kind: dict[str, list[tuple[float, np.ndarray]]] = {}
    for a in result.arms:
        by_kind.setdefault(a.kind, []).append((a.value, col[a.key]))
    more: list[Arm] = []
    fixed = by_kind["fixed"]
    lo = np.min([c for _, c in fixed], axis=0)
    hi = np.max([c for _, c in fixed], axis=0)
    others = [c for kind, pts in by_kind.items() if kind != "fixed" for _, c in pts]
    have = {v for v, _ in fixed}
    if any((c < lo).any() for c in others):
        more += [fixed_arm(sc, v) for v in _next(LONGER_MIN, have)]
    if any((c > hi).any() for c in others):
        more += [fixed_arm(sc, v) for v in _next(SHORTER_MIN, have)]

    def brackets(pts: list[tuple[float, np.ndarray]]) -> tuple[bool, bool]:
        cs = np.array([c for _, c in pts])
        return bool((cs >= target).any(axis=0).all()), bool((cs <= target).any(axis=0).all())

    pts = by_kind.get("intent", [])
    if pts:
        above, below = brackets(pts)
        have = {v for v, _ in pts}
        # Lower thresholds refresh more: more click PV.
        qs = INTENT_LOWER_Q if not above else INTENT_HIGHER_Q if not below else ()
        ts = [t for t in dict.fromkeys(trained.quantile(q) for q in qs) if t not in have]
        more += [intent_arm(sc, t) for t in ts[:2]]
    for kind in ("bound_signal", "bound_visit"):  # the oracles read at the operating point
        pts = by_kind.get(kind, [])
        if pts:
            above, below = brackets(pts)
            cands = BOUND_LOWER if not above else BOUND_HIGHER if not below else ()
            ts = _next(cands, {v for v, _ in pts})
            more += [Arm(f"{kind}_{t:g}", kind, t, intent_arm(sc, t).policy) for t in ts]
    for kind in HEURISTICS:
        pts = by_kind.get(kind, [])
        if pts and not brackets(pts)[1]:  # every gap clicks more: try longer gaps
            more += [heuristic_arm(sc, kind, v) for v in _next(GAPS_LONGER_MIN,
                                                                 {v for v, _ in pts})]  # fmt: skip
    return more
