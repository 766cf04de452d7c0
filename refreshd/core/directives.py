"""Directives: what waits in the store for the device's next contact, until acknowledged.

A push to a phone arrives about one time in ten; the device's next request always does. So
what the service wants the device to do (refresh slots, take a fix now, show or reclaim
service cards) waits here and rides on every response until the device sends its id back in
`ack`. Delivery is at least once; a directive is never lost because one response was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from refreshd import constants as C
from refreshd.core.matcher import Firing
from refreshd.core.messages import Directive, DirectiveType

__all__ = ["Pending", "directive_id", "live_directives", "pending_after", "settle"]

_TTL_MS = C.DIRECTIVE_TTL_S * 1000


def _order(d: Directive) -> tuple[int, str]:
    return d.created_ts, d.id


def live_directives(directives: Sequence[Directive], now_ms: int) -> list[Directive]:
    """Return the unexpired directives, oldest first."""
    return sorted((d for d in directives if d.expires_ts > now_ms), key=_order)


def directive_id(seq: int) -> str:
    """Return the id of a user's `seq`-th flow-made directive: sorts in creation order, and
    the same requests give the same ids in the service and the simulator."""
    return f"d{seq:08x}"


@dataclasses.dataclass(slots=True)
class Pending:
    """A user's directives during one contact: what is live, what this contact adds."""

    live: list[Directive]  # unexpired, oldest first (acknowledged ones still in)
    expired: list[str]  # ids to delete
    acks: list[str]  # what the request acknowledged, in order, once each
    seq: int  # the user's directive counter
    new: list[Directive] = dataclasses.field(default_factory=list)

    @classmethod
    def of(
        cls, stored: Sequence[Directive], acks: Sequence[str] | None, *, seq: int, now_ms: int
    ) -> Pending:
        if not stored and not acks:
            return cls([], [], [], seq)  # the common case: nothing pending, nothing to ack
        live = live_directives(stored, now_ms)
        alive = {d.id for d in live}
        return cls(
            live, [d.id for d in stored if d.id not in alive], list(dict.fromkeys(acks or ())), seq
        )

    def add(
        self,
        type: DirectiveType,
        now_ms: int,
        *,
        source: str,
        payload: dict[str, Any] | None = None,
        slots: list[str] | None = None,
    ) -> None:
        self.new.append(
            Directive(
                id=directive_id(self.seq),
                type=type,
                created_ts=now_ms,
                expires_ts=now_ms + _TTL_MS,
                slots=slots,
                payload=payload,
                source=source,
            )
        )
        self.seq += 1

    def fire(self, fired: Sequence[Firing], now_ms: int) -> None:
        for f in fired:
            self.new.append(
                f.directive(
                    id=directive_id(self.seq), created_ts=now_ms, expires_ts=now_ms + _TTL_MS
                )
            )
            self.seq += 1

    def unacked(self) -> list[Directive]:
        """Return what stays pending before this contact's own: live and not acknowledged."""
        acked = set(self.acks)
        return [d for d in self.live if d.id not in acked] if acked else list(self.live)

    def acknowledged(self) -> int:
        if not self.acks:
            return 0
        known = {d.id for d in self.live}
        return sum(1 for a in self.acks if a in known)


def settle(p: Pending) -> tuple[list[str], list[Directive]]:
    """Return (ids to delete, directives pending after the write, oldest first).

    Deleted: the acknowledged, the expired and the oldest past the per-user cap, so a
    misbehaving rule cannot grow a device's responses without bound.
    """
    if not p.acks and not p.expired and not p.new and len(p.live) <= C.MAX_PENDING_DIRECTIVES:
        return [], list(p.live)
    kept = p.unacked()
    excess = max(0, len(kept) + len(p.new) - C.MAX_PENDING_DIRECTIVES)
    evicted = [d.id for d in kept[:excess]]
    return p.acks + p.expired + evicted, pending_after(kept[excess:], p.new)


def pending_after(kept: Sequence[Directive], new: Sequence[Directive]) -> list[Directive]:
    merged = list(kept) + list(new)
    return merged if not new else sorted(merged, key=_order)
