"""Per-user state kept in the store: values only, no I/O."""

from __future__ import annotations

import msgspec

from geo.zones import GeoState
from intent.events import Event
from refreshd.core.activity import DayActivity
from refreshd.core.expstats import UserTotals
from refreshd.core.matcher import UserMatchState


class ExpUser(msgspec.Struct, kw_only=True):
    """A user's standing in one experiment: variant, first exposure, totals since then, and
    the pre-period totals CUPED adjusts by (None: exposed before the service kept them)."""

    variant: str
    exposed_ts: int
    totals: UserTotals = msgspec.field(default_factory=UserTotals)
    pre: UserTotals | None = None
    # The experiment's bucket version when the variant was recorded: with sticky bucketing the
    # record decides the variant only while the experiment is still at this version.
    bucket_version: int = 0


class UserState(msgspec.Struct, kw_only=True):
    """What the service remembers about one user between contacts."""

    version: int = 0  # compare-and-set counter; 0 means "never written"
    last_refresh_ts: int | None = None
    last_decision_ts: int | None = None
    last_event_ts: int | None = None
    decisions: int = 0
    refreshes: int = 0
    events: int = 0
    recent: list[Event] = msgspec.field(default_factory=list)  # sorted by ts, bounded
    match: UserMatchState = msgspec.field(default_factory=UserMatchState)  # event-rule runs
    exp: dict[str, ExpUser] = msgspec.field(default_factory=dict)  # experiment id → standing
    geo: GeoState | None = None  # fence tracks, coverage circle, zone, cards on screen
    # Refresh times of the trailing day, kept only while the policy has a frequency cap.
    refresh_times: list[int] = msgspec.field(default_factory=list)
    # Directives this user's flows created: their ids (`d` + 8 hex digits) follow it, so they
    # sort in creation order and the same requests give the same ids wherever they run.
    directive_seq: int = 0
    # Refresh decisions and clicks per UTC day of the last week: CUPED's pre-period.
    daily: list[DayActivity] = msgspec.field(default_factory=list)
