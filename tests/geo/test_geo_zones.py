"""locate(): the five zones, refreshes, cards and reclaim, cadence, and a serialisable state."""

from __future__ import annotations

import msgspec
import pytest

from geo import Fence, FenceIndex, Fix, GeoState, LocateResult, Zone, locate
from tests.geo.geo_support import MakeCircle, geodesic_m, move

LAT, LNG = 52.5, 13.4
T0 = 1_800_000_000_000
CARDS = ["c1", {"id": "c2", "rank": 1}]


@pytest.fixture
def mall(make_circle: MakeCircle) -> Fence:
    return make_circle(LAT, LNG, 100.0, id="mall", buffer_m=200, dwell_s=60, service_cards=CARDS)


def walk(
    index: FenceIndex, points: list[tuple[float, float]], state: GeoState | None = None
) -> list[LocateResult]:
    out = []
    for k, (lat, lng) in enumerate(points):
        result = locate(state, index, Fix(lat=lat, lng=lng, accuracy_m=10.0, ts_ms=T0 + k * 10_000))
        blob = msgspec.msgpack.encode(result.new_geo_state)
        assert msgspec.msgpack.decode(blob, type=GeoState) == result.new_geo_state
        state = result.new_geo_state
        out.append(result)
    return out


def straight_through(step_m: float = 50.0) -> list[tuple[float, float]]:
    west = [move(LAT, LNG, 270, 1500 - step_m * k) for k in range(int(1500 / step_m))]
    east = [move(LAT, LNG, 90, step_m * k) for k in range(int(1500 / step_m) + 1)]
    return west + east


def test_walk_through_all_zones(mall: Fence) -> None:
    index = FenceIndex([mall])
    results = walk(index, straight_through())
    first = results[0]
    assert (first.zone, first.refresh, first.coverage.radius_m) == (Zone.COVERED, False, 1000.0)
    seen = [(t.type, r.zone) for r in results for t in r.transitions]
    assert seen == [
        ("enter_buffer", Zone.BUFFER), ("enter", Zone.INSIDE),
        ("exit", Zone.EXITED), ("exit_buffer", Zone.LEFT),
    ]  # fmt: skip
    zones = [r.zone for r in results]
    assert {Zone.COVERED, Zone.LEFT} <= set(zones)
    for r in results:
        if r.transitions:
            assert r.refresh
        if r.zone == Zone.COVERED:
            assert not r.refresh and not r.transitions
        if r.zone == Zone.INSIDE:
            assert r.service_cards == CARDS and r.next_fix_s == 10
        if r.zone in (Zone.BUFFER, Zone.EXITED):
            assert r.coverage.radius_m == 0.0 and r.next_fix_s == 10
        if r.zone in (Zone.COVERED, Zone.LEFT):
            gap = geodesic_m(r.coverage.lat, r.coverage.lng, LAT, LNG) - 300.0
            assert r.coverage.radius_m <= max(0.0, gap) + 1e-3
    exited = next(r for r in results if r.zone == Zone.EXITED)
    assert exited.reclaim_cards == CARDS and exited.service_cards == []
    assert sum(bool(r.reclaim_cards) for r in results) == 1


def test_leaving_the_circle_refreshes_and_staying_does_not(mall: Fence) -> None:
    index = FenceIndex([mall])
    far_lat, far_lng = move(LAT, LNG, 0, 5000)
    first = walk(index, [(far_lat, far_lng)])[0]
    assert first.coverage.radius_m == 1000.0
    inside = move(far_lat, far_lng, 0, 900)
    outside = move(far_lat, far_lng, 0, 1100)
    stay, leave = walk(index, [inside, outside], first.new_geo_state)
    assert (stay.zone, stay.refresh, stay.coverage) == (Zone.COVERED, False, first.coverage)
    assert (leave.zone, leave.refresh) == (Zone.LEFT, True)
    assert (leave.coverage.lat, leave.coverage.lng) == outside
    assert leave.next_fix_s == int((geodesic_m(*outside, LAT, LNG) - 300) / 30)


def test_dwell_reported_without_refresh(mall: Fence) -> None:
    index = FenceIndex([mall])
    results = walk(index, [(LAT, LNG)] * 9)  # 80 s at the centre, dwell_s = 60
    kinds = [[t.type for t in r.transitions] for r in results]
    assert kinds[1] == ["enter_buffer", "enter"]
    assert kinds[7] == ["dwell"] and not results[7].refresh
    assert sum(len(k) for k in kinds) == 3


def test_out_of_order_fix_is_ignored(mall: Fence) -> None:
    index = FenceIndex([mall])
    state = walk(index, [(LAT, LNG)] * 2)[-1].new_geo_state
    stale = locate(state, index, Fix(lat=0.0, lng=0.0, accuracy_m=5, ts_ms=T0))
    assert stale.ignored and stale.new_geo_state is state and stale.transitions == []
    assert stale.zone == Zone.INSIDE and stale.service_cards == CARDS


def test_new_fence_shrinks_the_circle_without_refresh(mall: Fence, make_circle: MakeCircle) -> None:
    index = FenceIndex([mall])
    here = move(LAT, LNG, 0, 5000)
    first = walk(index, [here])[0]
    index.upsert(make_circle(*move(*here, 90, 600), 50.0, id="kiosk", buffer_m=50))
    again = locate(
        first.new_geo_state, index, Fix(lat=here[0], lng=here[1], accuracy_m=5, ts_ms=T0 + 1)
    )
    assert again.coverage.radius_m == pytest.approx(500.0, abs=0.01)
    assert not again.refresh and again.zone == Zone.COVERED


def test_deleted_fence_reclaims_the_cards_it_showed(mall: Fence) -> None:
    index = FenceIndex([mall])
    state = walk(index, [(LAT, LNG)] * 2)[-1].new_geo_state
    assert state.cards == CARDS
    index.remove("mall")
    gone = locate(state, index, Fix(lat=LAT, lng=LNG, accuracy_m=5, ts_ms=T0 + 60_000))
    assert [t.type for t in gone.transitions] == ["exit", "exit_buffer"]
    assert (gone.zone, gone.refresh, gone.reclaim_cards) == (Zone.EXITED, True, CARDS)
    assert gone.new_geo_state.fences == {} and gone.new_geo_state.cards == []


def test_zone_encodes_as_a_number() -> None:
    assert msgspec.json.encode({"zone": Zone.EXITED}) == b'{"zone":5}'


def _fix(lat: float, lng: float, t_s: float, speed_mps: float | None = 1.0) -> Fix:
    return Fix(lat=lat, lng=lng, accuracy_m=10.0, ts_ms=T0 + int(t_s * 1000), speed_mps=speed_mps)


def _enter_at_centre(index: FenceIndex) -> LocateResult:
    """Two fixes at the centre (t = 0 s and 10 s): the user is inside, the entry confirmed."""
    first = locate(None, index, _fix(LAT, LNG, 0))
    second = locate(first.new_geo_state, index, _fix(LAT, LNG, 10))
    assert second.zone == Zone.INSIDE
    return second


def test_settled_inside_waits_for_the_walk_to_the_exit_line(make_circle: MakeCircle) -> None:
    park = make_circle(LAT, LNG, 500.0, id="park", buffer_m=100, dwell_s=300)
    index = FenceIndex([park])
    state = _enter_at_centre(index).new_geo_state
    # Before the dwell is due, the dwell bounds the wait: 300 s after entering at t=10.
    before = locate(state, index, _fix(LAT, LNG, 20))
    assert before.next_fix_s == 290
    after = locate(before.new_geo_state, index, _fix(LAT, LNG, 400))
    assert [t.type for t in after.transitions] == ["dwell"]
    # 500 m to the edge + 100 m hysteresis (10 % of the 1 km size) at the 1.5 m/s floor.
    assert after.next_fix_s == pytest.approx(600 / 1.5, abs=1)
    # Without a reported speed, the plausible maximum (30 m/s) applies.
    fast = locate(after.new_geo_state, index, _fix(LAT, LNG, 500, speed_mps=None))
    assert fast.next_fix_s == pytest.approx(600 / 30, abs=1)


def test_another_fences_buffer_bounds_the_wait_inside(make_circle: MakeCircle) -> None:
    park = make_circle(LAT, LNG, 500.0, id="park", buffer_m=100, dwell_s=0)
    kiosk = make_circle(*move(LAT, LNG, 90, 300), 20.0, id="kiosk", buffer_m=30)
    res = _enter_at_centre(FenceIndex([park, kiosk]))
    # The kiosk's buffer starts 250 m east: 250 / 1.5 m/s, sooner than the park's exit line.
    assert res.next_fix_s == pytest.approx(250 / 1.5, abs=2)


def test_exit_pending_uses_the_fast_cadence(make_circle: MakeCircle) -> None:
    park = make_circle(LAT, LNG, 200.0, id="park", buffer_m=300, dwell_s=0)
    index = FenceIndex([park])
    state = _enter_at_centre(index).new_geo_state
    beyond = move(LAT, LNG, 0, 260)  # past the edge + 20 m hysteresis + accuracy
    first = locate(state, index, _fix(*beyond, 20))
    assert first.transitions == [] and first.zone == Zone.INSIDE
    assert first.next_fix_s == 10  # one more agreeing fix confirms the exit: ask soon
    second = locate(first.new_geo_state, index, _fix(*beyond, 30))
    assert [t.type for t in second.transitions] == ["exit"]


def test_walking_out_is_detected_promptly_at_the_adaptive_cadence(
    make_circle: MakeCircle,
) -> None:
    park = make_circle(LAT, LNG, 300.0, id="park", buffer_m=100, dwell_s=0)
    index = FenceIndex([park])
    speed = 1.4
    t, state, fixes, exit_t = 0.0, None, 0, None
    while t < 3600 and exit_t is None:
        here = move(LAT, LNG, 45, max(0.0, (t - 600) * speed))  # stands 10 min, then walks
        res = locate(state, index, _fix(*here, t, speed_mps=speed))
        state, fixes = res.new_geo_state, fixes + 1
        if any(tr.type == "exit" for tr in res.transitions):
            exit_t = t
        t += res.next_fix_s
    # The exit line (edge + 60 m hysteresis + 10 m accuracy) is crossed at 600 + 370 / 1.4 s.
    crossing = 600 + 370 / speed
    assert exit_t is not None and crossing <= exit_t <= crossing + 25
    assert fixes < 40  # a fixed 10 s cadence would take ~86
