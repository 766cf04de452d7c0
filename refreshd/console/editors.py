"""Rules and the policy: configuration documents edited as JSON, validated by the API's own
parsers (`refreshd.http.triggers.RESOURCE`, `refreshd.http.policy.RESOURCE`), errors inline.

A save carries the version the page showed: if another write came in between, the API's 409
is shown instead of silently overwriting it."""

from __future__ import annotations

import collections
from typing import Any

import msgspec
from aiohttp import web

from refreshd.console.common import Problem, form, page, problem, redirect, shown_version
from refreshd.core.errors import RefreshdError
from refreshd.http import policy as policy_api
from refreshd.http import triggers as triggers_api
from refreshd.http.codec import decode_any
from refreshd.http.keys import METRICS, STORE
from refreshd.http.resources import Expected

RULES = "/console/rules"
POLICY = "/console/policy"
RULE_EXAMPLE = {
    "pattern": [{"type": "impression"}, {"type": "scroll", "times": 3}],
    "action": {"type": "refresh"},
    "within_s": 120,
    "cooldown_s": 600,
}


def pretty(doc: Any) -> str:
    return msgspec.json.format(msgspec.json.encode(doc)).decode()


def _fire_counts(request: web.Request) -> dict[str, float]:
    """Firings by rule since this worker started (refreshd_rule_firings)."""
    out: dict[str, float] = collections.defaultdict(float)
    for family in request.config_dict[METRICS].rule_firings.collect():
        for s in family.samples:
            if s.name.endswith("_total"):
                out[s.labels["rule"]] += s.value
    return out


async def rules(
    request: web.Request, error: Problem | None = None, draft: tuple[str, str] | None = None
) -> web.Response:
    version, items = await triggers_api.RESOURCE.items(request.config_dict[STORE])
    editing = request.query.get("edit")
    if draft is None and editing:
        doc = next((i for i in items if i.id == editing), None)
        draft = (editing, pretty(doc.doc) if doc else "")
    edit_version = next((i.version for i in items if draft and i.id == draft[0]), 0)
    return page(
        request,
        "rules.html",
        {
            "items": items,
            "version": version,
            "fires": _fire_counts(request),
            "error": error,
            "draft_id": draft[0] if draft else "",
            "draft": draft[1] if draft else pretty(RULE_EXAMPLE),
            "edit_version": edit_version,
        },
        status=error.status if error else 200,
    )


async def save_rule(request: web.Request) -> web.Response:
    data = await form(request)
    rid, text = data.get("id", ""), data.get("rule", "")
    try:
        rid = triggers_api.RESOURCE.valid_id(rid)
        await triggers_api.RESOURCE.write(
            request.config_dict, rid, decode_any(text), shown_version(data)
        )
    except RefreshdError as err:
        return await rules(request, problem(err), (rid, text))
    raise redirect(f"{RULES}#rule-{rid}")


async def delete_rule(request: web.Request) -> web.Response:
    rid = triggers_api.RESOURCE.valid_id(request.match_info["id"])
    data = await form(request)
    try:
        await triggers_api.RESOURCE.delete(request.config_dict, rid, shown_version(data))
    except RefreshdError as err:
        return await rules(request, problem(err))
    raise redirect(RULES)


async def policy(
    request: web.Request, error: Problem | None = None, draft: str | None = None
) -> web.Response:
    item = await policy_api.RESOURCE.get(request.config_dict, policy_api.RESOURCE.valid_id(""))
    return page(
        request,
        "policy.html",
        {
            "item": item,
            "draft": pretty(item.doc) if draft is None else draft,
            "error": error,
        },
        status=error.status if error else 200,
    )


async def save_policy(request: web.Request) -> web.Response:
    data = await form(request)
    text = data.get("policy", "")
    try:
        expected: Expected = shown_version(data)
        await policy_api.RESOURCE.write(
            request.config_dict, policy_api.RESOURCE.valid_id(""), decode_any(text), expected
        )
    except RefreshdError as err:
        return await policy(request, problem(err), text)
    raise redirect(POLICY)
