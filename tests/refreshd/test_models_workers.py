"""Promote, rollback and shadow reach both worker processes of `serve --workers 2` within one
config poll: checked on fresh connections (each may land on either worker) until every answer
shows the change, bounded generously."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from intent.train import TrainResult
from refreshd.live.registry import publish
from refreshd.store.redis import RedisStore
from tests.refreshd.test_cli import children, free_port
from tests.refreshd.test_models_lifecycle import stage
from tests.support import now_ms, wait_ready

POLL_S = 1.0
# A change is live on every worker within one poll; the bound allows a busy machine.
BOUND_S = 10 * POLL_S
STREAK = 20  # consecutive answers, on fresh connections, that must all show the change


def call(base: str, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def until_every_answer(check: Callable[[], bool], what: str) -> None:
    """Wait until STREAK answers in a row pass `check`; fail after BOUND_S."""
    deadline = time.monotonic() + BOUND_S
    streak = 0
    while streak < STREAK:
        if check():
            streak += 1
            continue
        streak = 0
        assert time.monotonic() < deadline, f"not every worker shows {what}"
        time.sleep(0.05)


async def _seed(redis_url: str, model: TrainResult) -> tuple[str, str]:
    store = RedisStore(redis_url)
    try:
        champion = (await publish(store, model, created_ts=1, source="test")).version
        return champion, await stage(store, model.model_text, 2)
    finally:
        await store.close()


def test_promote_rollback_and_shadow_reach_both_workers(
    redis_url: str, trained_model: TrainResult, tmp_path: Path
) -> None:
    first, second = asyncio.run(_seed(redis_url, trained_model))
    port = free_port()
    env = {**os.environ, "REFRESHD_BOOTSTRAP_MODEL": "false", "REFRESHD_RETRAIN_INTERVAL_S": "0",
           "REFRESHD_CONFIG_POLL_S": str(POLL_S), "REFRESHD_LOG_LEVEL": "WARNING"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "refreshd", "serve", "--workers", "2", "--port", str(port),
         "--data-dir", str(tmp_path), "--redis-url", redis_url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def current_is(version: str) -> Callable[[], bool]:
        return lambda: call(base, "GET", "/v1/models/current")[1].get("version") == version

    try:
        wait_ready(base, proc, 60, lambda: proc.stdout.read() if proc.stdout else "")
        assert len([c for c in children(proc.pid)
                    if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]) == 2  # fmt: skip
        until_every_answer(current_is(first), "the first champion")
        # No logs to judge on: refused unless forced.
        assert call(base, "POST", f"/v1/models/{second}/promote")[0] == 409
        status, promoted = call(base, "POST", f"/v1/models/{second}/promote?force=true")
        assert status == 200 and promoted["change"]["to"] == second
        until_every_answer(current_is(second), "the promoted model")

        status, back = call(base, "POST", "/v1/models/rollback")
        assert status == 200 and back["to"] == first
        until_every_answer(current_is(first), "the rolled-back model")
        history = call(base, "GET", "/v1/models/history")[1]["history"]
        assert [c["action"] for c in history] == ["rollback", "promote", "publish"]

        # Shadow: once started through one worker, both shadow every model-decided decision.
        assert call(base, "POST", f"/v1/models/{second}/shadow")[0] == 200
        time.sleep(2 * POLL_S)  # one poll, with margin for a busy machine
        n = 40
        for i in range(n):  # fresh connections: the kernel spreads them over both workers
            status, body = call(base, "POST", "/v1/decide",
                                {"user_id": f"w{i}", "ts": now_ms(), "trigger": "open"})  # fmt: skip
            assert status == 200 and body["reason"] in ("intent", "no_intent"), body
        report: dict[str, Any] = {}
        deadline = time.monotonic() + BOUND_S
        while report.get("decisions", 0) < n:
            assert time.monotonic() < deadline, f"not every decision was shadowed: {report}"
            time.sleep(0.1)
            report = call(base, "GET", f"/v1/models/{second}/shadow-report")[1]
        assert report["decisions"] == n and report["agreement"] == 1.0
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
