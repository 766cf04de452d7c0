"""Start the services under test as subprocesses, wait until ready, and read their CPU time."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree(pid: int) -> list[int]:
    """A process and its descendants. Children are listed per thread: the embedded Valkey is
    started from a worker thread (`asyncio.to_thread`), so it is not the main thread's child."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError):
                    path = Path(f"/proc/{p}/task/{task}/children")
                    todo += [int(c) for c in path.read_text().split()]
    return out


def is_valkey(pid: int) -> bool:
    """Whether a process is a Valkey server, by its executable's name (a service's own command
    line may name Valkey: `--redis-url unix:///.../valkey.sock`)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip().startswith("valkey")
    except OSError:
        return False


def cpu_seconds(pid: int, *, valkey: bool = False) -> float:
    """Return user+system CPU seconds of a process tree: without its Valkey servers, or with
    `valkey` only theirs."""
    total = 0
    for p in _tree(pid):
        try:
            if is_valkey(p) != valkey:
                continue
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def embedded_valkey_url(pid: int) -> str | None:
    """The address of the embedded Valkey a server's process tree runs, or None.

    The server runs in its data directory (its working directory): the service's Unix
    socket is there, else the TCP address is in its process title.
    """
    for p in _tree(pid):
        with contextlib.suppress(OSError):
            if not is_valkey(p):
                continue
            title = Path(f"/proc/{p}/cmdline").read_text()
            sock = Path(os.readlink(f"/proc/{p}/cwd")) / "valkey.sock"
            if sock.exists():
                return f"unix://{sock}"
            addr = title.replace("\0", " ").split()[1:2]
            return f"redis://{addr[0]}/0" if addr else None
    return None


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"server not ready at {url} after {timeout_s} s")
        time.sleep(0.2)


def _tree_env(tree: Path | None) -> dict[str, str]:
    if tree is None:
        return {}
    inherited = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    return {"PYTHONPATH": os.pathsep.join([str(tree), *inherited])}


@contextlib.contextmanager
def refreshd(
    workers: int = 1,
    env: dict[str, str] | None = None,
    redis_url: str | None = None,
    tree: Path | None = None,
) -> Iterator[tuple[str, int]]:
    """Run `refreshd serve` on a free port (own embedded Valkey unless given); yield (url, pid).

    `tree`: the source tree to run instead of the installed one (another build, for
    `python -m load wrk --compare`): it goes first on the child's PYTHONPATH, ahead of the
    editable install's finder, so `import refreshd` and its sibling packages load from it.
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="refreshd-bench-") as data:
        cmd = [sys.executable, "-m", "refreshd", "serve", "--port", str(port)]
        cmd += ["--workers", str(workers), "--data-dir", data]
        if redis_url:
            cmd += ["--redis-url", redis_url]
        proc = subprocess.Popen(
            cmd,
            env={**os.environ, "REFRESHD_LOG_LEVEL": "WARNING", **_tree_env(tree), **(env or {})},
            cwd=tree,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
            yield f"http://127.0.0.1:{port}", proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.contextmanager
def bare() -> Iterator[tuple[str, int]]:
    """Run the bare aiohttp endpoint on a free port; yield (url, pid)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "load.bare", "--port", str(port)])
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)
