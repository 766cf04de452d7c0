"""HTTP shell of space: geofence CRUD and POST /v1/location."""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec
from aiohttp import web

from geo import GeometryError, parse_feature
from refreshd import constants as C
from refreshd import schemas as S
from refreshd.errors import InvalidValue, MalformedJSON, NotFound, UnsupportedMediaType
from refreshd.fencebook import KIND
from refreshd.http import json_response, read_json
from refreshd.keys import FENCES, SERVICE, STORE
from refreshd.routing import BODY_ERRORS, Route

_ID = re.compile(C.ID_PATTERN)
# GeoJSON bodies with 10 000 vertices fit comfortably; the service's body limit applies too.


class FeatureDoc(msgspec.Struct):
    """Documentation shape of a fence (validation is `geo.parse_feature`)."""

    type: Literal["Feature"]
    geometry: dict[str, Any]
    properties: dict[str, Any] | None = None


class FenceOut(msgspec.Struct):
    id: str
    feature: dict[str, Any]
    version: int


class FenceCollection(msgspec.Struct):
    type: Literal["FeatureCollection"]
    version: int
    features: list[dict[str, Any]]


def _fence_id(request: web.Request) -> str:
    fid = request.match_info["id"]
    if len(fid) > C.ID_MAX_LEN or not _ID.match(fid):
        raise InvalidValue(
            "geofence id must be 1–128 characters of A–Z a–z 0–9 . _ : @ -", field="id"
        )
    return fid


async def put_fence(request: web.Request) -> web.Response:
    fid = _fence_id(request)
    if request.content_type not in ("application/json", "application/geo+json"):
        raise UnsupportedMediaType("expected Content-Type application/json or application/geo+json")
    try:
        body = msgspec.json.decode(await request.read())
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise MalformedJSON("body is not valid JSON") from None
    try:
        fence = parse_feature(fid, body)
    except GeometryError as exc:
        raise InvalidValue(exc.message, field=exc.field) from None
    feature = fence.to_feature()
    feature["id"] = fid
    store = request.app[STORE]
    version = await store.put_config(KIND, fid, msgspec.json.encode(feature))
    await request.app[FENCES].refresh(store)
    return json_response(FenceOut(fid, feature, version))


async def get_fence(request: web.Request) -> web.Response:
    fid = _fence_id(request)
    version, items = await request.app[STORE].get_config(KIND)
    if fid not in items:
        raise NotFound(f"no geofence {fid!r}", field="id")
    return json_response(FenceOut(fid, msgspec.json.decode(items[fid]), version))


async def delete_fence(request: web.Request) -> web.Response:
    fid = _fence_id(request)
    store = request.app[STORE]
    if await store.delete_config(KIND, fid) is None:
        raise NotFound(f"no geofence {fid!r}", field="id")
    await request.app[FENCES].refresh(store)
    return web.Response(status=204)


async def list_fences(request: web.Request) -> web.Response:
    version, items = await request.app[STORE].get_config(KIND)
    features = [msgspec.json.decode(b) for _, b in sorted(items.items())]
    return json_response(FenceCollection("FeatureCollection", version, features))


async def location(request: web.Request) -> web.Response:
    req = await read_json(request, S.LocationRequest)
    return json_response(await request.app[SERVICE].location(req))


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/location",
        location,
        "Apply a location fix: fence transitions, zone, coverage circle, next fix, cards",
        S.LocationRequest,
        S.LocationResponse,
        errors=(*BODY_ERRORS, 409, 429, 503),
    ),
    Route(
        "GET",
        "/v1/geofences",
        list_fences,
        "All geofences as a FeatureCollection",
        None,
        FenceCollection,
        errors=(503,),
    ),
    Route(
        "PUT",
        "/v1/geofences/{id}",
        put_fence,
        "Create or replace a geofence (Polygon, MultiPolygon, or Point + properties.radius_m)",
        FeatureDoc,
        FenceOut,
        errors=(*BODY_ERRORS, 503),
        admin=True,
    ),
    Route(
        "GET",
        "/v1/geofences/{id}",
        get_fence,
        "Read a geofence",
        None,
        FenceOut,
        errors=(404, 422, 503),
    ),
    Route(
        "DELETE",
        "/v1/geofences/{id}",
        delete_fence,
        "Delete a geofence",
        None,
        None,
        status=204,
        errors=(404, 422, 503),
        admin=True,
    ),
)
