"""Point-in-time rows: what a decision may see, labels, parity with the service, leakage."""

from __future__ import annotations

import functools
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from intent_support import T0, MakeRow

from intent.dataset import LABEL_HORIZON_S, Dataset, EventLog, build_dataset, detect_leakage
from intent.events import Event, add_events
from intent.features import FEATURE_NAMES, Context, compute
from synth.eventlog import SyntheticLog, generate

D = T0  # the decision's ts in the hand-made cases
MIN = 60_000
COL = {name: i for i, name in enumerate(FEATURE_NAMES)}


def _row(ds: Dataset, feature: str, i: int = 0) -> float:
    return float(ds.X[i, COL[feature]])


def test_features_see_only_events_before_the_decision(
    make_decision: MakeRow, make_event_row: MakeRow
) -> None:
    # Received long before the decision, so only ts decides: the click at D is not "before".
    events = [
        make_event_row("click", ts, received_ts=D - 10 * MIN) for ts in (D - 2_000, D - 1, D, D + 1)
    ]
    ds = build_dataset([make_decision(D, received_ts=D)], events)
    assert _row(ds, "click_count_5m") == 2.0
    assert _row(ds, "since_last_click_s") == 0.001


def test_decisions_whose_label_window_is_open_are_not_training_rows(
    make_decision: MakeRow, make_event_row: MakeRow
) -> None:
    # The click comes 6 min after the decision. Five minutes in, the label is still open: a
    # row then would say "no click" only because the click has not happened yet.
    decision = make_decision(D, received_ts=D)
    click = make_event_row("click", D + 6 * MIN)
    assert build_dataset([decision], [], as_of_ms=D + 5 * MIN).y.tolist() == []
    assert build_dataset([decision], [], as_of_ms=D + LABEL_HORIZON_S * 1000 - 1).y.tolist() == []
    assert build_dataset([decision], [click], as_of_ms=D + LABEL_HORIZON_S * 1000).y.tolist() == [1]
    # Maturity counts from receipt: a device clock 5 min ahead does not make it mature sooner.
    ahead = make_decision(D + 5 * MIN, received_ts=D)
    assert len(build_dataset([ahead], [], as_of_ms=D + LABEL_HORIZON_S * 1000 - 1)) == 0
    assert len(build_dataset([ahead], [], as_of_ms=D + LABEL_HORIZON_S * 1000)) == 1


def test_events_received_after_the_decision_are_excluded(
    make_decision: MakeRow, make_event_row: MakeRow
) -> None:
    events = [
        make_event_row("click", D - 3 * MIN, received_ts=D - 2 * MIN),
        make_event_row("click", D - 2 * MIN, received_ts=D + 50),  # same instant: known
        make_event_row("click", D - 1 * MIN, received_ts=D + 51),  # one ms too late
        make_event_row("click", D - 1 * MIN, received_ts=D + 20 * MIN),  # a late batch
    ]
    ds = build_dataset([make_decision(D, received_ts=D + 50)], events)
    assert _row(ds, "click_count_5m") == 2.0
    assert _row(ds, "since_last_click_s") == 120.0


def test_the_window_is_capped_like_the_service(
    make_decision: MakeRow, make_event_row: MakeRow
) -> None:
    # 600 clicks in the last 10 min: the service keeps the newest 500.
    events = [
        make_event_row("click", D - 600_000 + i * 1000, received_ts=D - 1) for i in range(600)
    ]
    ds = build_dataset([make_decision(D)], events)
    assert _row(ds, "click_count_24h") == 500.0


def test_a_known_event_from_a_clock_ahead_prunes_by_age_like_the_service(
    make_decision: MakeRow, make_event_row: MakeRow
) -> None:
    events = [
        make_event_row("open", D - 23 * 3_600_000, received_ts=D - 23 * 3_600_000),
        make_event_row("open", D - 21 * 3_600_000, received_ts=D - 21 * 3_600_000),
        # The device clock runs 2 h ahead: the service's window now starts at D - 22 h.
        make_event_row("search", D + 2 * 3_600_000, received_ts=D - MIN),
    ]
    ds = build_dataset([make_decision(D)], events)
    assert _row(ds, "open_count_24h") == 1.0


def test_a_retried_batch_counts_once(make_decision: MakeRow, make_event_row: MakeRow) -> None:
    first = make_event_row("click", D - MIN, batch_id="b1", received_ts=D - 50_000)
    retry = {**first, "received_ts": D - 40_000}
    ds = build_dataset([make_decision(D)], [first, retry])
    assert _row(ds, "click_count_5m") == 1.0


def test_context_comes_from_the_decision_row(make_decision: MakeRow) -> None:
    d = make_decision(D, trigger="timer", tz_offset_min=120, zone=4, last_refresh_ts=D - 90_000)
    ds = build_dataset([d], [])
    assert [_row(ds, f) for f in ("trigger", "hour", "zone", "since_refresh_s")] == [
        2.0, 14.0, 4.0, 90.0,
    ]  # fmt: skip


def test_pull_decisions_are_not_intent_opportunities(make_decision: MakeRow) -> None:
    rows = [make_decision(D, trigger="pull"), make_decision(D + 1, trigger="open")]
    assert len(build_dataset(rows, [])) == 1
    assert len(build_dataset(rows, [], triggers=None)) == 2


@pytest.mark.parametrize(
    ("events", "label"),
    [
        ([("click", 5_000)], 1),
        ([("click", 0)], 1),  # at the decision's ts: after it, in the session
        ([("click", -1)], 0),  # before the decision: a feature, never a label
        ([("background", 10_000), ("click", 20_000)], 0),  # the app went away first
        ([("click", 10_000), ("background", 10_000)], 0),  # ends at the background's ts
        ([("background", -5_000), ("click", 20_000)], 1),  # an earlier background is irrelevant
        ([("click", 599_999)], 1),
        ([("click", 600_000)], 0),  # the 10 min cap
        ([], 0),
    ],
)
def test_label_definition(
    make_decision: MakeRow, make_event_row: MakeRow, events: list[tuple[str, int]], label: int
) -> None:
    rows = [make_event_row(t, D + dt) for t, dt in events]
    assert build_dataset([make_decision(D)], rows).y.tolist() == [label]


@pytest.mark.parametrize(
    ("events", "label"),
    [
        ([("scroll", 20 * MIN), ("click", 45 * MIN)], 1),  # gaps of 20 and 25 min
        ([("scroll", 20 * MIN), ("click", 55 * MIN)], 0),  # a 35 min gap ends the session
        ([("click", 31 * MIN)], 0),  # nothing for 30 min after the decision
    ],
)
def test_a_30_minute_gap_ends_the_session(
    make_decision: MakeRow, make_event_row: MakeRow, events: list[tuple[str, int]], label: int
) -> None:
    rows = [make_event_row(t, D + dt) for t, dt in events]
    # With the default 10 min cap a 30 min gap cannot bind first; a 2 h horizon shows the rule.
    ds = build_dataset([make_decision(D)], rows, horizon_s=7200)
    assert ds.y.tolist() == [label]


@pytest.mark.parametrize(
    ("clicks", "soon"),
    [
        ([1_000, 30_000, 59_999], 3),
        ([60_000, 90_000], 0),  # the window ends where the next timer after a "no" would ask
        ([-1_000, 5_000], 1),  # a click before the decision is not its doing
    ],
)
def test_clicks_soon_counts_the_decisions_own_window(
    make_decision: MakeRow, make_event_row: MakeRow, clicks: list[int], soon: int
) -> None:
    rows = [make_event_row("click", D + dt, item_id=f"i{dt}") for dt in clicks]
    ds = build_dataset([make_decision(D, refresh=True, explore=True, reason="intent")], rows)
    assert ds.clicks_soon.tolist() == [soon]
    assert ds.refreshed.tolist() == [True] and ds.explored.tolist() == [True]


def test_rows_without_explore_are_not_randomised(make_decision: MakeRow) -> None:
    ds = build_dataset([make_decision(D), make_decision(D + MIN, refresh=True)], [])
    assert ds.explored.tolist() == [False, False] and ds.refreshed.tolist() == [False, True]
    assert ds.take([1]).refreshed.tolist() == [True]


def test_a_late_click_still_labels(make_decision: MakeRow, make_event_row: MakeRow) -> None:
    late = make_event_row("click", D + 30_000, received_ts=D + 3_600_000)
    assert build_dataset([make_decision(D)], [late]).y.tolist() == [1]


def test_rows_are_in_time_order_and_split_by_time(synthetic_dataset: Dataset) -> None:
    ds = synthetic_dataset
    assert np.all(np.diff(ds.ts) >= 0)
    assert ds.X.shape == (len(ds), len(FEATURE_NAMES)) and ds.X.dtype == np.float64
    assert len(set(ds.decision_ids)) == len(ds)
    early, late = ds.split_by_time(0.2)
    assert len(early) + len(late) == len(ds)
    assert abs(len(late) - 0.2 * len(ds)) <= 1
    assert early.ts.max() <= late.ts.min()


# --- parity with the service --------------------------------------------------------------------


def _service_replay(decisions: list[dict[str, Any]], events: list[dict[str, Any]]) -> Dataset:
    """Feed batches to refreshd.state.add_events in receipt order; compute at each decision."""
    timeline: dict[str, list[tuple[int, int, int, Any]]] = defaultdict(list)
    batches: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        batches[(e["user_id"], e["batch_id"])].append(e)
    for n, ((uid, _), rows) in enumerate(batches.items()):
        timeline[uid].append((rows[0]["received_ts"], 0, n, rows))
    for n, d in enumerate(decisions):
        timeline[d["user_id"]].append((d["received_ts"], 1, n, d))
    vectors: dict[str, list[float]] = {}
    for items in timeline.values():
        recent: list[Event] = []
        for _, kind, _, item in sorted(items, key=lambda x: x[:3]):
            if kind == 0:
                new = [Event(type=r["type"], ts=r["ts"], value=r.get("value")) for r in item]
                recent = add_events(recent, new)
            else:
                ctx = Context(
                    item["trigger"], item.get("tz_offset_min"), item.get("zone"),
                    item.get("last_refresh_ts"),
                )  # fmt: skip
                vectors[item["decision_id"]] = compute(recent, item["ts"], ctx)
    return vectors  # type: ignore[return-value]


def _adversarial_log() -> SyntheticLog:
    """A small generated log plus a heavy user, clocks running ahead and very late batches."""
    log = generate(users=30, days=2, seed=5)
    events = [dict(e) for e in log.events]
    rng = np.random.default_rng(0)
    for e in events[::37]:  # a device clock 30 min ahead: ts after its own receipt
        e["ts"] = e["received_ts"] + 30 * MIN
    late = {e["batch_id"] for e in events[::53]}  # whole batches arrive 6 h late
    for e in events:
        if e["batch_id"] in late:
            e["received_ts"] += 6 * 3_600_000
    heavy = log.decisions[-1]["user_id"]
    base = log.decisions[-1]["ts"] - 3_600_000
    for i in range(900):
        ts = base + i * 3_000
        delay = int(rng.integers(100, 200_000))
        events.append({"user_id": heavy, "batch_id": f"h{i}", "type": "impression" if i % 3 else
                       "click", "ts": ts, "received_ts": ts + delay})  # fmt: skip
    return SyntheticLog(log.decisions, events)


def test_offline_rows_equal_the_service_vectors_value_by_value() -> None:
    log = _adversarial_log()
    ds = build_dataset(log.decisions, log.events, triggers=None)
    online = _service_replay(log.decisions, log.events)
    assert len(ds) == len(log.decisions)
    mismatched = [did for i, did in enumerate(ds.decision_ids) if ds.X[i].tolist() != online[did]]
    assert mismatched == []


# --- leakage --------------------------------------------------------------------------------------


def test_leakage_check_passes_for_the_point_in_time_builder(synthetic_log: SyntheticLog) -> None:
    assert detect_leakage(synthetic_log.decisions, synthetic_log.events, sample=150) == []


def test_moving_the_cutoff_one_event_later_leaks_and_is_caught(
    synthetic_log: SyntheticLog, make_decision: MakeRow, make_event_row: MakeRow
) -> None:
    shifted = functools.partial(build_dataset, cutoff_shift_events=1)
    leaked = detect_leakage(
        synthetic_log.decisions, synthetic_log.events, sample=150, builder=shifted
    )
    assert len(leaked) == 150  # every sampled decision has a later event to peek at

    # The leak in one row: the decision's own label click becomes a feature.
    d, click = make_decision(D), make_event_row("click", D + 5_000)
    honest, leaky = build_dataset([d], [click]), shifted([d], [click])
    assert honest.y.tolist() == leaky.y.tolist() == [1]
    assert (_row(honest, "click_count_5m"), _row(leaky, "click_count_5m")) == (0.0, 1.0)
    assert detect_leakage([d], [click], builder=shifted) == [d["decision_id"]]
    assert detect_leakage([d], [click]) == []


def test_event_log_reads_are_point_in_time(make_event_row: MakeRow) -> None:
    log = EventLog([make_event_row("open", D - 5_000), make_event_row("click", D + 5_000)])
    assert [e.type for e in log.visible("u1", D, D + 10_000)] == ["open"]
    assert log.visible("u1", D, D - 4_500) == []  # nothing received yet
    assert log.visible("nobody", D, D) == []
    assert log.label("u1", D) == 1 and log.label("u1", D + 5_001) == 0
