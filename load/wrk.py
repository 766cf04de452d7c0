"""Capacity with `wrk`: a C generator on its own core, so the server is the ceiling, not the client.

The Python open-model generator (load/openloop.py) measures latency at fixed rates honestly, but
at ~3 000 rps it fills a core itself, so its "throughput at SLO" is partly its own limit. Here
wrk (closed loop, N connections) drives the server as hard as it can answer. The server is
pinned to one core and wrk and Valkey to the other, and wrk's own CPU time is read from the
kernel (wait4) so a saturated generator shows: a run whose generator used more than
GENERATOR_LIMIT of its core is flagged and not reported as a ceiling. Closed-loop latencies are
printed but are not the SLO figures; those stay with the open-model ramp.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from load import servers
from load.mix import load_fences
from load.openloop import check_loopback

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "wrk_mix.lua"
INSTALLER = ROOT / ".ci" / "wrk"
GENERATOR_LIMIT = 0.80
ERROR_LIMIT = 0.01
# Below this share of its core the server waited on something (Valkey's fsync, a neighbour on
# the machine) rather than ran out of CPU: the figure stands, with that said.
SERVER_BUSY = 0.90
MODES = ("decide", "realistic", "location", "events")


def find_wrk(*, install: bool = False) -> str | None:
    """Return the wrk binary; with `install`, run .ci/wrk first when it is missing."""
    name = os.environ.get("REFRESHD_WRK", "wrk")
    found = shutil.which(name)
    if found is None and install and INSTALLER.exists():
        subprocess.run([str(INSTALLER)], check=False)
        found = shutil.which(name)
    return found


def cores() -> tuple[int, int] | None:
    """Return (server core, generator core), or None on a machine with one usable core."""
    usable = sorted(os.sched_getaffinity(0))
    return (usable[0], usable[1]) if len(usable) >= 2 else None


def pin_tree(pid: int, server_core: int, other_core: int) -> None:
    """Pin every thread of a server's process tree to `server_core`, and its Valkey to the other.

    Threads are pinned one by one (an affinity belongs to a thread); threads started later
    inherit their creator's.
    """
    for p in servers._tree(pid):
        try:
            valkey = servers.is_valkey(p)
            tids = [int(t) for t in os.listdir(f"/proc/{p}/task")]
        except OSError:
            continue
        for tid in tids:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, {other_core if valkey else server_core})


@dataclasses.dataclass
class WrkRun:
    label: str
    mode: str
    duration_s: float
    connections: int
    requests: int
    status_errors: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    generator_cpu: float  # share of one core
    server_cpu: float | None  # share of one core, Valkey excluded
    pinned: bool
    valkey_cpu: float | None = None  # share of one core, the server's embedded Valkey
    # What Valkey ran over the run, from INFO commandstats: scripts (EVALSHA and EVAL: a
    # request's round trips) and every command, the scripts' own calls included
    valkey_scripts: int | None = None
    valkey_calls: int | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def error_rate(self) -> float:
        return (self.status_errors + self.socket_errors) / self.requests if self.requests else 1.0

    @property
    def server_cpu_ms_per_request(self) -> float | None:
        if self.server_cpu is None or not self.requests:
            return None
        return self.server_cpu * self.duration_s / self.requests * 1000

    def per_request(self, count: float | None) -> float | None:
        return count / self.requests if count is not None and self.requests else None

    @property
    def valkey_cpu_ms_per_request(self) -> float | None:
        if self.valkey_cpu is None or not self.requests:
            return None
        return self.valkey_cpu * self.duration_s / self.requests * 1000

    @property
    def generator_saturated(self) -> bool:
        return self.generator_cpu > GENERATOR_LIMIT

    @property
    def valid(self) -> bool:
        """Whether the throughput may be reported as the server's ceiling."""
        return not self.generator_saturated and self.error_rate <= ERROR_LIMIT

    def verdict(self) -> str:
        notes = []
        if self.generator_saturated:
            notes.append(
                f"GENERATOR SATURATED ({self.generator_cpu:.0%} of its core): not a ceiling"
            )
        if self.error_rate > ERROR_LIMIT:
            notes.append(f"ERRORS {self.error_rate:.1%} (> {ERROR_LIMIT:.0%}): not a ceiling")
        if self.server_cpu is not None and self.server_cpu < SERVER_BUSY:
            notes.append(f"server only {self.server_cpu:.0%} busy: it waited, not CPU-bound")
        if not self.pinned:
            notes.append("not pinned")
        return "; ".join(notes) or "ok"

    def line(self) -> str:
        per = self.server_cpu_ms_per_request
        server = f"{self.server_cpu:4.0%} ({per:.2f} ms/req)" if per is not None else "?"
        vk = self.valkey_cpu_ms_per_request
        valkey = f"  Valkey CPU {self.valkey_cpu:4.0%} ({vk:.3f} ms/req)" if vk is not None else ""
        return (
            f"{self.label:34s} {self.rps:8.0f} rps  server CPU {server}{valkey}  "
            f"wrk CPU {self.generator_cpu:4.0%}  4xx/5xx {self.status_errors}  "
            f"socket errors {self.socket_errors}  (closed-loop p50 {self.p50_ms:.1f} ms, "
            f"p99 {self.p99_ms:.1f} ms)  {self.verdict()}"
        )

    def summary(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {
            "rps": round(self.rps, 1),
            "server_cpu_ms_per_request": self.server_cpu_ms_per_request,
            "valkey_cpu_ms_per_request": self.valkey_cpu_ms_per_request,
            "valkey_scripts_per_request": self.per_request(self.valkey_scripts),
            "valkey_calls_per_request": self.per_request(self.valkey_calls),
            "error_rate": round(self.error_rate, 5),
            "verdict": self.verdict(),
            "valid": self.valid,
        }


def parse(stdout: str) -> dict[str, int]:
    """Return the counts of the script's `WRK_JSON` line."""
    for line in stdout.splitlines():
        if line.startswith("WRK_JSON "):
            counts: dict[str, int] = json.loads(line.removeprefix("WRK_JSON "))
            return counts
    raise RuntimeError(f"wrk printed no WRK_JSON line:\n{stdout}")


def run_wrk(
    url: str,
    *,
    mode: str = "realistic",
    duration_s: float = 10.0,
    connections: int = 64,
    users: int = 10_000,
    seed: int = 0,
    server_pid: int | None = None,
    generator_core: int | None = None,
    wrk: str = "wrk",
    label: str = "",
) -> WrkRun:
    """Run wrk (one thread) against `url`; read its CPU time and the server's over the run."""
    check_loopback(url)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--timeout", "10s"]
    cmd += ["-s", str(SCRIPT), url, "--", mode, str(users), str(seed)]

    def pin() -> None:  # in the child, before exec: wrk's thread starts on its core
        if generator_core is not None:
            os.sched_setaffinity(0, {generator_core})

    cpu0 = servers.cpu_seconds(server_pid) if server_pid else None
    valkey = _ValkeyMeter(server_pid) if server_pid else None
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, preexec_fn=pin)
        # wait4 gives this one child's own CPU time: wrk's.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        server_cpu = None
        if server_pid and cpu0 is not None:
            server_cpu = (servers.cpu_seconds(server_pid) - cpu0) / wall
        valkey_used = valkey.read(wall) if valkey is not None else (None, None, None)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}: {stderr or stdout}")
    c = parse(stdout)
    duration = c["duration_us"] / 1e6
    return WrkRun(
        label=label or f"{mode} {url}",
        mode=mode,
        duration_s=duration,
        connections=connections,
        requests=c["requests"],
        status_errors=c["status"],
        socket_errors=c["connect"] + c["read"] + c["write"] + c["timeout"],
        p50_ms=c["p50_us"] / 1000,
        p99_ms=c["p99_us"] / 1000,
        generator_cpu=(usage.ru_utime + usage.ru_stime) / wall,
        server_cpu=server_cpu,
        pinned=generator_core is not None,
        valkey_cpu=valkey_used[0],
        valkey_scripts=valkey_used[1],
        valkey_calls=valkey_used[2],
    )


SCRIPTS = ("evalsha", "eval")


class _ValkeyMeter:
    """CPU and command counts of a server's embedded Valkey between its creation and `read`."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.url = servers.embedded_valkey_url(server_pid)
        self.cpu0 = servers.cpu_seconds(server_pid, valkey=True) if self.url else 0.0
        self.counts0 = self._counts()

    def _counts(self) -> tuple[int, int] | None:
        if self.url is None:
            return None
        import redis

        with redis.Redis.from_url(self.url) as r:
            commands: Any = r.info("commandstats")
        scripts = sum(int(commands.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in SCRIPTS)
        return scripts, sum(int(v["calls"]) for v in commands.values())

    def read(self, wall_s: float) -> tuple[float | None, int | None, int | None]:
        """(CPU share of a core, client commands, calls), less this meter's own INFO calls."""
        if self.url is None or self.counts0 is None:
            return None, None, None
        cpu = (servers.cpu_seconds(self.pid, valkey=True) - self.cpu0) / wall_s
        after = self._counts()
        assert after is not None
        # The first reading's INFO call is counted in the second's totals.
        return cpu, after[0] - self.counts0[0], after[1] - self.counts0[1] - 1


def prepare(url: str, mode: str, *, connections: int, wrk: str, warmup_s: float = 2.0) -> None:
    """Get a fresh server ready for a timed run of `mode`: the fences a location fix is tested
    against, then a warm-up (first requests pay for imports, caches and cold paths)."""
    if mode in ("realistic", "location"):
        load_fences(url, 200)
    if warmup_s > 0:
        run_wrk(url, mode=mode, duration_s=warmup_s, connections=connections, wrk=wrk, seed=9)


def measure(
    label: str,
    ctx: contextlib.AbstractContextManager[tuple[str, int]],
    mode: str,
    *,
    duration_s: float,
    connections: int,
    wrk: str,
    warmup_s: float,
) -> WrkRun:
    pair = cores()
    with ctx as (url, pid):
        if pair:
            pin_tree(pid, *pair)
        prepare(url, mode, connections=connections, wrk=wrk, warmup_s=warmup_s)
        return run_wrk(
            url,
            mode=mode,
            duration_s=duration_s,
            connections=connections,
            server_pid=pid,
            generator_core=pair[1] if pair else None,
            wrk=wrk,
            label=label,
        )


BARE = "bare aiohttp /v1/decide"
ONE = "refreshd 1 worker /v1/decide"
MIX = "refreshd 1 worker realistic mix"


def label_of(mode: str) -> str:
    """The label of a refreshd run of `mode` (the ratio's two runs have their own)."""
    return ONE if mode == "decide" else MIX if mode == "realistic" else f"refreshd 1 worker {mode}"


def capacity(
    *,
    duration_s: float = 10.0,
    connections: int = 64,
    warmup_s: float = 2.0,
    mixes: tuple[str, ...] = MODES,
    wrk: str = "wrk",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Bare aiohttp against refreshd (decide-only), and refreshd on the realistic mix, in one run.

    Each server is pinned to one core, wrk and Valkey to the other. The ratio is only given when
    both of its runs are valid (generator below GENERATOR_LIMIT, errors below ERROR_LIMIT).
    """
    pair = cores()
    log(
        f"== capacity with wrk ({duration_s:g} s, {connections} connections, server on core "
        f"{pair[0] if pair else '?'}, wrk and Valkey on core {pair[1] if pair else '?'}); "
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    plan: list[tuple[str, Any, str]] = []
    if "decide" in mixes:
        plan += [(BARE, servers.bare, "decide"), (ONE, lambda: servers.refreshd(1), "decide")]
    for mode in MODES[1:]:
        if mode in mixes:
            plan.append((label_of(mode), lambda: servers.refreshd(1), mode))
    runs: dict[str, WrkRun] = {}
    for label, make, mode in plan:
        runs[label] = measure(
            label,
            make(),
            mode,
            duration_s=duration_s,
            connections=connections,
            wrk=wrk,
            warmup_s=warmup_s,
        )
        log("   " + runs[label].line())
    out: dict[str, Any] = {k: v.summary() for k, v in runs.items()}
    out["loadavg_after"] = list(os.getloadavg())
    if BARE in runs and ONE in runs:
        bare, one = runs[BARE], runs[ONE]
        ratio = one.rps / bare.rps if bare.rps else float("nan")
        out["ratio_decide_1_worker_over_bare"] = ratio if bare.valid and one.valid else None
        shown = (
            f"{ratio:.2f}" if bare.valid and one.valid else f"{ratio:.2f} (NOT VALID: see above)"
        )
        log(f"   decide 1 worker / bare aiohttp (wrk, one core each; target ≥ 0.5): {shown}")
    log(f"   load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return out


def spread(
    workers: int,
    *,
    mode: str = "decide",
    duration_s: float = 10.0,
    connections: int = 64,
    warmup_s: float = 2.0,
    wrk: str = "wrk",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """`workers` workers, Valkey and wrk unpinned on every core: the capacity model's check.

    The model (docs/performance.md) adds up the CPU a request costs in every process —
    workers, Valkey and here the generator too — and divides the machine's cores by it. This
    run measures each share under one load and sets the rate the model predicts from them
    against the rate reached.
    """
    n_cores = len(os.sched_getaffinity(0))
    log(
        f"== {workers} workers, wrk and Valkey unpinned on {n_cores} cores ({mode}, "
        f"{duration_s:g} s, {connections} connections); load average before: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    with servers.refreshd(workers) as (url, pid):
        prepare(url, mode, connections=connections, wrk=wrk, warmup_s=warmup_s)
        run = run_wrk(
            url,
            mode=mode,
            duration_s=duration_s,
            connections=connections,
            server_pid=pid,
            wrk=wrk,
            label=f"refreshd {workers} workers {mode}",
        )
    log("   " + run.line())
    per = {
        "workers": run.server_cpu_ms_per_request,
        "valkey": run.valkey_cpu_ms_per_request,
        "wrk": run.generator_cpu * run.duration_s / run.requests * 1000 if run.requests else None,
    }
    total = sum(v for v in per.values() if v is not None)
    predicted = n_cores / total * 1000 if total else None
    log(
        "   CPU per request: "
        + ", ".join(f"{k} {v:.3f} ms" for k, v in per.items() if v is not None)
        + f"; the model's rate for {n_cores} full cores: "
        + (f"{predicted:.0f} rps, measured {run.rps:.0f} rps" if predicted else "?")
    )
    return {
        "run": run.summary(),
        "cores": n_cores,
        "cpu_ms_per_request": per,
        "predicted_rps": predicted,
        "measured_rps": run.rps,
    }
