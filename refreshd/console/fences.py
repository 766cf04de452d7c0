"""Fences: every fence and its buffer ring on a map, one fence's detail, add by GeoJSON.

The map draws this worker's parsed fences (`FenceBook.index`, what fixes are tested against);
the detail and the writes go through `refreshd.http.geofences.RESOURCE`, so a bad GeoJSON is
refused with the API's own 422 message, shown next to the form."""

from __future__ import annotations

import weakref
from typing import Any

import msgspec
from aiohttp import web

from refreshd.console.common import Problem, form, page, problem, redirect, shown_version
from refreshd.console.mapview import MapLayout, layout
from refreshd.core.errors import NotFound, RefreshdError
from refreshd.http.codec import decode_any
from refreshd.http.geofences import RESOURCE
from refreshd.http.keys import FENCES, SETTINGS
from refreshd.http.resources import Expected, Item

BASE = "/console/fences"
# The drawn map is kept per fence-book version (and tile setting): a selection only marks one
# fence in it. Two: the newest, and the one before while a page drawn from it is still open.
MAPS_KEPT = 2
_maps: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], MapLayout]] = (
    weakref.WeakKeyDictionary()
)
EXAMPLE = {
    "type": "Feature",
    "geometry": {"type": "Point", "coordinates": [2.3522, 48.8566]},
    "properties": {"radius_m": 150, "buffer_m": 100, "dwell_s": 60, "service_cards": []},
}


async def fences(
    request: web.Request, error: Problem | None = None, draft: tuple[str, str] = ("", "")
) -> web.Response:
    app = request.config_dict
    index = app[FENCES].index
    selected = request.query.get("id")
    detail: Item | None = None
    fence = None
    if selected:
        try:
            detail = await RESOURCE.get(app, RESOURCE.valid_id(selected))
        except NotFound:
            detail = None
        fence = index.get(selected)
    shown = sorted(index, key=lambda f: f.id)
    tiles = app[SETTINGS].console_tiles
    key = (app[FENCES].version, len(shown), tiles)
    cache = _maps.setdefault(app[FENCES], {})
    if key not in cache:
        if len(cache) >= MAPS_KEPT:
            cache.pop(next(iter(cache)))
        cache[key] = layout(shown, link=f"{BASE}?id=", tiles=tiles)
    return page(
        request,
        "fences.html",
        {
            "map": cache[key].render(selected if selected in index else None),
            "fences": shown,
            "version": app[FENCES].version,
            "selected": selected,
            "detail": detail,
            "fence": fence,
            "error": error,
            "draft_id": draft[0],
            "draft": draft[1] or msgspec.json.format(msgspec.json.encode(EXAMPLE)).decode(),
        },
        status=error.status if error else 200,
    )


async def add(request: web.Request) -> web.Response:
    data = await form(request)
    fid, text = data.get("id", ""), data.get("feature", "")
    try:
        fid = RESOURCE.valid_id(fid)
        await RESOURCE.write(request.config_dict, fid, decode_any(text), Expected())
    except RefreshdError as err:
        return await fences(request, problem(err), (fid, text))
    raise redirect(f"{BASE}?id={fid}")


async def delete(request: web.Request) -> web.Response:
    fid = RESOURCE.valid_id(request.match_info["id"])
    data = await form(request)
    try:
        await RESOURCE.delete(request.config_dict, fid, shown_version(data))
    except RefreshdError as err:
        return await fences(request, problem(err))
    raise redirect(BASE)
