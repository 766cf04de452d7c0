"""How long a device may wait before its next location fix."""

from __future__ import annotations

import math
from dataclasses import dataclass

from geo import constants as C

__all__ = ["DEFAULT_CADENCE", "CadenceParams", "inside_fix_s", "next_fix_s"]


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
    return _clamp(_travel_s(distance_m, speed_mps, params), params)


def inside_fix_s(
    distance_m: float,
    dwell_left_s: float | None,
    speed_mps: float | None = None,
    params: CadenceParams = DEFAULT_CADENCE,
) -> int:
    """Return seconds until the next fix for a device settled inside one or more fences.

    Nothing can change until the device has travelled `distance_m` (beyond an edge plus the
    exit hysteresis, or into another fence's buffer) or the dwell time is up, so the wait is
    the travel time, never shorter than the buffer cadence (exits are detected as promptly as
    entries) and never past the moment a dwell becomes due.
    """
    seconds = params.buffer_s
    if not math.isnan(distance_m) and distance_m > 0.0:
        seconds = max(seconds, _travel_s(distance_m, speed_mps, params))
    if dwell_left_s is not None:
        seconds = min(seconds, math.ceil(max(dwell_left_s, 0.0)))
    return _clamp(seconds, params)


def _travel_s(distance_m: float, speed_mps: float | None, params: CadenceParams) -> int:
    """Return whole seconds to cover distance_m at the reported or plausible maximum speed."""
    speed = params.default_speed_mps
    if speed_mps is not None and math.isfinite(speed_mps) and speed_mps >= 0.0:
        speed = max(speed_mps, params.min_speed_mps)
    seconds = distance_m / speed
    if not math.isfinite(seconds):
        return params.max_s
    return math.floor(seconds)


def _clamp(seconds: int, params: CadenceParams) -> int:
    return max(params.min_s, min(params.max_s, seconds))
