"""HTTP shell of dedup: the synthetic per-slot recommender and POST /v1/dedupe."""

from __future__ import annotations

import asyncio
import re

import msgspec
from aiohttp import web

from dedupe import (
    Allocation,
    DedupeRequest,
    Item,
    RuleConfigError,
    SlotItems,
    allocate_request,
    allocate_slots,
    default_rules,
)
from refreshd import constants as C
from refreshd.core.errors import InvalidValue
from refreshd.http.codec import json_response, read_json
from refreshd.http.keys import CATALOGUE, CLOCK
from refreshd.http.routing import BODY_ERRORS, Route
from synth.catalogue import recommend

# Optimal allocation may run scipy's MILP for up to its time budget: off the event loop.
OPTIMAL_IN_THREAD = True
MAX_SLOTS_PER_REQUEST = 8
_ID = re.compile(C.ID_PATTERN)


class Recommendations(msgspec.Struct):
    slots: list[SlotItems]
    dedupe: str
    dropped: list[dict[str, str]]


def _query_float(request: web.Request, name: str, lo: float, hi: float) -> float | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidValue(f"{name} must be a number", field=name) from None
    if not lo <= value <= hi:
        raise InvalidValue(f"{name}={value} is outside [{lo}, {hi}]", field=name)
    return value


async def recommendations(request: web.Request) -> web.Response:
    q = request.query
    user_id = q.get("user_id", "")
    if not user_id or len(user_id) > C.ID_MAX_LEN or not _ID.match(user_id):
        raise InvalidValue(
            "user_id is required: 1–128 characters of A–Z a–z 0–9 . _ : @ -", field="user_id"
        )
    slots = [s for s in q.get("slots", "feed").split(",") if s]
    if (
        not slots
        or len(slots) > MAX_SLOTS_PER_REQUEST
        or any(not _ID.match(s) or len(s) > 64 for s in slots)
    ):
        raise InvalidValue(
            f"slots must be 1–{MAX_SLOTS_PER_REQUEST} comma-separated slot names", field="slots"
        )
    lat = _query_float(request, "lat", -90, 90)
    lng = _query_float(request, "lng", -180, 180)
    if (lat is None) != (lng is None):
        raise InvalidValue(
            "lat and lng must be given together", field="lat" if lat is None else "lng"
        )
    n = _query_float(request, "n", 1, 50)
    mode = q.get("dedupe", "none")
    if mode not in ("none", "cloud"):
        raise InvalidValue("dedupe must be 'none' or 'cloud'", field="dedupe")
    now_ms = request.app[CLOCK]()
    catalogue = request.app[CATALOGUE]
    per_slot = [
        SlotItems(
            slot,
            recommend(
                catalogue, slot, user_id=user_id, n=int(n or 10), now_ms=now_ms, lat=lat, lng=lng
            ),
        )
        for slot in slots
    ]
    if mode == "none":
        return json_response(Recommendations(per_slot, "none", []))
    # The single-request cloud alternative: one call sees every slot and dedupes greedily.
    alloc = allocate_slots(per_slot, default_rules(), (), now_ms=now_ms, strategy="greedy")
    dropped = [{"slot": d.slot, "item_id": d.item_id, "rule": d.rule} for d in alloc.dropped]
    return json_response(Recommendations(alloc.slots, "cloud", dropped))


async def dedupe(request: web.Request) -> web.Response:
    req = await read_json(request, DedupeRequest)
    now_ms = request.app[CLOCK]()
    try:
        if req.strategy == "optimal" and OPTIMAL_IN_THREAD:
            alloc = await asyncio.to_thread(allocate_request, req, now_ms=now_ms)
        else:
            alloc = allocate_request(req, now_ms=now_ms)
    except RuleConfigError as exc:
        raise InvalidValue(str(exc), field=exc.field) from None
    return json_response(alloc)


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/recommendations",
        recommendations,
        "Per-slot items from the synthetic recommender (independent slots, so duplicates happen)",
        None,
        Recommendations,
        errors=(422,),
        query=(
            ("user_id", "user id", True),
            ("slots", "comma-separated slots (default feed)", False),
            ("lat", "latitude", False),
            ("lng", "longitude", False),
            ("n", "items per slot, 1–50", False),
            ("dedupe", "'cloud' dedupes all slots in this one request", False),
        ),
    ),
    Route(
        "POST",
        "/v1/dedupe",
        dedupe,
        "Dedupe slots in render order (greedy or optimal)",
        DedupeRequest,
        Allocation,
        errors=BODY_ERRORS,
    ),
)

__all__ = ["ROUTES", "Item"]
