"""Point-in-time training rows: decision log rows joined with the events around them.

A row's features see exactly what the service saw when it decided: events with
`ts < decision.ts` that had been *received* by then (`received_ts <= decision.received_ts`),
pruned like the service's recent-events window (the newest 500, none more than 24 h older
than the newest known event). That makes online/offline parity exact even when batches arrive
minutes late.

Label: 1 if the user clicks with `decision.ts <= ts < session_end`, where the session ends at
the earliest of (a) the first `background` event at or after the decision, (b) 30 min after
the last activity (the decision or an event) with nothing in between, (c) 10 min after the
decision. Labels use every logged event, late or not: they are the future, not features. With
the default cap (c) a 30 min gap can never end the session first; (b) matters for longer
horizons and keeps the definition the same as the session notion used elsewhere.

A label is final only once its window has closed: a decision younger than the horizon would be
labelled "no click" merely because the click has not happened yet, biasing a model trained on
fresh logs towards "no". `build_dataset(..., as_of_ms=now)` keeps only the *matured* decisions
(`label_matured`), which is what a service training on its live logs must pass.

Besides the label, each row keeps what `intent.staleness` needs to measure the value of a
refresh: whether the decision refreshed, whether it was randomised (`explore` in the log row),
and `clicks_soon`, the clicks in the first `OUTCOME_WINDOW_S` after the decision (within the
label's session). The window is the same for both outcomes of the decision and ends before the
policy's next timer after a "no" (`NEXT_CHECK_S`): a window "until the next decision" would be
shorter after a "no" (the device asks again sooner) and bias the comparison.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import accumulate
from operator import attrgetter
from typing import Any

import numpy as np

from intent.events import EVENT_TYPES, RECENT_EVENTS_MAX, RECENT_EVENTS_WINDOW_MS, Event
from intent.features import FEATURE_NAMES, FEATURES, FEATURES_VERSION, Context, compute

__all__ = [
    "INTENT_TRIGGERS",
    "LABEL_HORIZON_S",
    "OUTCOME_WINDOW_S",
    "SESSION_GAP_S",
    "Dataset",
    "EventLog",
    "build_dataset",
    "detect_leakage",
    "label_matured",
    "received_at",
]

# Clicks this soon after a decision are its own doing: the policy's next timer after a "no"
# (refreshd.constants.NEXT_CHECK_S, checked equal by a test) comes no sooner.
OUTCOME_WINDOW_S = 60
# A click more than 10 min after the opportunity is a different visit, not this refresh's.
LABEL_HORIZON_S = 600
# The usual analytics session timeout: 30 min without activity starts a new session.
SESSION_GAP_S = 1800
# Pull-to-refresh always refreshes, so it is never an opportunity the intent model decides.
INTENT_TRIGGERS = frozenset({"open", "return", "timer", "scroll"})

Row = Mapping[str, Any]
_ts = attrgetter("ts")


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Feature matrix, labels and row identities, ordered by decision time."""

    X: np.ndarray
    y: np.ndarray
    ts: np.ndarray
    decision_ids: list[str]
    user_ids: list[str]
    refreshed: np.ndarray  # bool: the decision refreshed
    explored: np.ndarray  # bool: the decision was randomised (exploration traffic)
    clicks_soon: np.ndarray  # int: clicks in OUTCOME_WINDOW_S after the decision
    feature_names: tuple[str, ...] = FEATURE_NAMES
    features_version: str = FEATURES_VERSION

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: np.ndarray | Sequence[int]) -> Dataset:
        """Return the rows at `idx`, in that order."""
        idx = np.asarray(idx, dtype=np.int64)
        return dataclasses.replace(
            self,
            X=self.X[idx],
            y=self.y[idx],
            ts=self.ts[idx],
            decision_ids=[self.decision_ids[i] for i in idx],
            user_ids=[self.user_ids[i] for i in idx],
            refreshed=self.refreshed[idx],
            explored=self.explored[idx],
            clicks_soon=self.clicks_soon[idx],
        )

    def split_by_time(self, valid_fraction: float) -> tuple[Dataset, Dataset]:
        """Return (earlier rows, the last `valid_fraction` of rows by ts)."""
        if not 0.0 < valid_fraction < 1.0:
            raise ValueError("valid_fraction must be in (0, 1)")
        order = np.argsort(self.ts, kind="stable")
        cut = len(order) - max(1, round(len(order) * valid_fraction))
        return self.take(order[:cut]), self.take(order[cut:])


@dataclasses.dataclass(slots=True)
class _UserEvents:
    events: list[Event]  # by (ts, received_ts, log order): the service's insertion order
    ts: list[int]
    received: list[int]
    clicks: list[int]  # ts of clicks
    backgrounds: list[int]  # ts of backgrounds
    received_sorted: list[int]
    max_ts_by_received: list[int]  # prefix maximum of ts in received order
    max_lead_ms: int  # the largest ts - received_ts: how far ahead of receipt a ts can be


def _event(row: Row) -> Event:
    return Event(
        type=row["type"],
        ts=int(row["ts"]),
        item_id=row.get("item_id"),
        slot=row.get("slot"),
        value=None if row.get("value") is None else float(row["value"]),
        props=row.get("props"),
    )


def received_at(row: Row) -> int:
    """Return when the service received a log row (its server clock)."""
    # A row without receipt time is taken as received when it happened (no lateness known).
    return int(row.get("received_ts", row["ts"]))


class EventLog:
    """Event rows grouped by user, deduplicated by batch, indexed for point-in-time reads."""

    def __init__(self, rows: Iterable[Row]) -> None:
        rows = list(rows)
        # A batch retried after a lost response is logged once per delivery; the service
        # accepts only the first, so only the earliest delivery counts.
        first: dict[tuple[str, str], int] = {}
        for r in rows:
            if (batch := r.get("batch_id")) is not None:
                key = (r["user_id"], batch)
                first[key] = min(first.get(key, received_at(r)), received_at(r))
        by_user: dict[str, list[tuple[int, int, int, Row]]] = defaultdict(list)
        for i, r in enumerate(rows):
            rec = received_at(r)
            batch = r.get("batch_id")
            if batch is not None and first[(r["user_id"], batch)] != rec:
                continue
            by_user[r["user_id"]].append((int(r["ts"]), rec, i, r))
        self._users = {uid: self._index(items) for uid, items in by_user.items()}

    @staticmethod
    def _index(items: list[tuple[int, int, int, Row]]) -> _UserEvents:
        items.sort(key=lambda x: x[:3])
        events = [_event(r) for *_, r in items]
        ts = [x[0] for x in items]
        received = [x[1] for x in items]
        by_received = sorted(zip(received, ts, strict=True))
        return _UserEvents(
            events=events,
            ts=ts,
            received=received,
            clicks=[e.ts for e in events if e.type == "click"],
            backgrounds=[e.ts for e in events if e.type == "background"],
            received_sorted=[r for r, _ in by_received],
            max_ts_by_received=list(accumulate((t for _, t in by_received), max)),
            max_lead_ms=max(t - r for t, r in zip(ts, received, strict=True)),
        )

    def users(self) -> list[str]:
        """Return the users with at least one event."""
        return list(self._users)

    def visible(
        self,
        user_id: str,
        ts: int,
        received_ts: int,
        *,
        max_events: int = RECENT_EVENTS_MAX,
        window_ms: int = RECENT_EVENTS_WINDOW_MS,
    ) -> list[Event]:
        """Return the events a decision at (ts, received_ts) saw with ts < the decision's."""
        u = self._users.get(user_id)
        if u is None:
            return []
        lo, hi = bisect_left(u.ts, ts - window_ms), bisect_left(u.ts, ts)
        if lo == hi:
            return []
        if max(u.received[lo:hi]) <= received_ts:  # the common case: nothing arrived late
            seen = u.events[lo:hi]
        else:
            pairs = zip(u.events[lo:hi], u.received[lo:hi], strict=True)
            seen = [e for e, r in pairs if r <= received_ts]
        # The service prunes by age against the newest event it knows, which may carry a ts
        # after the decision (device clocks run ahead), and those events use up capacity too.
        k = bisect_right(u.received_sorted, received_ts)
        if k == 0:
            return []
        horizon = u.max_ts_by_received[k - 1] - window_ms
        if horizon > ts - window_ms:
            seen = seen[bisect_left(seen, horizon, key=_ts) :]
        ahead = 0
        j = hi
        while j < len(u.ts) and u.ts[j] <= received_ts + u.max_lead_ms:
            ahead += u.received[j] <= received_ts
            j += 1
        keep = max_events - ahead
        return seen[-keep:] if keep > 0 else []

    def following(self, user_id: str, ts: int, n: int) -> list[Event]:
        """Return the user's first `n` events at or after `ts`, however late they arrived."""
        u = self._users.get(user_id)
        if u is None:
            return []
        i = bisect_left(u.ts, ts)
        return u.events[i : i + n]

    def label(
        self,
        user_id: str,
        ts: int,
        *,
        horizon_s: int = LABEL_HORIZON_S,
        session_gap_s: int = SESSION_GAP_S,
    ) -> int:
        """Return 1 if the user clicked in the session after `ts` (module docstring)."""
        return int(self.clicks(user_id, ts, horizon_s=horizon_s, session_gap_s=session_gap_s) > 0)

    def clicks(
        self,
        user_id: str,
        ts: int,
        *,
        horizon_s: int = LABEL_HORIZON_S,
        session_gap_s: int = SESSION_GAP_S,
    ) -> int:
        """Return the clicks in the label's session after `ts` (module docstring)."""
        u = self._users.get(user_id)
        if u is None:
            return 0
        end = self.session_end(user_id, ts, horizon_s=horizon_s, session_gap_s=session_gap_s)
        return bisect_left(u.clicks, end) - bisect_left(u.clicks, ts) if end > ts else 0

    def session_end(
        self,
        user_id: str,
        ts: int,
        *,
        horizon_s: int = LABEL_HORIZON_S,
        session_gap_s: int = SESSION_GAP_S,
    ) -> int:
        """Return when the label's session after `ts` ends (module docstring)."""
        end = ts + horizon_s * 1000
        u = self._users.get(user_id)
        if u is None:
            return end
        b = bisect_left(u.backgrounds, ts)
        if b < len(u.backgrounds):
            end = min(end, u.backgrounds[b])
        gap_ms, last = session_gap_s * 1000, ts
        j, n = bisect_left(u.ts, ts), len(u.ts)
        while j < n and u.ts[j] < end and u.ts[j] - last <= gap_ms:
            last = u.ts[j]
            j += 1
        return min(end, last + gap_ms)

    def clicks_between(self, since: int, until: int) -> int:
        """Return every user's clicks with `since <= ts < until`."""
        return sum(
            bisect_left(u.clicks, until) - bisect_left(u.clicks, since)
            for u in self._users.values()
        )


def _context(row: Row) -> Context:
    return Context(
        trigger=row["trigger"],
        tz_offset_min=row.get("tz_offset_min"),
        zone=row.get("zone"),
        last_refresh_ts=row.get("last_refresh_ts"),
        launch=row.get("launch"),
        home_dwell_s=row.get("home_dwell_s"),
        scrolls=row.get("scrolls"),
        scroll_depth=row.get("scroll_depth"),
    )


def label_matured(decision: Row, as_of_ms: int, *, horizon_s: int = LABEL_HORIZON_S) -> bool:
    """Return whether a decision's label is final at `as_of_ms` (the server's clock).

    The window runs `horizon_s` from the decision in the device's clock; counted from the
    decision's receipt it ends in the server's clock, the one `as_of_ms` is read from, whatever
    the device's clock offset. A click uploaded after that is missed, as it would be by any
    cut-off.
    """
    return received_at(decision) + horizon_s * 1000 <= as_of_ms


def build_dataset(
    decisions: Iterable[Row],
    events: Iterable[Row] | EventLog,
    *,
    triggers: frozenset[str] | None = INTENT_TRIGGERS,
    horizon_s: int = LABEL_HORIZON_S,
    session_gap_s: int = SESSION_GAP_S,
    as_of_ms: int | None = None,
    cutoff_shift_events: int = 0,
) -> Dataset:
    """Return point-in-time rows for the decisions whose trigger is in `triggers`.

    With `as_of_ms`, only decisions whose label has matured by then (`label_matured`) are
    kept; without it every decision is taken as complete (a finished offline log).
    `cutoff_shift_events` > 0 deliberately breaks point-in-time: the features also see the
    next that many events at or after the decision. It exists so the leakage test can show
    that `detect_leakage` catches exactly that bug; never use it for training.
    """
    log = events if isinstance(events, EventLog) else EventLog(events)
    rows = [
        d
        for d in decisions
        if (triggers is None or d["trigger"] in triggers)
        and (as_of_ms is None or label_matured(d, as_of_ms, horizon_s=horizon_s))
    ]
    rows.sort(key=lambda d: (int(d["ts"]), str(d["decision_id"])))
    X = np.empty((len(rows), len(FEATURES)), dtype=np.float64)
    y = np.empty(len(rows), dtype=np.int64)
    ts = np.empty(len(rows), dtype=np.int64)
    clicks_soon = np.empty(len(rows), dtype=np.int64)
    for i, d in enumerate(rows):
        uid, d_ts = d["user_id"], int(d["ts"])
        seen = log.visible(uid, d_ts, int(d.get("received_ts", d_ts)))
        cutoff = d_ts
        if cutoff_shift_events > 0:
            extra = log.following(uid, d_ts, cutoff_shift_events)
            if extra:
                seen = [*seen, *extra]
                cutoff = extra[-1].ts + 1
        X[i] = compute(seen, cutoff, _context(d))
        y[i] = log.label(uid, d_ts, horizon_s=horizon_s, session_gap_s=session_gap_s)
        clicks_soon[i] = log.clicks(uid, d_ts, horizon_s=min(horizon_s, OUTCOME_WINDOW_S),
                                    session_gap_s=session_gap_s)  # fmt: skip
        ts[i] = d_ts
    return Dataset(
        X=X,
        y=y,
        ts=ts,
        decision_ids=[str(d["decision_id"]) for d in rows],
        user_ids=[str(d["user_id"]) for d in rows],
        refreshed=np.array([bool(d.get("refresh")) for d in rows], dtype=bool),
        explored=np.array([bool(d.get("explore")) for d in rows], dtype=bool),
        clicks_soon=clicks_soon,
    )


# Every event type maps to a different one, so any feature that reads a perturbed event moves.
_ROTATED = dict(zip(EVENT_TYPES, EVENT_TYPES[1:] + EVENT_TYPES[:1], strict=True))


def detect_leakage(
    decisions: Iterable[Row],
    events: Iterable[Row],
    *,
    builder: Callable[[Iterable[Row], Iterable[Row]], Dataset] = build_dataset,
    sample: int = 200,
    seed: int = 0,
) -> list[str]:
    """Return ids of sampled decisions whose features depend on what was unknown at decision.

    For each sampled decision the builder runs again on a log where every event received
    after the decision is deleted and every event at or after the decision's ts is given
    another type (same ts, same receipt, so the service's pruning is unchanged). A
    point-in-time builder yields the same vector; one that peeks at the label does not.
    """
    decisions = list(decisions)
    by_user: dict[str, list[Row]] = defaultdict(list)
    for e in events:
        by_user[e["user_id"]].append(e)
    full = builder(decisions, [e for rows in by_user.values() for e in rows])
    by_id = {str(d["decision_id"]): d for d in decisions}
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(full), size=min(sample, len(full)), replace=False)
    leaked = []
    for i in sorted(picks):
        d = by_id[full.decision_ids[i]]
        d_ts = int(d["ts"])
        d_rec = int(d.get("received_ts", d_ts))
        hidden = [
            {**e, "type": _ROTATED[e["type"]]} if int(e["ts"]) >= d_ts else e
            for e in by_user[d["user_id"]]
            if received_at(e) <= d_rec
        ]
        again = builder([d], hidden)
        if len(again) != 1 or not np.array_equal(again.X[0], full.X[i]):
            leaked.append(full.decision_ids[i])
    return leaked
