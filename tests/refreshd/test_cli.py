"""The command line: help, bad flags, and `serve --workers 2` sharing one port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support import now_ms, wait_ready


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "refreshd", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})  # fmt: skip


def test_help_explains_the_commands() -> None:
    out = run_cli("--help")
    assert out.returncode == 0 and "serve" in out.stdout and "REFRESHD_" in out.stdout
    out = run_cli("serve", "--help")
    assert out.returncode == 0 and "--workers" in out.stdout and "embedded Valkey" in out.stdout


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (("serve", "--workers", "0"), {}, "--workers"),
        (("serve", "--port", "99999"), {}, "--port"),
        (("serve",), {"REFRESHD_PORT": "abc"}, "REFRESHD_PORT"),
    ],
)
def test_bad_configuration_exits_2_with_a_message(
    args: tuple[str, ...], env: dict[str, str], needle: str
) -> None:
    out = run_cli(*args, env=env)
    assert out.returncode == 2 and needle in out.stderr


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def get(url: str) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, json.loads(resp.read())


def post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, json.loads(resp.read())


def put(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:  # a 4xx answer with its error body
        return e.code, json.loads(e.read())


def test_two_workers_share_the_port_and_stop_cleanly(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "refreshd", "serve", "--workers", "2", "--port", str(port),
         "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        # 120 s includes training the bootstrap model.
        wait_ready(base, proc, 120, lambda: proc.stdout.read() if proc.stdout else "")
        cmdlines = [Path(f"/proc/{c}/cmdline").read_text() for c in children(proc.pid)]
        workers = [c for c in cmdlines if "spawn_main" in c]
        assert len(workers) == 2
        # One worker trained the bootstrap model; the other loads it on its next config poll
        # (documented: within a few seconds). Then every decision is the model's.
        deadline = time.monotonic() + 10
        streak = n = 0
        while streak < 20:
            n += 1  # a new user each time: no cooldown in the way
            status, body = post(
                f"{base}/v1/decide", {"user_id": f"u{n}", "ts": now_ms(), "trigger": "open"}
            )
            assert status == 200
            if body["reason"] in ("intent", "no_intent") and not body["degraded"]:
                streak += 1
            else:
                streak = 0
                assert time.monotonic() < deadline, f"a worker has no model: {body}"
                time.sleep(0.2)
        # A rule and an experiment written through one worker reach the other within the
        # documented delay (one config poll, 1 s): every later request, whichever worker
        # answers it, sees both.
        rule = {"pattern": [{"type": "search"}], "action": {"type": "refresh", "slots": ["feed"]}}
        exp = {"seed": "w", "status": "running", "weights": [0.5, 0.5],
               "variants": [{"key": "a", "params": {"policy": "fixed"}},
                            {"key": "b", "params": {"policy": "fixed"}}]}  # fmt: skip
        assert put(f"{base}/v1/triggers/search-refresh", rule)[0] == 200
        assert put(f"{base}/v1/experiments/two-workers", exp)[0] == 200
        time.sleep(3.0)  # the 1 s poll, with margin for a busy machine
        for i in range(30):
            _, events = post(f"{base}/v1/events", {"user_id": f"s{i}", "batch_id": "b",
                                                   "events": [{"type": "search", "ts": now_ms()}]})  # fmt: skip
            assert [d["source"] for d in events["directives"]] == ["rule:search-refresh"]
            _, body = post(
                f"{base}/v1/decide", {"user_id": f"s{i}", "ts": now_ms(), "trigger": "open"}
            )
            assert body["experiment"]["id"] == "two-workers"
        # The policy document too: a longer cooldown and pull moved below it reach both workers
        # within one config poll; a bad document is refused naming the node.
        status, bad = put(f"{base}/v1/policy", {"nodes": [{"type": "pull"}, {"type": "bogus"},
                                                           {"type": "fallback"}]})  # fmt: skip
        assert status == 422 and bad["error"]["field"] == "nodes[1].type"
        ladder = {"nodes": [{"type": "event"}, {"type": "geo"},
                            {"type": "cooldown", "min_interval_s": 3600}, {"type": "pull"},
                            {"type": "intent"}, {"type": "fallback"}]}  # fmt: skip
        before = [_refresh_then(base, f"p{i}", "pull") for i in range(10)]
        assert before == ["pull"] * 10
        assert put(f"{base}/v1/policy", ladder)[0] == 200
        time.sleep(3.0)
        after = [_refresh_then(base, f"q{i}{trigger}", trigger) for i in range(20)
                 for trigger in ("pull", "open")]  # fmt: skip
        assert after == ["cooldown"] * 40
        # The kill switch: `mode: fallback` reaches both workers within one poll, and every
        # decision that would have been the model's is the fallback rule's, saying why.
        assert put(f"{base}/v1/experiments/two-workers", exp | {"status": "stopped"})[0] == 200
        assert put(f"{base}/v1/policy", ladder | {"mode": "fallback"})[0] == 200
        time.sleep(3.0)
        for i in range(20):
            _, body = post(f"{base}/v1/decide", {"user_id": f"k{i}", "ts": now_ms(),
                                                 "trigger": "open"})  # fmt: skip
            assert body["reason"] == "fallback" and body["degraded_reasons"] == ["kill_switch"]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more


def _refresh_then(base: str, uid: str, trigger: str) -> str:
    """Refresh a new user 100 s ago (device clock), then ask again now: return the reason."""
    t = now_ms()
    first = post(f"{base}/v1/decide", {"user_id": uid, "ts": t - 100_000, "trigger": "open"})[1]
    assert first["refresh"], first
    return str(
        post(f"{base}/v1/decide", {"user_id": uid, "ts": t, "trigger": trigger})[1]["reason"]
    )


def test_train_command_publishes_from_the_logs(redis_url: str) -> None:
    import redis as redis_lib

    from synth.eventlog import generate
    from tests.support import raw_xadd

    empty = run_cli("train", "--redis-url", redis_url)
    assert empty.returncode == 1 and "not enough training data" in empty.stderr
    log = generate(users=120, days=2, seed=3)
    with redis_lib.Redis.from_url(redis_url) as raw:
        for d in log.decisions:
            raw_xadd(raw, "log:decisions", d)
        for e in log.events:
            raw_xadd(raw, "log:events", e)
        out = run_cli("train", "--redis-url", redis_url)
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["published"] is True
        assert raw.get("model:current").decode() == report["model"]["version"]


def test_train_on_a_dask_cluster_publishes_through_the_same_gate(redis_url: str) -> None:
    import redis as redis_lib
    from distributed import LocalCluster

    from synth.eventlog import generate
    from tests.support import raw_xadd

    log = generate(users=120, days=2, seed=3)
    with (
        redis_lib.Redis.from_url(redis_url) as raw,
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            protocol="tcp",
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
    ):
        for d in log.decisions:
            raw_xadd(raw, "log:decisions", d)
        for e in log.events:
            raw_xadd(raw, "log:events", e)
        out = run_cli("train", "--redis-url", redis_url, "--dask", cluster.scheduler_address)
        assert out.returncode == 0, out.stderr
        first = json.loads(out.stdout)
        assert first["published"] is True and first["metrics"]["fitted_on"] == "dask: 2 workers"
        assert raw.get("model:current").decode() == first["model"]["version"]
        # local:2 runs the workers in the command itself; LightGBM's network set-up lines go to
        # stderr and stdout stays the report alone.
        out = run_cli("train", "--redis-url", redis_url, "--dask", "local:2")
        assert out.returncode == 0, out.stderr
        assert "[LightGBM]" in out.stderr
        second = json.loads(out.stdout)
    # The published model is judged on the same holdout as the new one, as without Dask.
    assert second["current_metrics"]["auc"] == first["metrics"]["auc"]
    assert second["published"] is (second["metrics"]["auc"] >= first["metrics"]["auc"])


def test_train_on_dask_without_the_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from refreshd.cli import main

    monkeypatch.setitem(sys.modules, "distributed", None)  # what an import finds uninstalled
    assert main(["train", "--redis-url", "redis://127.0.0.1:1", "--dask", "local:2"]) == 2
    out, err = capfd.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("refreshd train: ") and "pip install 'refreshd[distributed]'" in err


def test_replay_command_writes_the_report_files(redis_url: str, tmp_path: Path) -> None:
    import redis as redis_lib

    from synth.eventlog import generate
    from tests.support import raw_xadd

    log = generate(users=20, days=1, seed=3)
    with redis_lib.Redis.from_url(redis_url) as raw:
        for d in log.decisions:
            raw_xadd(raw, "log:decisions", d)
        for e in log.events:
            raw_xadd(raw, "log:events", e)
    since = min(d["ts"] for d in log.decisions)
    until = max(d["ts"] for d in log.decisions) + 1
    window = ("--since", str(since), "--until", str(until), "--redis-url", redis_url)
    out = run_cli("replay", *window, "--threshold", "0.3", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["decisions"] == len(log.decisions)
    assert report["candidate"] == {"model": None, "threshold": 0.3}
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert (tmp_path / "report.md").read_text().startswith("# refreshd replay")
    assert (tmp_path / "replay.png").stat().st_size > 1000
    bad = run_cli("replay", "--since", str(until), "--until", str(since), "--redis-url", redis_url)
    assert bad.returncode == 2 and "(until)" in bad.stderr
    missing = run_cli("replay", *window, "--model", "m-nope")
    assert missing.returncode == 2 and "no model" in missing.stderr
