"""HTTP shell of event rules: PUT/GET/DELETE /v1/triggers/{id}, GET /v1/triggers."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from refreshd.core.rules import Rule, parse_rule, rule_to_json
from refreshd.http.keys import RULEBOOK
from refreshd.http.resources import ConfigResource, ExpectedVersion
from refreshd.http.routing import Route
from refreshd.live.rulebook import KIND


class TriggerStep(msgspec.Struct, omit_defaults=True):
    """Documentation shape of one pattern step (validation is `refreshd.rules.parse_rule`)."""

    type: str
    where: dict[str, Any] | None = None
    times: int | None = None
    one_or_more: bool | None = None
    negated: bool | None = None


class TriggerAction(msgspec.Struct, omit_defaults=True):
    type: Literal["refresh", "fix_now", "show_cards", "reclaim_cards", "update_model"]
    slots: list[str] | None = None
    payload: dict[str, Any] | None = None


class TriggerRule(msgspec.Struct, omit_defaults=True):
    pattern: list[TriggerStep]
    action: TriggerAction
    contiguity: Literal["strict", "relaxed"] = "relaxed"
    within_s: float = 600
    cooldown_s: float = 0
    version: ExpectedVersion = None


class TriggerOut(msgspec.Struct):
    id: str
    rule: dict[str, Any]
    version: int


class TriggerList(msgspec.Struct):
    version: int
    triggers: list[TriggerOut]


RESOURCE: ConfigResource[Rule] = ConfigResource(
    kind=KIND,
    what="trigger",
    path="/v1/triggers",
    parse=parse_rule,  # RuleError is a 422 naming the field
    to_json=rule_to_json,
    item_body=TriggerOut,
    book=RULEBOOK,
    list_summary="List event rules",
    list_doc=TriggerList,
    put_summary="Create or replace an event rule",
    get_summary="Read an event rule",
    delete_summary="Delete an event rule",
    request_doc=TriggerRule,
    item_doc=TriggerOut,
)
ROUTES: tuple[Route, ...] = RESOURCE.routes()
