"""The application factory and the lifecycles of what it owns."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from dedupe import Catalogue, make_catalogue
from refreshd import api, middleware
from refreshd.embedded import EmbeddedValkey
from refreshd.keys import CATALOGUE, CLOCK, METRICS, SERVICE, SETTINGS, STORE
from refreshd.metrics import Metrics
from refreshd.redis_store import RedisStore
from refreshd.service import Service
from refreshd.settings import Settings, SettingsError

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _catalogue(seed: int) -> Catalogue:
    # Building the synthetic catalogue takes ~0.5 s; it is immutable, so share it.
    return make_catalogue(seed)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    """Connect the store; start the embedded Valkey first when no URL is configured."""
    settings = app[SETTINGS]
    embedded: EmbeddedValkey | None = None
    if settings.redis_cluster:
        raise SettingsError("REFRESHD_REDIS_CLUSTER is not supported yet; use REFRESHD_REDIS_URL")
    url = settings.redis_url
    if url is None:
        embedded = EmbeddedValkey(settings.data_dir, appendfsync=settings.appendfsync)
        url = await asyncio.to_thread(embedded.start)
    store = RedisStore(url, timeout_s=settings.store_timeout_s, log_maxlen=settings.log_maxlen)
    app[STORE] = store
    app[SERVICE] = Service(store, settings, app[METRICS], app[CLOCK])
    try:
        yield
    finally:
        await store.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], int] = wall_clock_ms
) -> web.Application:
    """Build the refreshd application; resources start and stop with it."""
    settings = settings or Settings.from_env()
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[middleware.metrics, middleware.errors],
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[CLOCK] = clock
    app[CATALOGUE] = _catalogue(settings.catalogue_seed)
    app.cleanup_ctx.append(_store_ctx)
    api.add_routes(app)
    return app
