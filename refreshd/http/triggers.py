"""HTTP shell of event rules: PUT/GET/DELETE /v1/triggers/{id}, GET /v1/triggers."""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec
from aiohttp import web

from refreshd import constants as C
from refreshd.core.rules import parse_rule, rule_to_json
from refreshd.http.codec import delete_item, json_response, path_id, read_any_json, stored_item
from refreshd.http.keys import RULEBOOK, STORE
from refreshd.http.routing import BODY_ERRORS, Route
from refreshd.live.rulebook import KIND

_ID = re.compile(C.ID_PATTERN)


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


class TriggerOut(msgspec.Struct):
    id: str
    rule: dict[str, Any]
    version: int


class TriggerList(msgspec.Struct):
    version: int
    triggers: list[TriggerOut]


async def put_trigger(request: web.Request) -> web.Response:
    rid = path_id(request, "trigger")
    rule = parse_rule(rid, await read_any_json(request))  # RuleError is a 422 naming the field
    store = request.app[STORE]
    version = (await store.put_config(KIND, rid, msgspec.json.encode(rule_to_json(rule)))).version
    await request.app[RULEBOOK].refresh(store)
    return json_response(TriggerOut(rid, rule_to_json(rule), version))


async def get_trigger(request: web.Request) -> web.Response:
    rid = path_id(request, "trigger")
    version, blob = await stored_item(request.app[STORE], KIND, rid, "trigger")
    return json_response(TriggerOut(rid, msgspec.json.decode(blob), version))


async def delete_trigger(request: web.Request) -> web.Response:
    rid = path_id(request, "trigger")
    await delete_item(request.app[STORE], KIND, rid, "trigger")
    await request.app[RULEBOOK].refresh(request.app[STORE])
    return web.Response(status=204)


async def list_triggers(request: web.Request) -> web.Response:
    version, items = await request.app[STORE].get_config(KIND)
    out = [
        TriggerOut(rid, msgspec.json.decode(blob), version) for rid, blob in sorted(items.items())
    ]
    return json_response(TriggerList(version, out))


ROUTES: tuple[Route, ...] = (
    Route(
        "GET", "/v1/triggers", list_triggers, "List event rules", None, TriggerList, errors=(503,)
    ),
    Route(
        "PUT",
        "/v1/triggers/{id}",
        put_trigger,
        "Create or replace an event rule",
        TriggerRule,
        TriggerOut,
        errors=(*BODY_ERRORS, 503),
        admin=True,
    ),
    Route(
        "GET",
        "/v1/triggers/{id}",
        get_trigger,
        "Read an event rule",
        None,
        TriggerOut,
        errors=(404, 422, 503),
    ),
    Route(
        "DELETE",
        "/v1/triggers/{id}",
        delete_trigger,
        "Delete an event rule",
        None,
        None,
        status=204,
        errors=(404, 422, 503),
        admin=True,
    ),
)
