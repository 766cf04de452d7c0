"""HTTP shell of the decision audit: one decision by id, a user's newest decisions."""

from __future__ import annotations

import re

import msgspec
from aiohttp import web

from refreshd import constants as C
from refreshd.core.audit import AuditRecord, DecisionList, audit_record
from refreshd.core.errors import InvalidValue, NotFound
from refreshd.core.flow import DecisionLog
from refreshd.http.codec import json_response
from refreshd.http.keys import STORE
from refreshd.http.routing import Route
from refreshd.store.protocol import Store

_ID = re.compile(C.ID_PATTERN)
_row = msgspec.json.Decoder(DecisionLog)
MAX_LIMIT = 100
DEFAULT_LIMIT = 20


async def find_decision(store: Store, did: str) -> AuditRecord:
    """The audit record of decision `did`, or a 404 naming `decision_id`."""
    blob = await store.get_decision(did)
    if blob is None:
        raise NotFound(
            f"no decision {did!r} in the decision log (unknown, degraded, or aged out)",
            field="decision_id",
        )
    return audit_record(_row.decode(blob))


async def latest_decisions(store: Store, uid: str, limit: int = DEFAULT_LIMIT) -> DecisionList:
    """A user's newest decisions, newest first; a 422 for an invalid user id."""
    if len(uid) > C.ID_MAX_LEN or not _ID.match(uid):
        raise InvalidValue("user_id: 1–128 characters of A–Z a–z 0–9 . _ : @ -", field="user_id")
    rows = await store.user_decisions(uid, limit)
    return DecisionList(uid, [audit_record(_row.decode(b)) for b in rows])


async def get_decision(request: web.Request) -> web.Response:
    did = request.match_info["decision_id"]
    return json_response(await find_decision(request.app[STORE], did))


async def user_decisions(request: web.Request) -> web.Response:
    uid = request.match_info["user_id"]
    raw = request.query.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidValue(f"limit must be an integer in 1..{MAX_LIMIT}", field="limit")
    return json_response(await latest_decisions(request.app[STORE], uid, int(raw)))


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/decisions/{decision_id}",
        get_decision,
        "One decision as made: request, node, score, threshold, model, features, versions",
        None,
        AuditRecord,
        errors=(404, 503),
        admin=True,
    ),
    Route(
        "GET",
        "/v1/users/{user_id}/decisions",
        user_decisions,
        f"A user's newest decisions, newest first (the last {C.USER_DECISIONS_KEPT} are kept)",
        None,
        DecisionList,
        errors=(422, 503),
        admin=True,
        query=(("limit", f"how many, 1..{MAX_LIMIT} (default {DEFAULT_LIMIT})", False),),
    ),
)
