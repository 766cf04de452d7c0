"""Which experiment a decision runs under, and how a user's totals feed its statistics.

Pure: the service passes the experiments, the user's state and the time. At most one
experiment shapes a decision: the first running experiment, in id order, that assigns the
user (namespaces make experiments mutually exclusive when analysts need more than one).
A user is *exposed* at the first decision made under an experiment; from then on their
refresh decisions, clicks and impressions count (events with ts at or after exposure). At that
first decision the user's pre-period totals (`refreshd.core.activity.pre_period`) are fixed as
their CUPED covariate: every later update of the user adds its cross-products with them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import msgspec

from intent.events import Event
from refreshd.core.activity import DayActivity, pre_period
from refreshd.core.experiments import MAX_CUPED_LOOKBACK_DAYS, Assignment, ExperimentConfig, assign
from refreshd.core.expstats import delta_fields
from refreshd.core.state import ExpUser

__all__ = [
    "ExpUser",
    "Increment",
    "choose",
    "record_decision",
    "record_events",
    "record_fix",
    "stats_key",
    "sticky_record",
]


# (stats key, field increments) — applied with HINCRBY in the same commit as the user state.
Increment = tuple[str, dict[str, int]]


def stats_key(exp_id: str, variant: str) -> str:
    return f"exp:{exp_id}:v:{variant}"


def sticky_record(exp_state: Mapping[str, ExpUser], exp_id: str) -> tuple[str, int] | None:
    """Return the user's (variant, bucket version) in the experiment, None if never exposed."""
    eu = exp_state.get(exp_id)
    return None if eu is None else (eu.variant, eu.bucket_version)


def choose(
    experiments: Mapping[str, ExperimentConfig],
    user_id: str,
    exp_state: Mapping[str, ExpUser] | None = None,
) -> tuple[str, ExperimentConfig, Assignment] | None:
    """Return the experiment (id, config, assignment) that shapes this user's decisions.

    `exp_state` is the user's experiment records: a sticky experiment keeps them where their
    record says.
    """
    for exp_id in sorted(experiments):
        cfg = experiments[exp_id]
        if cfg.status != "running":
            continue
        a = assign(exp_id, cfg, user_id, sticky_record(exp_state, exp_id) if exp_state else None)
        if a.in_experiment and a.variant is not None:
            return exp_id, cfg, a
    return None


def record_decision(
    exp_state: Mapping[str, ExpUser],
    exp_id: str,
    variant: str,
    ts: int,
    refreshed: bool,
    *,
    history: Sequence[DayActivity] = (),
    lookback_days: int = MAX_CUPED_LOOKBACK_DAYS,
    bucket_version: int = 0,
) -> tuple[dict[str, ExpUser], list[Increment]]:
    """Return the user's experiment state and stats increments after one decision.

    `history` is the user's daily activity; at first exposure the `lookback_days` before it
    become the user's covariate. The record keeps the experiment's `bucket_version`.
    """
    state = dict(exp_state)
    current = state.get(exp_id)
    if current is None or current.variant != variant:
        # First exposure (or a new bucket version moved the user): count anew.
        pre = pre_period(history, ts, lookback_days)
        current = ExpUser(variant=variant, exposed_ts=ts, pre=pre, bucket_version=bucket_version)
        old = None
    else:
        old = current.totals
        if current.bucket_version != bucket_version:
            current = msgspec.structs.replace(current, bucket_version=bucket_version)
    new = msgspec.structs.replace(
        current.totals, refreshes=current.totals.refreshes + (1 if refreshed else 0)
    )
    state[exp_id] = msgspec.structs.replace(current, totals=new)
    fields = delta_fields(old, new, current.pre)
    return state, [(stats_key(exp_id, variant), fields)] if fields else []


def record_fix(
    exp_state: Mapping[str, ExpUser], ts: int, running: Mapping[str, ExperimentConfig]
) -> tuple[dict[str, ExpUser], list[Increment]]:
    """Return the user's experiment state and stats increments after one location fix (the
    `location_fixes` guardrail counts fixes taken at or after exposure)."""
    state = dict(exp_state)
    incs: list[Increment] = []
    for exp_id, eu in exp_state.items():
        cfg = running.get(exp_id)
        if cfg is None or cfg.status != "running" or ts < eu.exposed_ts:
            continue
        new = msgspec.structs.replace(eu.totals, fixes=eu.totals.fixes + 1)
        state[exp_id] = msgspec.structs.replace(eu, totals=new)
        incs.append((stats_key(exp_id, eu.variant), delta_fields(eu.totals, new, eu.pre)))
    return state, incs


def record_events(
    exp_state: Mapping[str, ExpUser],
    events: Iterable[Event],
    running: Mapping[str, ExperimentConfig],
) -> tuple[dict[str, ExpUser], list[Increment]]:
    """Return the user's experiment state and stats increments after a batch of events."""
    events = list(events)
    state = dict(exp_state)
    incs: list[Increment] = []
    for exp_id, eu in exp_state.items():
        cfg = running.get(exp_id)
        if cfg is None or cfg.status != "running":
            continue  # a stopped experiment's numbers are frozen
        clicks = sum(1 for e in events if e.type == "click" and e.ts >= eu.exposed_ts)
        views = sum(1 for e in events if e.type == "impression" and e.ts >= eu.exposed_ts)
        if not clicks and not views:
            continue
        new = msgspec.structs.replace(
            eu.totals, clicks=eu.totals.clicks + clicks, impressions=eu.totals.impressions + views
        )
        state[exp_id] = msgspec.structs.replace(eu, totals=new)
        fields = delta_fields(eu.totals, new, eu.pre)
        if fields:
            incs.append((stats_key(exp_id, eu.variant), fields))
    return state, incs
