"""One status line for long runs: units of work across stages, redrawn at most 5 times a second."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]

# Redrawing more often than this costs more than it tells.
REDRAW_S = 0.2


class Progress:
    """Count units of work across stages and redraw one status line."""

    def __init__(self, total: int, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total = max(1, total)
        self.done = 0
        self.stage = ""
        self.enabled = enabled
        self.out = stream or sys.stderr
        self.t0 = time.monotonic()
        self._last = 0.0
        self.timings: dict[str, float] = {}
        self._stage_t0 = self.t0

    def set_stage(self, stage: str) -> None:
        now = time.monotonic()
        if self.stage:
            key = self.stage.split(",")[0]
            self.timings[key] = self.timings.get(key, 0.0) + now - self._stage_t0
        self._stage_t0 = now
        self.stage = stage
        self._draw(force=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._draw()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < REDRAW_S:
            return
        self._last = now
        frac = min(1.0, self.done / self.total)
        bar = "#" * int(frac * 30)
        self.out.write(f"\r[{bar:<30}] {frac:6.1%} {self.stage:<28} {now - self.t0:6.1f}s")
        self.out.flush()

    def close(self) -> None:
        self.set_stage("")
        if self.enabled:
            self.done = self.total
            self._draw(force=True)
            self.out.write("\n")
            self.out.flush()
