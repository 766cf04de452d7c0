"""A user's activity per UTC day over the last week: the pre-period CUPED reads at exposure.

CUPED adjusts an experiment metric by the same metric before the user was exposed. The logs
hold that history, but reading them at a user's first exposure would put a scan of two
sharded, capped streams in the decide path, and the recent-events window keeps only 24 h.
So the user state keeps, for every user whether in an experiment or not, one small record per
UTC day of the last `DAYS_KEPT` days: refresh decisions and clicks, counted by the decision's
and the event's own timestamp (a late batch lands on the day it happened). That is what the
`refresh_requests`, `clicks` and `converted` covariates need, at ~8 bytes a day.

The pre-period of a user exposed at `ts` is the `lookback_days` whole UTC days before the day
of `ts`; activity earlier on the exposure day itself is left out, so every user's window has
the same length. History starts when a service with this module first sees the user: a user
first seen less than `lookback_days` ago has a shorter (possibly empty) pre-period, which
weakens the adjustment but does not bias it (the covariate is still measured before exposure).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from intent.events import Event
from refreshd.core.expstats import UserTotals

__all__ = ["DAYS_KEPT", "DayActivity", "add_clicks", "add_decision", "pre_period"]

DAY_MS = 86_400_000
# The longest lookback (7 days) plus the current day.
DAYS_KEPT = 8


class DayActivity(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One UTC day (days since the epoch): refresh decisions and clicks."""

    day: int
    refreshes: int = 0
    clicks: int = 0


def _bump(days: Sequence[DayActivity], ts: int, refreshes: int, clicks: int) -> list[DayActivity]:
    day = ts // DAY_MS
    out = list(days)
    newest = max([day, *(d.day for d in out)])
    if day <= newest - DAYS_KEPT:
        return out  # older than anything a lookback reads
    for i, d in enumerate(out):
        if d.day == day:
            out[i] = DayActivity(day, d.refreshes + refreshes, d.clicks + clicks)
            break
    else:
        out.append(DayActivity(day, refreshes, clicks))
        out.sort(key=lambda d: d.day)
    return [d for d in out if d.day > newest - DAYS_KEPT]


def add_decision(days: Sequence[DayActivity], ts: int, refreshed: bool) -> list[DayActivity]:
    """Return the history after a decision at `ts` (only a refresh counts)."""
    return _bump(days, ts, 1, 0) if refreshed else list(days)


def add_clicks(days: Sequence[DayActivity], events: Iterable[Event]) -> list[DayActivity]:
    """Return the history after a batch of events (only clicks count)."""
    out = list(days)
    for e in events:
        if e.type == "click":
            out = _bump(out, e.ts, 0, 1)
    return out


def pre_period(days: Sequence[DayActivity], ts: int, lookback_days: int) -> UserTotals:
    """Return the user's totals over the `lookback_days` UTC days before the day of `ts`."""
    today = ts // DAY_MS
    window = [d for d in days if today - lookback_days <= d.day < today]
    return UserTotals(
        refreshes=sum(d.refreshes for d in window), clicks=sum(d.clicks for d in window)
    )
