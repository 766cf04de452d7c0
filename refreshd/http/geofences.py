"""HTTP shell of space: geofence CRUD and POST /v1/location."""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec
from aiohttp import web

from geo import GeometryError, parse_feature
from refreshd import constants as C
from refreshd.core import messages as S
from refreshd.core.errors import InvalidValue
from refreshd.http.codec import (
    delete_item,
    json_response,
    path_id,
    read_any_json,
    read_json,
    stored_item,
)
from refreshd.http.keys import FENCES, SERVICE, STORE
from refreshd.http.routing import BODY_ERRORS, Route
from refreshd.live.fencebook import KIND

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


async def put_fence(request: web.Request) -> web.Response:
    fid = path_id(request, "geofence")
    body = await read_any_json(request, types=("application/json", "application/geo+json"))
    try:
        fence = parse_feature(fid, body)
    except GeometryError as exc:
        raise InvalidValue(exc.message, field=exc.field) from None
    feature = fence.to_feature()
    feature["id"] = fid
    store = request.app[STORE]
    version = (await store.put_config(KIND, fid, msgspec.json.encode(feature))).version
    await request.app[FENCES].refresh(store)
    return json_response(FenceOut(fid, feature, version))


async def get_fence(request: web.Request) -> web.Response:
    fid = path_id(request, "geofence")
    version, blob = await stored_item(request.app[STORE], KIND, fid, "geofence")
    return json_response(FenceOut(fid, msgspec.json.decode(blob), version))


async def delete_fence(request: web.Request) -> web.Response:
    fid = path_id(request, "geofence")
    await delete_item(request.app[STORE], KIND, fid, "geofence")
    await request.app[FENCES].refresh(request.app[STORE])
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
