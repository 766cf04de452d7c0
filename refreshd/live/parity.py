"""The feature parity report over the store's logs (`refreshd parity`)."""

from __future__ import annotations

import asyncio

import msgspec

from intent.parity import ParityReport, parity
from refreshd.live.training import MAX_LOG_ROWS, read_logs
from refreshd.store.protocol import Store

__all__ = ["parity_report"]


async def parity_report(
    store: Store, *, since_ms: int, until_ms: int, max_rows: int = MAX_LOG_ROWS
) -> ParityReport:
    """Rebuild the window's decisions from the newest `max_rows` log rows and compare.

    The decisions' features reach 24 h back, so the events must too: a log read to its limit
    (or trimmed by REFRESHD_LOG_MAXLEN) can lack events the service saw, and the oldest rows
    of the window then show counts below the logged ones. `log_truncated` says the limit was hit.
    """
    decisions, events = await read_logs(store, max_rows)
    report = await asyncio.to_thread(
        parity, decisions, events, since_ms=since_ms, until_ms=until_ms
    )
    truncated = max_rows in (len(decisions), len(events))
    return msgspec.structs.replace(report, log_truncated=truncated)
