"""The fallback node's optional `triggers`: validation, the default, the heuristic ladders."""

from __future__ import annotations

import pytest

from refreshd.core.errors import InvalidValue
from refreshd.core.ladder import FALLBACK_TRIGGERS
from refreshd.core.policy import (
    DEFAULT_FALLBACK_TRIGGERS,
    DEFAULT_POLICY,
    FallbackNode,
    parse_policy,
    policy_to_json,
    standard_policy,
)
from refreshd.core.state import UserState
from tests.refreshd.test_ladder import T0, decide, refreshed_at, req


def _doc(fallback: dict[str, object]) -> dict[str, object]:
    return {"nodes": [{"type": "pull"}, {"type": "cooldown"}, {"type": "fallback", **fallback}]}


def test_default_triggers_are_the_ladders_and_are_not_spelled_out() -> None:
    assert frozenset(DEFAULT_FALLBACK_TRIGGERS) == FALLBACK_TRIGGERS
    assert FallbackNode().triggers == DEFAULT_FALLBACK_TRIGGERS
    served = policy_to_json(DEFAULT_POLICY)
    assert served["nodes"][-1] == {"type": "fallback", "interval_s": 300}
    doc = parse_policy(_doc({"triggers": ["scroll"], "interval_s": 0}))
    assert policy_to_json(doc)["nodes"][-1]["triggers"] == ["scroll"]
    assert parse_policy(policy_to_json(doc)) == doc


@pytest.mark.parametrize("triggers", [[], ["pull"], ["open", "open"], ["swipe"], "open", [1]])
def test_bad_triggers_are_rejected_by_field(triggers: object) -> None:
    with pytest.raises(InvalidValue) as exc:
        parse_policy(_doc({"triggers": triggers}))
    assert "nodes[2]" in str(exc.value.field)


def test_open_after_gap_refreshes_only_on_open() -> None:
    policy = standard_policy(kind="fixed", min_interval_s=30, fallback_interval_s=600,
                             fallback_triggers=("open",))  # fmt: skip
    old = refreshed_at(T0 - 3_600_000)
    assert decide(old, req("open"), policy=policy).decision.refresh
    for trigger in ("return", "timer", "scroll"):
        assert not decide(old, req(trigger), policy=policy).decision.refresh
    recent = refreshed_at(T0 - 300_000)  # inside the gap
    assert not decide(recent, req("open"), policy=policy).decision.refresh
    assert decide(recent, req("pull"), policy=policy).decision.refresh  # the user asked


def test_first_scroll_refreshes_on_scroll_only() -> None:
    policy = standard_policy(kind="fixed", min_interval_s=30, fallback_interval_s=0,
                             fallback_triggers=("scroll",))  # fmt: skip
    old = refreshed_at(T0 - 120_000)
    assert decide(old, req("scroll"), policy=policy).decision.refresh
    assert decide(UserState(), req("scroll"), policy=policy).decision.refresh
    for trigger in ("open", "return", "timer"):
        out = decide(old, req(trigger), policy=policy).decision
        assert not out.refresh and out.next_check_s >= 30
    assert not decide(refreshed_at(T0 - 10_000), req("scroll"), policy=policy).decision.refresh
