"""Helpers shared by tests (importable, unlike conftest)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

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
