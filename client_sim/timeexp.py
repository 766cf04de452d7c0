"""The time comparison: the intent policy at several thresholds against a fixed-interval sweep.

Every arm lives the *same* evaluation users (same sessions, intents, views and uniforms):
users are built once per chunk and handed to every arm. Fixed arms use the engine's
`fixed` policy (the fallback rule at the arm's interval); intent arms the engine's `intent`
policy with the model trained by `client_sim.training`, all their pending opportunities
scored in one batch per round (`client_sim.driver`). The reference arm (the product's fixed
interval, `time.reference_interval_min`) also records its refreshes and directives for the
space, events and dedupe comparisons.

`drive` runs many devices at once: users are independent, so each device advances until it
needs an intent score; the driver then scores all waiting feature rows with one
`IntentModel.predict` (LightGBM's per-call overhead dominates single rows, as in the service's
micro-batcher) and resumes each device with its score. Batching changes the cost only.

Heuristic arms are the simple rules a model must beat, as policy documents on the same users:
"refresh at open only after a gap of X" (the fallback node with `triggers: ["open"]`) and
"refresh at the first scroll of a visit" (`triggers: ["scroll"]`, the list at least X old; X = 0
is the plain rule), each swept over a few X (`time.heuristic_open_gaps_min`,
`time.heuristic_scroll_gaps_min`) so the report can interpolate it to the operating point.

Per user and arm the result keeps the counts the report needs: refresh requests, click PV,
impression events, exposures (refreshed lists actually seen, `client_sim.device.Seen`),
whether the user clicked (UV) and was exposed, pulls, decides, event-forced refreshes.

With `bounds`, diagnostic arms run too: the same intent rule fed a score computed from the
*ground truth* (`client_sim.device`, "bound_prior" / "bound_visit"). They are not policies
anyone could ship; they measure what a policy would gain from knowing what history can reveal
about a visit (its prior intent probability; the learned model also sees what the visit shows
as it goes, which this arm does not) or the visit's actual intent, with the list's true
staleness either way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator, Sequence
from typing import Protocol, TypeVar

import numpy as np

from client_sim.cloud import Cloud
from client_sim.device import ArmStats, Carry, UserWorld, run_device
from client_sim.mobility import HOUR_MS
from client_sim.scenario import Scenario
from refreshd.core.policy import PolicyDoc, standard_policy
from refreshd.core.rules import RuleSet

__all__ = [
    "BOUND_THRESHOLDS",
    "COUNTS",
    "HEURISTICS",
    "POLICY_KINDS",
    "WARMUP_MS",
    "Arm",
    "Predictor",
    "TimeResult",
    "drive",
    "fixed_arm",
    "heuristic_arm",
    "intent_arm",
    "make_arms",
    "run_arms",
    "warm_up",
]

R = TypeVar("R")
# Evaluation users arrive with a day of history under the production rule (`warm_up`).
WARMUP_MS = 24 * HOUR_MS


class Predictor(Protocol):
    """The edge's copy of the intent model (an `IntentModel`, or a stub in tests)."""

    version: str

    def predict(self, X: np.ndarray) -> np.ndarray: ...


Predict = Callable[[np.ndarray], np.ndarray]


def drive(
    devices: Sequence[Generator[list[float], float, R]],
    predict: Predict | None,
    *,
    on_done: Callable[[int], None] | None = None,
) -> list[R]:
    """Run every device to completion; return their results in input order."""
    results: list[R | None] = [None] * len(devices)
    waiting: list[tuple[int, list[float]]] = []

    def step(i: int, value: float | None) -> None:
        try:
            row = devices[i].send(value)  # type: ignore[arg-type]
        except StopIteration as stop:
            results[i] = stop.value
            if on_done is not None:
                on_done(i)
            return
        waiting.append((i, row))

    for i in range(len(devices)):
        step(i, None)
    while waiting:
        if predict is None:
            raise RuntimeError("a device asked for a score but no model is loaded")
        batch, waiting = waiting, []
        scores = predict(np.asarray([row for _, row in batch], dtype=np.float64))
        for (i, _), s in zip(batch, scores.tolist(), strict=True):
            step(i, float(s))
    done = [r for r in results if r is not None]
    assert len(done) == len(results), "a device did not finish"
    return done


# Per-user columns of TimeResult.counts.
COUNTS = ("refreshes", "clicks", "impressions", "clicked", "exposed", "pulls", "decides",
          "event_refreshes", "event_posts", "exposures")  # fmt: skip

# Heuristic families: kind → (fallback triggers, label).
HEURISTICS = {
    "heuristic_open": (("open",), "open after gap ≥ {v:g} min"),
    "heuristic_scroll": (("scroll",), "first scroll, list ≥ {v:g} min old"),
}
# Arms that are policies someone could ship (compared with the fixed sweep at their click PV).
POLICY_KINDS = ("intent", *HEURISTICS)


# Thresholds of the diagnostic bound arms (their scores live in [0, 1]).
BOUND_THRESHOLDS = {
    "bound_prior": (0.2, 0.3, 0.4),
    "bound_signal": (0.2, 0.3, 0.4),
    "bound_visit": (0.2, 0.4),
}


@dataclasses.dataclass(frozen=True)
class Arm:
    key: str
    kind: str  # "fixed" | "intent" | "heuristic_open" | "heuristic_scroll" | "bound_*"
    value: float  # interval or gap (min), or threshold
    policy: PolicyDoc

    @property
    def label(self) -> str:
        if self.kind == "fixed":
            return f"fixed {self.value:g} min"
        if self.kind in HEURISTICS:
            return HEURISTICS[self.kind][1].format(v=self.value)
        return f"{self.kind.replace('_', ' ')} ≥ {self.value:g}"

    @property
    def score_mode(self) -> str:
        if self.kind == "fixed" or self.kind in HEURISTICS:
            return "none"
        return {"intent": "model"}.get(self.kind, self.kind)


def fixed_arm(sc: Scenario, minutes: float) -> Arm:
    """The core's `fixed` policy refreshing every `minutes` (the fallback rule alone)."""
    return Arm(f"fixed_{minutes:g}m", "fixed", minutes,
               standard_policy(kind="fixed", fallback_interval_s=round(minutes * 60),
                               min_interval_s=sc.time.min_interval_s))  # fmt: skip


def intent_arm(sc: Scenario, threshold: float) -> Arm:
    return Arm(f"intent_{threshold:g}", "intent", threshold,
               standard_policy(kind="intent", threshold=threshold,
                               min_interval_s=sc.time.min_interval_s))  # fmt: skip


def heuristic_arm(sc: Scenario, kind: str, minutes: float) -> Arm:
    triggers = HEURISTICS[kind][0]
    return Arm(f"{kind}_{minutes:g}m", kind, minutes,
               standard_policy(kind="fixed", fallback_interval_s=round(minutes * 60),
                               min_interval_s=sc.time.min_interval_s,
                               fallback_triggers=triggers))  # type: ignore[arg-type]  # fmt: skip


def make_arms(sc: Scenario, thresholds: tuple[float, ...], *, bounds: bool = False) -> list[Arm]:
    """Return the fixed sweep, the intent thresholds, the heuristics, then (with `bounds`) the
    bound arms."""
    m = sc.time.min_interval_s
    arms = [fixed_arm(sc, v) for v in sc.time.fixed_sweep_min]
    arms += [intent_arm(sc, t) for t in thresholds]
    arms += [heuristic_arm(sc, "heuristic_open", v)
             for v in sorted(set(sc.time.heuristic_open_gaps_min))]  # fmt: skip
    arms += [heuristic_arm(sc, "heuristic_scroll", v)
             for v in sorted(set(sc.time.heuristic_scroll_gaps_min))]  # fmt: skip
    if bounds:
        arms += [
            Arm(f"{kind}_{t:g}", kind, t,
                standard_policy(kind="intent", threshold=t, min_interval_s=m))
            for kind, ts in BOUND_THRESHOLDS.items() for t in ts
        ]  # fmt: skip
    return arms


@dataclasses.dataclass
class TimeResult:
    """counts[arm][user, column] plus the reference arm's per-user records."""

    arms: list[Arm]
    counts: dict[str, list[np.ndarray]]
    reference: dict[int, ArmStats] = dataclasses.field(default_factory=dict)

    def matrix(self, key: str) -> np.ndarray:
        return np.vstack(self.counts[key]) if self.counts[key] else np.zeros((0, len(COUNTS)))


def _row(st: ArmStats) -> list[float]:
    return [st.refreshes, st.clicks, st.impressions, float(st.clicks > 0),
            float(st.exposures > 0), st.pulls, st.decides, st.event_refreshes,
            st.event_posts, st.exposures]  # fmt: skip


def run_arms(
    sc: Scenario,
    worlds: list[UserWorld],
    arms: list[Arm],
    rules: RuleSet,
    predictor: Predictor | None,
    result: TimeResult,
    *,
    reference_key: str,
    record_users: int,
    progress: Callable[[int], None] | None = None,
    warm_policy: PolicyDoc | None = None,
) -> list[Carry]:
    """Run every arm on one chunk of users and append their counts to `result`; return where
    the warm-up left each user (a threshold experiment starts from the same place).

    Users first live the warm-up day under the reference (production) policy, so every arm
    starts from the same realistic history (a service keeps 24 h of events) rather than from
    users the service has never seen. `warm_policy` is that policy when the reference arm is
    not among `arms` (a later pass that only adds arms).
    """
    ref = next((a for a in arms if a.key == reference_key), None)
    policy = ref.policy if ref is not None else warm_policy
    assert policy is not None, "the warm-up needs the reference policy"
    carries = warm_up(sc, worlds, policy, rules)
    for arm in arms:
        version = predictor.version if predictor is not None else None
        cloud = Cloud(
            arm.policy,
            rules,
            model_version=(
                None if arm.score_mode == "none" else {"intent": version}.get(arm.kind, arm.kind)
            ),
        )
        is_ref = arm.key == reference_key
        devices = [
            run_device(
                sc, w, cloud,
                score_mode=arm.score_mode,
                record=is_ref and w.user.index < record_users, carry=c,
            )
            for w, c in zip(worlds, carries, strict=True)
        ]  # fmt: skip
        done = (lambda _: progress(1)) if progress is not None else None
        stats = drive(devices, predictor.predict if predictor else None, on_done=done)
        result.counts.setdefault(arm.key, []).append(np.array([_row(s) for s in stats]))
        if is_ref:
            for w, s in zip(worlds, stats, strict=True):
                result.reference[w.user.index] = s
    return carries


def warm_up(
    sc: Scenario, worlds: list[UserWorld], policy: PolicyDoc, rules: RuleSet
) -> list[Carry]:
    """Live the warm-up day of every user under `policy`; return where each one was left."""
    carries: list[Carry] = []
    warm = Cloud(policy, rules, window=True)  # the arms' features read its history
    drive([run_device(sc, w, warm, score_mode="none", warmup=True, carry_out=carries)
           for w in worlds], None)  # fmt: skip
    return carries
