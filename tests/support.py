"""Helpers shared by tests (importable, unlike conftest)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class FakeClock:
    """A settable clock for deterministic tests of time rules."""

    def __init__(self, start_ms: int | None = None) -> None:
        self.ms = start_ms if start_ms is not None else now_ms()

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


MakeClient = Callable[..., Awaitable[TestClient]]


def raw_log(raw: Any, stream: str) -> list[dict[str, Any]]:
    """Return every row of a sharded log stream (all shards, in entry-id order) from Redis."""
    import json

    from refreshd.store.protocol import LOG_DECISIONS, all_tags, decision_id, shard_key

    rows = []
    for tag in all_tags():
        for entry_id, fields in raw.xrange(shard_key(stream, tag)):
            ms, _, seq = entry_id.decode().partition("-")
            row = json.loads(fields[b"d"])
            if stream == LOG_DECISIONS:  # stored without its id: the id is the row's place
                row = {"decision_id": decision_id(tag, entry_id.decode())} | row
            rows.append(((int(ms), int(seq)), row))
    return [r for _, r in sorted(rows, key=lambda x: x[0])]


def raw_xadd(raw: Any, stream: str, row: dict[str, Any]) -> None:
    """Append a row to the shard of its user's stream, as the service would."""
    import msgspec

    from refreshd.store.protocol import shard_key, shard_tag

    raw.xadd(shard_key(stream, shard_tag(row["user_id"])), {"d": msgspec.json.encode(row)})


def wait_ready(base: str, proc: Any, timeout_s: float, why: Callable[[], str] = lambda: "") -> None:
    """Wait until a `refreshd serve` subprocess answers 200 on /readyz; fail if it exits."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        assert proc.poll() is None, f"the service exited: {why()}"
        assert time.monotonic() < deadline, "service did not become ready"
        time.sleep(0.1)
