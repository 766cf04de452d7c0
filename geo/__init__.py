"""geo: fences, their H3 index, the coverage circle, the fence tracker and the fix cadence.

Pure: no I/O, no clock. Time (`ts_ms`) always comes in as an argument.
"""

from geo.cadence import DEFAULT_CADENCE, CadenceParams, inside_fix_s, next_fix_s
from geo.coverage import Circle, coverage_circle, distance_m, left_circle
from geo.errors import GeometryError
from geo.fence import Card, Fence, Where, parse_feature
from geo.index import FenceIndex, Hit, brute_force_query
from geo.tracker import (
    DEFAULT_TRACKER,
    FenceTrack,
    Fix,
    State,
    TrackerParams,
    Transition,
    TransitionType,
    hysteresis_m,
    step,
    step_at,
    track,
)
from geo.zones import DEFAULT_GEO, GeoParams, GeoState, LocateResult, Zone, locate

__all__ = [
    "DEFAULT_CADENCE",
    "DEFAULT_GEO",
    "DEFAULT_TRACKER",
    "CadenceParams",
    "Card",
    "Circle",
    "Fence",
    "FenceIndex",
    "FenceTrack",
    "Fix",
    "GeoParams",
    "GeoState",
    "GeometryError",
    "Hit",
    "LocateResult",
    "State",
    "TrackerParams",
    "Transition",
    "TransitionType",
    "Where",
    "Zone",
    "brute_force_query",
    "coverage_circle",
    "distance_m",
    "hysteresis_m",
    "inside_fix_s",
    "left_circle",
    "locate",
    "next_fix_s",
    "parse_feature",
    "step",
    "step_at",
    "track",
]
