"""The shadow report's maths and the rollback target, on hand-made rows (no I/O)."""

from __future__ import annotations

import pytest

from intent.dataset import LABEL_HORIZON_S
from refreshd import constants as C
from refreshd.core.champion import ModelChange, previous_champion
from refreshd.core.flow import DecisionLog
from refreshd.core.shadow import ShadowRow, is_matured, shadow_row, shadowable, summarize

T0 = 1_800_000_000_000


def decision(**kw: object) -> DecisionLog:
    base: dict[str, object] = dict(
        decision_id="d1", user_id="u1", ts=T0, trigger="open", refresh=True, reason="intent",
        degraded=False, score=0.5, threshold=0.3, model_version="champ", features=[0.0],
        received_ts=T0 + 5,
    )  # fmt: skip
    return DecisionLog(**(base | kw))  # type: ignore[arg-type]


def row(champion: float, challenger: float, threshold: float = 0.5, **kw: object) -> ShadowRow:
    return shadow_row(decision(score=champion, threshold=threshold, **kw), challenger)


@pytest.mark.parametrize(
    ("changes", "shadowed"),
    [
        ({}, True),
        ({"explore": True, "model_version": "explore"}, False),  # a coin flip, not the model
        ({"score": None, "threshold": None, "reason": "cooldown"}, False),  # a rule decided
        ({"features": None}, False),  # pull: nothing to score
        ({"model_version": None}, False),
    ],
)
def test_only_decisions_the_champion_model_made_are_shadowed(
    changes: dict[str, object], shadowed: bool
) -> None:
    assert shadowable(decision(**changes)) is shadowed


def test_both_verdicts_are_taken_at_the_decisions_threshold() -> None:
    r = row(0.31, 0.29, threshold=0.3)
    assert (r.champion_refresh, r.challenger_refresh) == (True, False)
    assert (r.champion, r.threshold, r.received_ts) == ("champ", 0.3, T0 + 5)
    assert row(0.3, 0.3, threshold=0.3).challenger_refresh is True  # >=, as the intent node


def test_a_label_matures_after_its_window_and_the_grace_for_late_batches() -> None:
    r = row(0.5, 0.5)
    closes = T0 + 5 + (LABEL_HORIZON_S + C.SHADOW_LABEL_GRACE_S) * 1000
    assert not is_matured(r, closes - 1) and is_matured(r, closes)


def test_report_counts_agreement_and_refresh_rates_over_every_row() -> None:
    rows = [row(0.9, 0.8), row(0.9, 0.1), row(0.1, 0.2), row(0.2, 0.7)]
    rep = summarize("chal", rows, [None] * 4, active=True)
    assert rep.decisions == 4 and rep.matured == 0 and rep.active
    assert rep.agreement == 0.5  # rows 1 and 3 agree
    assert rep.champion_refresh_rate == 0.5 and rep.challenger_refresh_rate == 0.5
    assert rep.auc_champion is None and rep.auc_challenger is None  # nothing matured
    assert rep.score_psi is not None and rep.score_psi > 0


def test_aucs_use_matured_rows_only() -> None:
    # The challenger ranks the clickers first, the champion last; the unmatured row would
    # spoil the challenger's perfect ranking if it counted.
    rows = [row(0.9, 0.1), row(0.8, 0.2), row(0.2, 0.8), row(0.1, 0.9), row(0.5, 0.0)]
    rep = summarize("chal", rows, [0, 0, 1, 1, None], active=False)
    assert rep.matured == 4
    assert rep.auc_champion == 0.0 and rep.auc_challenger == 1.0


def test_identical_models_agree_everywhere() -> None:
    rows = [row(s, s) for s in (0.1, 0.4, 0.6, 0.9)]
    rep = summarize("chal", rows, [0, 1, 0, 1], active=True)
    assert rep.agreement == 1.0 and rep.score_psi == pytest.approx(0.0)
    assert rep.auc_champion == rep.auc_challenger == 0.75


def test_an_empty_report_is_all_nulls_and_one_class_labels_give_no_auc() -> None:
    empty = summarize("chal", [], [], active=True)
    assert (empty.decisions, empty.agreement, empty.score_psi, empty.auc_champion) == (
        0, None, None, None
    )  # fmt: skip
    one_class = summarize("chal", [row(0.1, 0.2), row(0.3, 0.4)], [1, 1], active=True)
    assert one_class.matured == 2 and one_class.auc_champion is None
    with pytest.raises(ValueError, match="one label"):
        summarize("chal", [row(0.1, 0.2)], [], active=True)


def change(action: str, frm: str | None, to: str) -> ModelChange:
    return ModelChange(action=action, who="t", ts=T0, from_version=frm, to_version=to)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("oldest_first", "target"),
    [
        ([], None),
        ([("publish", None, "a")], None),  # the first model: nothing before it
        ([("publish", None, "a"), ("promote", "a", "b")], "a"),
        ([("publish", None, "a"), ("promote", "a", "b"), ("rollback", "b", "a")], None),
        (
            [
                ("publish", None, "a"),
                ("publish", "a", "b"),
                ("promote", "b", "c"),
                ("rollback", "c", "b"),
            ],
            "a",  # the second rollback goes further back, not back to c
        ),
        ([("promote", "x", "y")], "x"),  # a history trimmed to its newest entries
    ],
)
def test_rollback_returns_to_the_champion_before_the_current_one(
    oldest_first: list[tuple[str, str | None, str]], target: str | None
) -> None:
    newest_first = [change(*c) for c in reversed(oldest_first)]
    assert previous_champion(newest_first) == target
