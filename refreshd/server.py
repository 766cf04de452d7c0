"""Run the service: one process, or N worker processes sharing the port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import signal
import socket
import sys
from types import FrameType

from aiohttp import web

from refreshd import __version__
from refreshd.http.app import create_app
from refreshd.live.storehealth import describe_store
from refreshd.settings import Settings
from refreshd.store.embedded import EmbeddedValkey

log = logging.getLogger(__name__)


# Loggers that say something on every run of a periodic job ("Running job ...", "... executed
# successfully" each second for the config poll): only their warnings and errors are shown, so
# an idle service logs nothing. The service logs what the jobs change (configuration versions,
# models, the store going away and coming back).
QUIET_LOGGERS = ("apscheduler",)


class SkippedRunFilter(logging.Filter):
    """Drop APScheduler's warning that a job's run was skipped because it is still running.

    The jobs run with max_instances=1 and coalesce on purpose: while the store does not answer a
    config poll can take longer than the poll interval (two store timeouts), and the skipped
    run is what should happen, not one warning a second for the whole outage (the outage itself
    is logged once, by refreshd.live.storehealth).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in str(record.msg)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    scheduler_log = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, SkippedRunFilter) for f in scheduler_log.filters):
        scheduler_log.addFilter(SkippedRunFilter())


def bind(host: str, port: int) -> socket.socket:
    """Return a listening socket that other workers can bind too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def settle_gc(app: web.Application) -> None:
    """Freeze what start-up built out of the cycle collector's sight.

    Runs after every start-up context (store, configuration), so a full collection walks only
    objects made since, not the ~120 000 of imports and start-up: over those it took ~100 ms
    (up to 240 ms under load) on the development VM, a stall every in-flight request waited for.
    """
    gc.collect()
    gc.freeze()


def run_worker(settings: Settings) -> None:
    """Serve in this process until SIGINT/SIGTERM."""
    configure_logging(settings.log_level)
    sock = bind(settings.host, settings.port)
    port = sock.getsockname()[1]  # the one bound, also when asked for port 0
    loop = new_loop()
    app = create_app(settings)
    # Only in the serving process: tests build many apps in one interpreter and must not
    # freeze each other's garbage.
    app.on_startup.append(settle_gc)
    web.run_app(
        app,
        sock=sock,
        access_log=logging.getLogger("aiohttp.access") if settings.access_log else None,
        loop=loop,
        print=lambda msg: log.info(
            "refreshd %s listening on http://%s:%d: %s, store %s",
            __version__,
            settings.host,
            port,
            "1 worker" if settings.workers == 1 else f"one of {settings.workers} workers",
            describe_store(settings),
        ),
        shutdown_timeout=10.0,
    )


def serve(settings: Settings) -> int:
    """Run `settings.workers` processes on one port; the parent owns the embedded Valkey."""
    configure_logging(settings.log_level)
    if settings.workers == 1:
        run_worker(settings)
        return 0
    store_name = describe_store(settings)
    embedded: EmbeddedValkey | None = None
    if settings.redis_url is None and not settings.redis_cluster:
        embedded = EmbeddedValkey(settings.data_dir, appendfsync=settings.appendfsync)
        settings = settings.replace(redis_url=embedded.start())
    log.info(
        "refreshd %s starting %d workers on http://%s:%d, store %s",
        __version__,
        settings.workers,
        settings.host,
        settings.port,
        store_name,
    )
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=run_worker, args=(settings,), name=f"refreshd-{i}")
        for i in range(settings.workers)
    ]
    for p in procs:
        p.start()
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.is_alive():
                p.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    try:
        while any(p.is_alive() for p in procs):
            for p in procs:
                p.join(timeout=0.5)
                if p.exitcode not in (None, 0) and not stopping:
                    log.error("worker %s exited with %s; stopping", p.name, p.exitcode)
                    status = 1
                    stop(signal.SIGTERM, None)
    finally:
        if embedded is not None:
            embedded.stop()
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(serve(Settings.from_env()))
