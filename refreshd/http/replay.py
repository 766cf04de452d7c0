"""HTTP shell of replay: POST /v1/replay (a bounded window of the decision log, admin)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import Meta

from refreshd import constants as C
from refreshd.core.replay import ReplayReport
from refreshd.http.codec import json_response, read_json
from refreshd.http.keys import CLOCK, SETTINGS, STORE
from refreshd.http.routing import BODY_ERRORS, Route
from refreshd.live.replay import run_replay

Ms = Annotated[int, Meta(ge=0, le=2**53, description="epoch milliseconds")]


class ReplayRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The window (decision `ts` in [since, until)) and, for a counterfactual, a candidate."""

    since: Ms
    until: Ms
    model: Annotated[str, Meta(min_length=1, max_length=C.ID_MAX_LEN)] | None = None
    threshold: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None


async def replay(request: web.Request) -> web.Response:
    req = await read_json(request, ReplayRequest)
    app = request.app
    report = await run_replay(
        app[STORE],
        app[SETTINGS],
        since=req.since,
        until=req.until,
        now_ms=app[CLOCK](),
        model=req.model,
        threshold=req.threshold,
    )
    return json_response(report)


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/replay",
        replay,
        f"Re-run a window of logged decisions (at most {C.REPLAY_MAX_DECISIONS}) with the "
        "versions of their time; with a candidate model or threshold, estimate its effect",
        ReplayRequest,
        ReplayReport,
        errors=(*BODY_ERRORS, 404, 503),
        admin=True,
    ),
)
