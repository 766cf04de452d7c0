"""Constants and types shared by the intent tests (importable, unlike conftest)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from intent.events import Event

# 2024-01-01 12:00 UTC, a Monday at noon: round numbers make the hour/weekday cases readable.
T0 = 1_704_110_400_000

MakeEvent = Callable[..., Event]
MakeRow = Callable[..., dict[str, Any]]
