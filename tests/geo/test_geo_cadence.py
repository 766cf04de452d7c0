"""next_fix_s: time to reach the nearest buffer at a plausible speed, clamped to [5, 900] s."""

from __future__ import annotations

import math

import pytest

from geo import CadenceParams, inside_fix_s, next_fix_s


@pytest.mark.parametrize(
    ("distance_m", "speed_mps", "in_buffer", "expected"),
    [
        (3000.0, None, False, 100),  # 3 km at the default 30 m/s
        (3000.0, 10.0, False, 300),  # the device's own speed replaces the default
        (3000.0, 0.0, False, 900),  # standing still still means "may start walking": 2000 s
        (300.0, 0.2, False, 200),  # speed floored at 1.5 m/s
        (100.0, None, False, 5),  # 3.3 s -> clamped up to 5 s
        (0.0, None, False, 5),  # at a buffer edge
        (1e9, None, False, 900),  # clamped down to 15 min
        (math.inf, None, False, 900),
        (math.nan, None, False, 5),  # unknown distance: be safe, ask soon
        (3000.0, math.nan, False, 100),  # unusable speed falls back to the default
        (3000.0, -4.0, False, 100),
        (5000.0, 1.0, True, 10),  # inside a buffer: the fast cadence, whatever the distance
        (3299.0, None, False, 109),  # floored: never later than the device could arrive
    ],
)
def test_cadence_table(
    distance_m: float, speed_mps: float | None, in_buffer: bool, expected: int
) -> None:
    assert next_fix_s(distance_m, speed_mps, in_buffer) == expected


def test_params_change_the_clamps() -> None:
    params = CadenceParams(min_s=1, max_s=60, buffer_s=2, default_speed_mps=10.0)
    assert next_fix_s(5.0, None, False, params) == 1
    assert next_fix_s(10_000.0, None, False, params) == 60
    assert next_fix_s(10_000.0, None, True, params) == 2
    assert params.reach_m == 600.0


@pytest.mark.parametrize(
    ("distance_m", "dwell_left_s", "speed_mps", "expected"),
    [
        (550.0, None, 1.0, 366),  # walk to the exit line at the 1.5 m/s floor
        (550.0, None, None, 18),  # at the default 30 m/s
        (550.0, 40.5, 1.0, 41),  # a dwell due sooner comes first (rounded up: not early)
        (550.0, 2.0, 1.0, 5),  # ... but never below the minimum
        (100.0, None, None, 10),  # never faster than in a buffer
        (0.0, None, 1.0, 10),  # already at the exit line: as in a buffer
        (math.nan, None, 1.0, 10),
        (1e9, None, 1.0, 900),  # clamped to 15 min
    ],
)
def test_inside_cadence_table(
    distance_m: float, dwell_left_s: float | None, speed_mps: float | None, expected: int
) -> None:
    assert inside_fix_s(distance_m, dwell_left_s, speed_mps) == expected
