"""HTTP shell of space: geofence CRUD and POST /v1/location."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from aiohttp import web

from geo import GeometryError, parse_feature
from refreshd.core import messages as S
from refreshd.core.errors import InvalidValue
from refreshd.http.codec import json_response, read_json
from refreshd.http.guardrails import DEVICE_USER
from refreshd.http.keys import FENCES, SERVICE
from refreshd.http.resources import ConfigResource, ExpectedVersion
from refreshd.http.routing import BODY_ERRORS, Route
from refreshd.live.fencebook import KIND

# GeoJSON bodies with 10 000 vertices fit comfortably; the service's body limit applies too.


class FeatureDoc(msgspec.Struct):
    """Documentation shape of a fence (validation is `geo.parse_feature`)."""

    type: Literal["Feature"]
    geometry: dict[str, Any]
    properties: dict[str, Any] | None = None
    version: ExpectedVersion = None


class FenceOut(msgspec.Struct):
    id: str
    feature: dict[str, Any]
    version: int


class FenceCollection(msgspec.Struct):
    type: Literal["FeatureCollection"]
    version: int
    features: list[dict[str, Any]]


def _feature(fid: str, body: Any) -> dict[str, Any]:
    """Validate a fence body; return the normalised Feature that is stored and served."""
    try:
        fence = parse_feature(fid, body)
    except GeometryError as exc:
        raise InvalidValue(exc.message, field=exc.field) from None
    feature = fence.to_feature()
    feature["id"] = fid
    return feature


RESOURCE: ConfigResource[dict[str, Any]] = ConfigResource(
    kind=KIND,
    what="geofence",
    path="/v1/geofences",
    parse=_feature,
    to_json=lambda feature: feature,
    item_body=FenceOut,
    book=FENCES,
    list_summary="All geofences as a FeatureCollection",
    list_body=lambda version, items: FenceCollection(
        "FeatureCollection", version, [i.doc for i in items]
    ),
    list_doc=FenceCollection,
    put_summary=(
        "Create or replace a geofence (Polygon, MultiPolygon, or Point + properties.radius_m)"
    ),
    get_summary="Read a geofence",
    delete_summary="Delete a geofence",
    request_doc=FeatureDoc,
    item_doc=FenceOut,
    content_types=("application/json", "application/geo+json"),
)


async def location(request: web.Request) -> web.Response:
    req = await read_json(request, S.LocationRequest)
    request[DEVICE_USER] = req.user_id
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
    *RESOURCE.routes(),
)
