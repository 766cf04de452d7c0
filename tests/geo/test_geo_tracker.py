"""The per-(user, fence) state machine: hysteresis, accuracy, debouncing, dwell, ordering."""

from __future__ import annotations

import math
import random

import msgspec
import pytest

from geo import (
    Fence,
    FenceIndex,
    FenceTrack,
    Fix,
    TrackerParams,
    Transition,
    hysteresis_m,
    step,
    step_at,
    track,
)
from tests.geo.geo_support import MakeCircle, MakePolygon, move, square_ring

LAT, LNG = 52.5, 13.4
T0 = 1_800_000_000_000


def noisy(lat: float, lng: float, sigma_m: float, rng: random.Random) -> tuple[float, float]:
    """Return the point displaced by independent Gaussian east/north errors."""
    east, north = rng.gauss(0, sigma_m), rng.gauss(0, sigma_m)
    return move(lat, lng, math.degrees(math.atan2(east, north)), math.hypot(east, north))


def run(
    fence: Fence, points: list[tuple[float, float]], accuracy_m: float, dt_ms: int = 1000
) -> tuple[FenceTrack, list[Transition]]:
    state, out = FenceTrack(), []
    for k, (lat, lng) in enumerate(points):
        state, transitions = step(state, fence, lat, lng, accuracy_m, T0 + k * dt_ms)
        out += transitions
    return state, out


@pytest.fixture(scope="module")
def mall(make_circle: MakeCircle) -> Fence:
    """A 200 m circle (size 400 m, so 40 m hysteresis) with a 200 m buffer, 2 min dwell."""
    return make_circle(LAT, LNG, 200.0, id="mall", buffer_m=200, dwell_s=120)


def test_hysteresis_is_ten_percent_of_size_or_twenty_metres(
    mall: Fence, make_circle: MakeCircle
) -> None:
    assert hysteresis_m(mall) == pytest.approx(40.0)
    assert hysteresis_m(make_circle(LAT, LNG, 30.0)) == 20.0


@pytest.mark.parametrize("offset_m", [25.0, -20.0], ids=["outside", "inside"])
def test_noisy_walk_along_the_edge_never_flips(mall: Fence, offset_m: float) -> None:
    rng = random.Random(3)
    path = [move(LAT, LNG, k * 0.35, 200.0 + offset_m) for k in range(900)]  # ~1.2 m/s
    start: list[tuple[float, float]] = [(LAT, LNG)] * 3 if offset_m < 0 else []
    fixes = start + [noisy(lat, lng, 15.0, rng) for lat, lng in path]
    _, transitions = run(mall, fixes, accuracy_m=15.0)
    expected = ["enter_buffer", "enter"] if offset_m < 0 else ["enter_buffer"]
    assert [t.type for t in transitions if t.type != "dwell"] == expected
    # The walk is a real test: the same debounced tracker without accuracy handling and
    # hysteresis flaps on it.
    naive = TrackerParams(hysteresis_fraction=0.0, hysteresis_min_m=0.0)
    state, flips = FenceTrack(), 0
    for k, (lat, lng) in enumerate(fixes):
        state, out = step(state, mall, lat, lng, 0.0, T0 + 1000 * k, naive)
        flips += sum(t.type in ("enter", "exit") for t in out)
    assert flips >= 4


def test_real_crossing_gives_one_enter_dwell_and_exit(mall: Fence) -> None:
    rng = random.Random(3)
    walk_in = [move(LAT, LNG, 270, 700 - 1.4 * k) for k in range(500)]  # 700 m west -> centre
    stay = [(LAT, LNG)] * 150  # longer than dwell_s = 120
    walk_out = [move(LAT, LNG, 90, 1.4 * k) for k in range(500)]
    fixes = [noisy(lat, lng, 15.0, rng) for lat, lng in walk_in + stay + walk_out]
    state, transitions = run(mall, fixes, accuracy_m=15.0)
    assert [t.type for t in transitions] == [
        "enter_buffer",
        "enter",
        "dwell",
        "exit",
        "exit_buffer",
    ]
    enter, dwell = transitions[1], transitions[2]
    assert dwell.ts_ms - enter.ts_ms == 120_000  # first fix at least dwell_s after enter
    assert state.state == "outside"


def test_out_of_order_and_duplicate_fixes_are_ignored(mall: Fence) -> None:
    state, _ = step(FenceTrack(), mall, LAT, LNG, 5.0, T0)
    for ts in (T0 - 1, T0):
        again, out = step(state, mall, LAT, LNG, 5.0, ts)
        assert again is state and out == []
    later, out = step(state, mall, LAT, LNG, 5.0, T0 + 1)
    assert [t.type for t in out] == ["enter_buffer", "enter"] and later.last_ts_ms == T0 + 1


def test_point_on_the_edge_with_zero_accuracy_is_inside(
    make_polygon: MakePolygon, make_circle: MakeCircle
) -> None:
    once = TrackerParams(n_enter=1)
    ring = square_ring(LAT, LNG, 100.0)
    square = make_polygon([ring], id="sq", buffer_m=0)
    for lng, lat in ring[:-1]:
        _, out = step(FenceTrack(), square, lat, lng, 0.0, T0, once)
        assert [t.type for t in out] == ["enter_buffer", "enter"]
    circle = make_circle(LAT, LNG, 100.0, buffer_m=0)
    lat, lng = move(LAT, LNG, 33.0, 100.0)
    _, out = step(FenceTrack(), circle, lat, lng, 0.0, T0, once)
    assert [t.type for t in out] == ["enter_buffer", "enter"]
    _, out = step(FenceTrack(), circle, lat, lng, 0.5, T0, once)  # now the circle straddles
    assert out == []


# A 100 m circle: size 200 m, hysteresis 20 m; buffer 50 m.
TABLE = [
    ("in buffer twice", "outside", [(40, 5), (40, 5)], [[], ["enter_buffer"]]),
    ("straddles buffer edge", "outside", [(45, 10)] * 3, [[], [], []]),
    ("deep inside twice", "outside", [(-10, 5)] * 2, [[], ["enter_buffer", "enter"]]),
    ("streak broken", "outside", [(-10, 5), (30, 0), (-10, 5)], [[], ["enter_buffer"], []]),
    ("straddles fence edge", "buffer", [(-3, 5)] * 3, [[], [], []]),
    ("inside, within hysteresis", "inside", [(10, 5)] * 4, [[], [], [], []]),
    ("inside, one outlier", "inside", [(300, 5), (-50, 5), (300, 5)], [[], [], []]),
    ("leaves fence", "inside", [(30, 5), (30, 5)], [[], ["exit"]]),
    ("leaves both", "inside", [(80, 5), (80, 5)], [[], ["exit", "exit_buffer"]]),
    ("buffer, beyond edge+h", "buffer", [(75, 0), (75, 0)], [[], ["exit_buffer"]]),
    ("buffer, within h", "buffer", [(69, 0)] * 3, [[], [], []]),
]


@pytest.mark.parametrize(("start", "fixes", "expected"), [t[1:] for t in TABLE],
                         ids=[t[0] for t in TABLE])  # fmt: skip
def test_step_table(
    make_circle: MakeCircle,
    start: str,
    fixes: list[tuple[float, float]],
    expected: list[list[str]],
) -> None:
    fence = make_circle(LAT, LNG, 100.0, buffer_m=50, dwell_s=3600)
    state = FenceTrack(state=start, since_ts_ms=T0)  # type: ignore[arg-type]
    for k, ((distance, accuracy), want) in enumerate(zip(fixes, expected, strict=True)):
        state, out = step_at(state, fence, distance, accuracy, T0 + 1000 * (k + 1))
        assert [t.type for t in out] == want, k


def test_dwell_once_and_immediately_when_zero(make_circle: MakeCircle) -> None:
    fence = make_circle(LAT, LNG, 100.0, dwell_s=0)
    state, out = step_at(FenceTrack(), fence, -50, 0, T0, TrackerParams(n_enter=1))
    assert [t.type for t in out] == ["enter_buffer", "enter", "dwell"]
    state, out = step_at(state, fence, -50, 0, T0 + 1000)
    assert out == []


def test_track_closes_deleted_and_abandoned_fences(make_circle: MakeCircle) -> None:
    kept = make_circle(LAT, LNG, 100.0, id="kept", buffer_m=50)
    index = FenceIndex([kept])
    states = {
        "kept": FenceTrack(state="inside", since_ts_ms=T0),
        "gone": FenceTrack(state="inside", since_ts_ms=T0),
        "gone2": FenceTrack(state="buffer", since_ts_ms=T0),
    }
    far_lat, far_lng = move(LAT, LNG, 0, 5000)  # the index no longer returns "kept" here
    fix = Fix(lat=far_lat, lng=far_lng, accuracy_m=10, ts_ms=T0 + 1000)
    states2, out = track(states, index, fix)
    assert [(t.fence_id, t.type) for t in out] == [
        ("gone", "exit"), ("gone", "exit_buffer"), ("gone2", "exit_buffer")
    ]  # fmt: skip
    assert set(states2) == {"kept"}  # debounced: one fix is not enough to leave
    states3, out = track(states2, index, msgspec.structs.replace(fix, ts_ms=T0 + 2000))
    assert [(t.fence_id, t.type) for t in out] == [("kept", "exit"), ("kept", "exit_buffer")]
    assert states3 == {}


def test_track_starts_streaks_only_where_the_index_says(make_circle: MakeCircle) -> None:
    index = FenceIndex([make_circle(LAT, LNG, 100.0, id="a"), make_circle(10.0, 10.0, 50, id="b")])
    fix = Fix(lat=LAT, lng=LNG, accuracy_m=5, ts_ms=T0)
    states, out = track({}, index, fix)
    assert set(states) == {"a"} and out == []
    states, out = track(states, index, msgspec.structs.replace(fix, ts_ms=T0 + 1))
    assert [(t.fence_id, t.type) for t in out] == [("a", "enter_buffer"), ("a", "enter")]


def test_track_state_round_trips_through_msgpack() -> None:
    state = FenceTrack(state="inside", since_ts_ms=T0, dwelled=True, in_streak=3, last_ts_ms=T0)
    blob = msgspec.msgpack.encode({"a": state})
    assert msgspec.msgpack.decode(blob, type=dict[str, FenceTrack]) == {"a": state}
    assert msgspec.json.encode(Transition("a", "enter", T0)) == (
        b'{"fence_id":"a","type":"enter","ts":%d}' % T0
    )
