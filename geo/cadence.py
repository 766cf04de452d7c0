"""How long a device may wait before its next location fix."""

from __future__ import annotations

import math
from dataclasses import dataclass

from geo import constants as C

__all__ = ["DEFAULT_CADENCE", "CadenceParams", "next_fix_s"]


@dataclass(frozen=True)
class CadenceParams:
    """Cadence tunables (see geo.constants for why the defaults)."""

    min_s: int = C.MIN_FIX_S
    max_s: int = C.MAX_FIX_S
    buffer_s: int = C.BUFFER_FIX_S
    default_speed_mps: float = C.DEFAULT_MAX_SPEED_MPS
    min_speed_mps: float = C.MIN_SPEED_MPS

    @property
    def reach_m(self) -> float:
        """Return the farthest a buffer edge can matter: max_s at the default speed."""
        return self.max_s * self.default_speed_mps


DEFAULT_CADENCE = CadenceParams()


def next_fix_s(
    distance_m: float,
    speed_mps: float | None = None,
    in_buffer: bool = False,
    params: CadenceParams = DEFAULT_CADENCE,
) -> int:
    """Return seconds until the next fix: time to reach the nearest buffer edge, clamped.

    The device cannot reach a buffer sooner than distance / speed, so it is not asked for a fix
    before then. `speed_mps` (reported by the device) replaces the default plausible maximum
    when it is a usable number, but never drops below `min_speed_mps`: standing still now does
    not mean standing still for fifteen minutes. Inside a buffer the fast cadence applies.
    """
    if in_buffer:
        return _clamp(params.buffer_s, params)
    if math.isnan(distance_m) or distance_m <= 0.0:
        return params.min_s
    speed = params.default_speed_mps
    if speed_mps is not None and math.isfinite(speed_mps) and speed_mps >= 0.0:
        speed = max(speed_mps, params.min_speed_mps)
    seconds = distance_m / speed
    if not math.isfinite(seconds):
        return params.max_s
    return _clamp(math.floor(seconds), params)


def _clamp(seconds: int, params: CadenceParams) -> int:
    return max(params.min_s, min(params.max_s, seconds))
