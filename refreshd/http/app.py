"""The application factory and the lifecycles of what it owns."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from intent.features import FEATURES_VERSION
from intent.model import read_features_version
from refreshd import constants as C
from refreshd.console.app import add_console
from refreshd.core.errors import Conflict, StoreUnavailable
from refreshd.http import middleware
from refreshd.http import routes as api
from refreshd.http.keys import (
    CATALOGUE,
    CLOCK,
    EXPERIMENTS,
    FENCES,
    GUARDRAILS,
    HOLDOUTS,
    METRICS,
    POLICY,
    REGISTRY,
    RULEBOOK,
    RULES_FILE,
    SERVICE,
    SETTINGS,
    SHADOW,
    STORE,
    STORE_HEALTH,
    TRAINER,
)
from refreshd.live.expbook import ExperimentBook
from refreshd.live.fencebook import FenceBook
from refreshd.live.guardrails import GuardrailMeter
from refreshd.live.holdoutbook import HoldoutBook
from refreshd.live.policybook import PolicyBook
from refreshd.live.registry import ModelRegistry, publish
from refreshd.live.rulebook import RuleBook, load_rules_file
from refreshd.live.service import Service, default_policy
from refreshd.live.shadow import Shadow
from refreshd.live.storehealth import StoreHealth, describe_store
from refreshd.live.training import Trainer, freshness_s
from refreshd.metrics import Metrics
from refreshd.settings import Settings
from refreshd.store.embedded import EmbeddedValkey
from refreshd.store.protocol import Store
from refreshd.store.redis import RedisStore
from synth.bootstrap import bootstrap as bootstrap_model
from synth.catalogue import Catalogue, make_catalogue

log = logging.getLogger(__name__)
# A training run holds the lease this long at most: a trainer that crashed (a stopped one
# releases it) blocks retraining this long. A full retrain of the largest log takes minutes;
# if one outlasts the lease, a second worker may train alongside, and both face the gate.
TRAIN_LEASE_S = 600


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
    url = settings.redis_url
    if settings.redis_cluster:
        url = None
    elif url is None:
        embedded = EmbeddedValkey(settings.data_dir, appendfsync=settings.appendfsync)
        url = await asyncio.to_thread(embedded.start)
    store = RedisStore(
        url,
        cluster_nodes=settings.redis_cluster,
        timeout_s=settings.store_timeout_s,
        log_maxlen=settings.log_maxlen,
        ack_replicas=settings.ack_replicas,
        ack_timeout_ms=settings.ack_timeout_ms,
    )
    app[STORE] = store
    name = f"embedded Valkey at {url}" if embedded is not None else describe_store(settings)
    app[STORE_HEALTH] = StoreHealth(name)
    rulebook = RuleBook()
    app[RULEBOOK] = rulebook
    app[EXPERIMENTS] = ExperimentBook()
    app[HOLDOUTS] = HoldoutBook()
    app[GUARDRAILS] = GuardrailMeter()
    app[REGISTRY] = ModelRegistry()
    app[METRICS].model_freshness.set_function(lambda: freshness_s(app[REGISTRY].meta, app[CLOCK]()))
    app[FENCES] = FenceBook()
    app[POLICY] = PolicyBook(default_policy(settings))
    app[SHADOW] = Shadow(
        app[METRICS],
        queue_max=settings.shadow_queue_max,
        log_maxlen=settings.shadow_log_maxlen,
    )
    app[SERVICE] = Service(
        store,
        settings,
        app[METRICS],
        app[CLOCK],
        rulebook,
        app[EXPERIMENTS],
        app[REGISTRY],
        app[FENCES],
        app[POLICY],
        app[SHADOW],
        app[HOLDOUTS],
    )
    if await store.ping():
        app[STORE_HEALTH].ok()  # "store connected" before what is loaded from it
    await _checked_load_config(app)
    if app[STORE_HEALTH].up and app[REGISTRY].model is None and not settings.bootstrap_model:
        log.info("no intent model in the store: the fallback rule decides until one is published")
    try:
        yield
    finally:
        await store.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


async def _load_config(app: web.Application) -> None:
    """Load (and on a fresh store, seed) the rules; called at start and by the poller."""
    store, rulebook = app[STORE], app[RULEBOOK]
    if rulebook.version < 0:
        await rulebook.seed(store, app[RULES_FILE])
    else:
        await rulebook.refresh(store)
    await app[EXPERIMENTS].refresh(store)
    await app[REGISTRY].refresh(store)
    await app[SHADOW].refresh(store)
    await app[FENCES].refresh(store)
    await app[HOLDOUTS].refresh(store)
    await app[POLICY].refresh(store)


async def _checked_load_config(app: web.Application) -> None:
    """Load the configuration; say once when the store stops answering and when it is back."""
    try:
        await _load_config(app)
    except StoreUnavailable as exc:
        app[STORE_HEALTH].failed(exc)
    else:
        app[STORE_HEALTH].ok()


async def _locked_retrain(app: web.Application, *, source: str, only_if_missing: bool) -> None:
    """Train under a store lease so one worker of many does it; bootstrap from synthetic data."""
    store, registry = app[STORE], app[REGISTRY]
    owner = uuid.uuid4().hex
    try:
        if only_if_missing and await _usable_model(store):
            return
        if not await store.try_lock("train", owner, TRAIN_LEASE_S):
            return  # another worker is on it; the config poll will pick its model up
        try:
            now_ms = app[CLOCK]()
            if only_if_missing:
                current = await store.current_model_version()
                if current is not None and not await _usable_model(store):
                    # An upgrade changed the features: the stored model cannot score them.
                    # Retrain on the logs (their rows rebuild any feature version); a service
                    # without enough logged traffic starts again from the synthetic log.
                    log.warning("intent model %s was trained on other features (FEATURES_VERSION "
                                "%s): retraining", current, FEATURES_VERSION)  # fmt: skip
                    report = await app[TRAINER].run(store, registry, now_ms=now_ms,
                                                    source="upgrade")  # fmt: skip
                    if report is None or not report.published:  # too little logged traffic
                        current = None
                if current is None:
                    log.info("no usable intent model: training a first one on a synthetic log")
                    result = await asyncio.to_thread(bootstrap_model)
                    await publish(store, result, created_ts=now_ms, source=source)
            else:
                await app[TRAINER].run(store, registry, now_ms=now_ms, source=source)
        finally:
            await store.release_lock("train", owner)
        await registry.refresh(store)
    except (StoreUnavailable, Conflict) as exc:
        log.info("%s skipped: %s", source, exc)
    except Exception:
        log.exception("%s failed", source)


async def _usable_model(store: Store) -> bool:
    """Return whether `model:current` names a model trained on this code's features."""
    current = await store.current_model_version()
    stored = None if current is None else await store.get_model(current)
    return stored is not None and read_features_version(stored[0]) == FEATURES_VERSION


async def _jobs_ctx(app: web.Application) -> AsyncIterator[None]:
    """Periodic work: pick up configuration changes, sweep due event rules, retrain, and
    measure the live model's calibration."""
    settings = app[SETTINGS]
    app[TRAINER] = Trainer(full_every_s=settings.full_retrain_s)
    scheduler = AsyncIOScheduler(timezone=datetime.UTC)

    async def poll() -> None:
        await _checked_load_config(app)
        await app[GUARDRAILS].flush(app[STORE])

    async def sweep() -> None:
        try:
            await app[SERVICE].sweep()
        except StoreUnavailable:
            log.debug("sweep: store unavailable")

    running: set[asyncio.Task[object]] = set()

    async def retrain_job() -> None:
        task = asyncio.current_task()
        assert task is not None
        running.add(task)
        try:
            await _locked_retrain(app, source="retrain", only_if_missing=False)
        except asyncio.CancelledError:
            return  # stopping: the lease was released on the way out
        finally:
            running.discard(task)

    async def calibration_job() -> None:
        try:
            await app[SERVICE].monitor.calibrate(app[STORE])
        except StoreUnavailable:
            log.debug("calibration: store unavailable")

    opts = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
    if settings.retrain_interval_s > 0:
        scheduler.add_job(
            retrain_job, "interval", seconds=settings.retrain_interval_s, id="retrain", **opts
        )
    if settings.calibration_interval_s > 0:
        scheduler.add_job(
            calibration_job,
            "interval",
            seconds=settings.calibration_interval_s,
            id="calibration",
            **opts,
        )
    bootstrap: asyncio.Task[None] | None = None
    if settings.bootstrap_model:
        bootstrap = asyncio.create_task(
            _locked_retrain(app, source="bootstrap", only_if_missing=True)
        )
    scheduler.add_job(poll, "interval", seconds=settings.config_poll_s, id="config", **opts)
    scheduler.add_job(sweep, "interval", seconds=settings.sweep_interval_s, id="sweep", **opts)
    scheduler.start()
    # Shadow scoring: a queue drained in the background, so no decision waits for it.
    shadowing = asyncio.create_task(app[SHADOW].run(app[STORE]))
    try:
        yield
    finally:
        scheduler.shutdown(wait=False)
        await app[GUARDRAILS].flush(app[STORE])  # the store closes after this context
        shadowing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await shadowing
        # Stop a run while the store is still open, so that it releases its lease: a restart
        # would otherwise find the lease taken and not retrain until it expires.
        for task in list(running):
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        app[TRAINER].close()
        if bootstrap is not None and not bootstrap.done():
            bootstrap.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await bootstrap


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], int] = wall_clock_ms
) -> web.Application:
    """Build the refreshd application; resources start and stop with it."""
    settings = settings or Settings.from_env()
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        # The HTTP parser's own bounds (the backstop behind middleware.check_bounds).
        handler_args={
            "max_line_size": C.HTTP_MAX_LINE_SIZE,
            "max_field_size": C.HTTP_MAX_FIELD_SIZE,
        },
        middlewares=[middleware.edge],
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[CLOCK] = clock
    app[CATALOGUE] = _catalogue(settings.catalogue_seed)
    app[RULES_FILE] = load_rules_file(settings.rules_file) if settings.rules_file else {}
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_jobs_ctx)
    api.add_routes(app, settings.admin_token)
    add_console(app)  # HTML pages at /console, outside the JSON route table
    return app
