"""Measure the per-request guardrails (`decision_latency_ms`, `error_responses`) of running
experiments, observed by the service's middleware (`refreshd.http.middleware.edge`) after the
error mapping, so that it sees the status a device got.

The arm of a request: for a decision, the one it ran under (the handler records it); for any
other device request, where hashing puts the user now (sticky records are in the user's state,
which a failed request may never have read). Latency is the server time of a `200` decision,
as the `refreshd_request_duration_seconds` histogram measures it.
"""

from __future__ import annotations

import re
import time

import msgspec
from aiohttp import web

from refreshd import constants as C
from refreshd.core.exposure import choose
from refreshd.http.keys import EXPERIMENTS, GUARDRAILS

__all__ = ["DECISION_ARM", "DEVICE_ROUTES", "DEVICE_USER", "observe"]

DEVICE_USER = web.RequestKey("device_user", str)  # set by a device handler once it parsed
DECISION_ARM = web.RequestKey("decision_arm", tuple[str, str])  # (experiment, variant)
DEVICE_ROUTES = frozenset({"/v1/decide", "/v1/location", "/v1/events"})
_ID = re.compile(C.ID_PATTERN)


class _Who(msgspec.Struct):
    user_id: str = ""


async def _user_of(request: web.Request) -> str | None:
    """The user id of a request its handler refused, if its body names a valid one."""
    uid = request.get(DEVICE_USER)
    if uid is not None:
        return uid
    try:
        who = msgspec.json.decode(await request.read(), type=_Who)
    except Exception:  # an unreadable body has no user to count the error for
        return None
    ok = 0 < len(who.user_id) <= C.ID_MAX_LEN and _ID.match(who.user_id)
    return who.user_id if ok else None


async def observe(request: web.Request, response: web.StreamResponse, start: float) -> None:
    """Count a device request's guardrails, if an experiment guards them; `start` is the
    `time.perf_counter()` the request began at."""
    book = request.app.get(EXPERIMENTS)
    if book is None or not book.guarded:
        return
    error = response.status >= 400
    uid = await _user_of(request) if error else request.get(DEVICE_USER)
    if uid is None:
        return
    arm = request.get(DECISION_ARM)
    if arm is None:
        chosen = choose(book.guarded, uid)
        if chosen is None or chosen[2].variant is None:
            return
        arm = (chosen[0], chosen[2].variant)
    cfg = book.guarded.get(arm[0])
    if cfg is None:
        return
    meter = request.app[GUARDRAILS]
    exp_id, variant = arm
    if "error_responses" in cfg.guardrails:
        meter.observe(exp_id, variant, "error_responses", 1 if error else 0)
    if "decision_latency_ms" in cfg.guardrails and request.path == "/v1/decide" and not error:
        elapsed_us = int((time.perf_counter() - start) * 1e6)
        meter.observe(exp_id, variant, "decision_latency_ms", elapsed_us)
