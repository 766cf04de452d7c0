"""Overview: decisions per second by reason (15 min, live), degraded share, decide latency,
store, model and configuration versions."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from refreshd.console import svg
from refreshd.console.common import age, now_ms, page, when
from refreshd.console.series import BUCKET_S, WINDOW_S, Window, reasons, snapshot
from refreshd.http.keys import (
    EXPERIMENTS,
    FENCES,
    METRICS,
    POLICY,
    REGISTRY,
    RULEBOOK,
    SETTINGS,
    STORE,
    STORE_HEALTH,
)

WINDOW: web.AppKey[Window] = web.AppKey("console_window", Window)


async def sampler(app: web.Application) -> AsyncIterator[None]:
    """Take a snapshot of the counters every BUCKET_S for the overview's window."""
    app[WINDOW] = Window(snapshot(app[METRICS], time.time()))

    async def run() -> None:
        while True:
            await asyncio.sleep(BUCKET_S - time.time() % BUCKET_S)
            app[WINDOW].add(snapshot(app[METRICS], time.time()))

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _context(request: web.Request) -> dict[str, Any]:
    app = request.config_dict
    now = snapshot(app[METRICS], time.time())
    window = app[WINDOW]
    buckets = window.buckets(now)
    names = reasons(buckets)
    summary = window.summary(now)
    # Label every 5 minutes of bucket starts (UTC clock time).
    labels = [
        time.strftime("%H:%M", time.gmtime(ts)) if int(ts) % 300 < BUCKET_S else ""
        for ts, _ in buckets
    ]
    chart = svg.columns(
        "Decisions per second by reason, last 15 minutes",
        buckets,
        names,
        per_s=BUCKET_S,
        x_labels=labels,
    )
    store_ok = await app[STORE].ping()
    meta = app[REGISTRY].meta
    settings = app[SETTINGS]
    return {
        "chart": chart,
        "summary": summary,
        "reasons": names,
        "window_min": WINDOW_S // 60,
        "bucket_s": BUCKET_S,
        "store_ok": store_ok,
        "store_name": app[STORE_HEALTH].name,
        "model": meta,
        "model_age": age((now_ms(request) - meta.created_ts) / 1000) if meta else None,
        "model_created": when(meta.created_ts) if meta else None,
        "versions": {
            "rules": app[RULEBOOK].version,
            "experiments": app[EXPERIMENTS].version,
            "fences": app[FENCES].version,
            "policy": app[POLICY].version,
        },
        "pid": os.getpid(),
        "workers": settings.workers,
    }


async def overview(request: web.Request) -> web.Response:
    return page(request, "overview.html", await _context(request))


async def overview_fragment(request: web.Request) -> web.Response:
    """The live part of the overview, for the page's script to swap in every BUCKET_S."""
    return page(request, "overview_live.html", await _context(request))
