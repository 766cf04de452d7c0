"""Decisions: the audit record of one decision (`?id=`) or a user's newest (`?user_id=`), read
with the audit API's own functions (`refreshd.http.decisions`)."""

from __future__ import annotations

from aiohttp import web

from refreshd.console.common import Problem, page, problem, when
from refreshd.core.audit import AuditRecord
from refreshd.core.errors import RefreshdError
from refreshd.http.decisions import find_decision, latest_decisions
from refreshd.http.keys import STORE

USER_DECISIONS_SHOWN = 20


async def decisions(request: web.Request) -> web.Response:
    store = request.config_dict[STORE]
    did = request.query.get("id", "").strip()
    uid = request.query.get("user_id", "").strip()
    records: list[AuditRecord] = []
    error: Problem | None = None
    try:
        if did:
            records = [await find_decision(store, did)]
        elif uid:
            records = (await latest_decisions(store, uid, USER_DECISIONS_SHOWN)).decisions
    except RefreshdError as err:
        error = problem(err)
    return page(
        request,
        "decisions.html",
        {"records": records, "id": did, "user_id": uid, "error": error, "when": when},
        status=error.status if error else 200,
    )
