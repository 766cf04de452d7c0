"""`python -m load`: load tests and micro-benchmarks that print ratios measured in one run.

python -m load bench [--quick]            everything `make bench` runs
python -m load bench --compare REF        capacity of this tree against git REF's build (wrk)
python -m load wrk [--mix MODE]           capacity with wrk (servers pinned, generator CPU shown)
python -m load wrk --compare REF          the same, this tree against git REF's build, alternating
python -m load flame [--mode MODE]        py-spy flame graph (SVG) of one worker under wrk
python -m load memory [--users 200]       bytes per user in Valkey and a worker's cache, one day
python -m load run --url URL --rate R     one open-model run against a running service
python -m load ramp --url URL             find the throughput at the p99 SLO
python -m load workers [--rate 400]       CPU per decision, 1 against 2 workers at one rate
python -m load soak [--minutes 10]          steady load; memory of service and Valkey
python -m load shadow [--rate 400]        decide latency with a shadow model off and on
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from load import servers
from load import wrk as wrk_capacity
from load.bench_workers import run as workers_cpu
from load.mix import Mix, decide_only, load_fences
from load.openloop import run_open
from load.ramp import DEFAULT_SLO_MS, Ramp, ramp

RESULTS = Path(__file__).resolve().parent / "results"
MICRO = (
    "bench_geo",
    "bench_intent",
    "bench_scoring",
    "bench_triggers",
    "bench_dedupe",
    "bench_experiments",
    "bench_parity",
    "bench_monitor",
    "bench_console",
)


def log(msg: str) -> None:
    print(msg, flush=True)


def micro_benchmarks() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in MICRO:
        try:
            module = importlib.import_module(f"load.{name}")
        except ImportError:
            continue
        log(f"== micro-benchmark {name}")
        t0 = time.perf_counter()
        out[name] = module.run()
        log(f"   {json.dumps(out[name], default=str)[:400]}  ({time.perf_counter() - t0:.1f} s)")
    return out


def ramp_against(label: str, ctx: Any, mix: Mix, args: argparse.Namespace) -> Ramp:
    log(f"== {label}")
    with ctx as (url, pid):
        if mix.location > 0:
            load_fences(url, 200)
        return asyncio.run(
            ramp(
                url,
                mix.request,
                server_pid=pid,
                start_rps=args.start_rps,
                step_s=args.step_s,
                slo_ms=args.slo_ms,
                refine=args.refine,
                log=log,
            )
        )


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for label, r in results["load"].items():
        steps = sorted(r.get("steps", []), key=lambda s: s["target_rps"])
        ax.plot(
            [s["achieved_rps"] for s in steps],
            [s["p99_ms"] for s in steps],
            marker="o",
            label=label,
        )
    ax.axhline(
        results["slo_ms"], color="red", linestyle="--", label=f"SLO p99 {results['slo_ms']} ms"
    )
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_yscale("log")
    ax.set_title("refreshd: p99 latency vs load (open model, one run)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


NO_WRK = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! WARNING: wrk is not installed and could not be installed (.ci/wrk says how). The capacity
!! figures below fall back to the Python open-model generator's throughput at the SLO. That
!! generator fills a core itself at ~3 000 rps, so they are partly ITS ceiling, not the server's.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
"""


def capacity_section(args: argparse.Namespace) -> dict[str, Any] | None:
    """Capacity with wrk, or None (after a loud warning) when wrk cannot be had."""
    binary = wrk_capacity.find_wrk(install=True)
    if binary is None:
        log(NO_WRK)
        return None
    return wrk_capacity.capacity(
        duration_s=args.wrk_duration, connections=args.connections, wrk=binary, log=log
    )


def bench(args: argparse.Namespace) -> int:
    started = dt.datetime.now(dt.UTC)
    results: dict[str, Any] = {"started": started.isoformat(), "slo_ms": args.slo_ms, "load": {}}
    results["micro"] = {} if args.skip_micro else micro_benchmarks()
    results["capacity"] = capacity_section(args)
    ramps = {
        "bare aiohttp /v1/decide": (servers.bare(), decide_only()),
        "refreshd 1 worker /v1/decide": (servers.refreshd(1), decide_only()),
        "refreshd 2 workers /v1/decide": (servers.refreshd(2), decide_only()),
        "refreshd 1 worker mix": (servers.refreshd(1), Mix()),
    }
    for label, (ctx, mix) in ramps.items():
        results["load"][label] = ramp_against(label, ctx, mix, args).summary()
    mix_max = results["load"]["refreshd 1 worker mix"]["throughput_at_slo_rps"]
    if mix_max:
        rate = 0.7 * mix_max
        log(f"== refreshd 1 worker mix at 70 % of max ({rate:.0f} rps) for {args.hold_s} s")
        with servers.refreshd(1) as (url, _pid):
            load_fences(url, 200)
            held = asyncio.run(
                run_open(url, Mix(seed=1).request, rate=rate, duration_s=args.hold_s)
            )
        results["load"]["mix at 70 % of max"] = held.summary() | {"throughput_at_slo_rps": None}
    tput = {
        k: v["throughput_at_slo_rps"]
        for k, v in results["load"].items()
        if v.get("throughput_at_slo_rps") is not None
    }
    bare = tput["bare aiohttp /v1/decide"] or float("nan")
    one = tput["refreshd 1 worker /v1/decide"] or float("nan")
    ratios = {
        "decide 1 worker / bare aiohttp, Python generator (capacity: see wrk)": one / bare,
        "decide 2 workers / 1 worker (target ≥ 1.6)": tput["refreshd 2 workers /v1/decide"] / one,
    }
    held_p99 = results["load"].get("mix at 70 % of max", {}).get("p99_ms")
    results["workers_cpu"] = workers_cpu(
        rate=args.workers_rate, duration_s=args.workers_s, rounds=args.workers_rounds, log=log
    )
    results["ratios"] = ratios
    results["mix_p99_at_70pct_ms (target ≤ 10)"] = held_p99
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / started.strftime("%Y-%m-%dT%H%M%S")
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))
    plot(results, stem.with_suffix(".png"))
    log("\n== summary (all measured in this run)")
    cap = results["capacity"]
    if cap is None:
        log("  capacity: NO wrk, the Python generator's figures below stand in (see the warning)")
    else:
        for label in (wrk_capacity.BARE, wrk_capacity.ONE, wrk_capacity.MIX):
            run = cap[label]
            log(
                f"  capacity (wrk) {label:34s} {run['rps']:8.0f} rps, server CPU "
                f"{run['server_cpu']:.0%}, wrk CPU {run['generator_cpu']:.0%}: {run['verdict']}"
            )
        ratio = cap["ratio_decide_1_worker_over_bare"]
        shown = "not valid (see above)" if ratio is None else f"{ratio:.2f}"
        log(f"  capacity ratio decide 1 worker / bare aiohttp (wrk; target ≥ 0.5): {shown}")
        log("  open-model figures (Python generator; throughput at the SLO, for latency):")
    for label, value in tput.items():
        log(f"  {label:40s} {value:10.0f} rps at p99 ≤ {args.slo_ms} ms")
    for label, value in ratios.items():
        log(f"  {label:50s} {value:6.2f}")
    log(f"  mix p99 at 70 % of max: {held_p99} ms (target ≤ 10 ms)")
    wc = results["workers_cpu"]
    log(
        f"  CPU per decision at {wc['rate']:g} rps: 1 worker "
        f"{wc['cpu_ms_per_decision_1_worker']:.3f} ms, 2 workers "
        f"{wc['cpu_ms_per_decision_2_workers']:.3f} ms, 2 / 1 = {wc['ratio_2_over_1']:.2f}"
    )
    log(f"  written: {stem}.json, {stem}.png")
    return 0


def compare_command(args: argparse.Namespace, modes: tuple[str, ...]) -> int:
    from load.compare import compare

    binary = wrk_capacity.find_wrk(install=True)
    if binary is None:
        log("no wrk (see the note above): builds are compared with wrk only")
        return 1
    out = compare(
        args.compare,
        modes=modes,
        rounds=args.rounds,
        duration_s=args.duration,
        connections=args.connections,
        wrk=binary,
        log=log,
    )
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"compare-{dt.datetime.now(dt.UTC):%Y-%m-%dT%H%M%S}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    log(f"   written: {path}")
    return 0


def wrk_command(args: argparse.Namespace) -> int:
    if args.compare:
        return compare_command(args, (args.mix,))
    binary = wrk_capacity.find_wrk(install=True)
    if binary is None:
        log("no wrk (see the note above); `python -m load ramp` is the Python generator's fallback")
        return 1
    if args.workers > 1:
        spread = wrk_capacity.spread(
            args.workers,
            mode=args.mix,
            duration_s=args.duration,
            connections=args.connections,
            wrk=binary,
            log=log,
        )
        print(json.dumps(spread, indent=2, default=str))
        return 0
    if args.url:
        run = wrk_capacity.run_wrk(
            args.url,
            mode=args.mix,
            duration_s=args.duration,
            connections=args.connections,
            wrk=binary,
        )
        log(run.line())
        print(json.dumps(run.summary(), indent=2))
        return 0
    out = wrk_capacity.capacity(
        duration_s=args.duration,
        connections=args.connections,
        mixes=(args.mix,),
        wrk=binary,
        log=log,
    )
    print(json.dumps(out, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command")
    b = sub.add_parser("bench", help="micro-benchmarks + load comparisons in one run (make bench)")
    b.add_argument("--quick", action="store_true", help="short steps (for a smoke run)")
    b.add_argument("--skip-micro", action="store_true", help="only the HTTP load comparisons")
    b.add_argument("--wrk-duration", type=float, default=10.0, help="seconds per wrk run")
    w = sub.add_parser(
        "wrk",
        help="capacity with wrk: server pinned to one core, wrk and Valkey to the other",
    )
    w.add_argument(
        "--mix",
        choices=wrk_capacity.MODES,
        default="decide",
        help="decide: bare aiohttp against refreshd, decide-only (default); realistic: the "
        "mix; location, events: that route alone",
    )
    w.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    w.add_argument("--url", help="a running service instead (loopback; not pinned, no server CPU)")
    w.add_argument(
        "--workers",
        type=int,
        default=1,
        help="with 2 or more: that many workers, Valkey and wrk unpinned on all cores, each "
        "one's CPU per request, and the rate the capacity model predicts from them",
    )
    for p in (b, w):
        p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
        p.add_argument(
            "--compare",
            metavar="REF",
            help="measure this tree against git REF's build instead (A..B: commit B against A), "
            "alternating fresh servers (bench: decide and realistic)",
        )
        p.add_argument(
            "--rounds", type=int, default=3, help="with --compare: runs per build (default 3)"
        )
    f = sub.add_parser("flame", help="py-spy flame graph of one worker under wrk", add_help=False)
    f.add_argument("rest", nargs=argparse.REMAINDER)
    m = sub.add_parser(
        "memory", help="bytes per user in Valkey and a worker's cache after a day", add_help=False
    )
    m.add_argument("rest", nargs=argparse.REMAINDER)
    r = sub.add_parser("run", help="one open-model run against a running service (loopback only)")
    r.add_argument("--url", required=True)
    r.add_argument("--rate", type=float, required=True, help="requests per second")
    r.add_argument("--duration", type=float, default=10.0, help="seconds")
    r.add_argument("--decide-only", action="store_true")
    g = sub.add_parser("ramp", help="step the rate up until p99 breaks the SLO (loopback only)")
    g.add_argument("--url", required=True)
    g.add_argument("--decide-only", action="store_true")
    for p in (b, g):
        p.add_argument("--slo-ms", type=float, default=DEFAULT_SLO_MS)
        p.add_argument("--start-rps", type=float, default=200.0)
        p.add_argument("--step-s", type=float, default=4.0)
        p.add_argument(
            "--refine",
            type=int,
            default=3,
            help="bisection steps between the last passing and first failing rate (default 3)",
        )
    b.add_argument("--hold-s", type=float, default=10.0)
    c = sub.add_parser("workers", help="CPU per decision, 1 against 2 workers at the same rate")
    for p, rate, seconds, rounds in (
        (b, "--workers-rate", "--workers-s", "--workers-rounds"),
        (c, "--rate", "--duration", "--rounds"),
    ):
        p.add_argument(
            rate,
            type=float,
            default=400.0,
            help="decide-only requests per second, well below capacity (default 400)",
        )
        p.add_argument(seconds, type=float, default=10.0, help="seconds per run (default 10)")
        p.add_argument(rounds, type=int, default=2, help="1/2-worker pairs (default 2)")
    k = sub.add_parser(
        "soak", help="hold a steady load for minutes; print service and Valkey memory"
    )
    k.add_argument("--rate", type=float, default=300.0, help="requests per second (default 300)")
    k.add_argument("--minutes", type=float, default=10.0)
    k.add_argument("--interval-s", type=float, default=60.0, help="seconds per sample")
    k.add_argument(
        "--log-maxlen",
        type=int,
        default=5_000,
        help="stream cap passed to the service, per shard of each log (16 shards): small enough "
        "that the streams reach it within the first minutes, so memory can level off",
    )
    k.add_argument("--users", type=int, default=10_000, help="distinct users (default 10 000)")
    k.add_argument(
        "--prefill",
        action="store_true",
        help="first fill every user's recent-events window to its cap with wrk, so per-user "
        "state is at its bound when the soak starts",
    )
    k.add_argument(
        "--share",
        type=float,
        help="instead of --rate: this share of the realistic mix's capacity, measured with wrk "
        "against the same server just before the soak (after --prefill)",
    )
    h = sub.add_parser("shadow", help="decide latency with a shadow (challenger) model off and on")
    h.add_argument("--rate", type=float, default=400.0, help="decisions per second (default 400)")
    h.add_argument("--duration", type=float, default=10.0, help="seconds per phase (default 10)")
    h.add_argument("--rounds", type=int, default=2, help="off/on pairs (default 2)")
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["flame"]:
        from load.flame import main as flame

        return flame(argv[1:])
    if argv[:1] == ["memory"]:
        from load.memory import main as memory

        return memory(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "shadow":
        from load.bench_shadow import run as shadow_bench

        shadowed = shadow_bench(
            rate=args.rate, duration_s=args.duration, rounds=args.rounds, log=log
        )
        print(json.dumps({k: v for k, v in shadowed.items() if k not in ("off", "on")}, indent=2))
        return 0
    if args.command == "workers":
        cpu = workers_cpu(rate=args.rate, duration_s=args.duration, rounds=args.rounds, log=log)
        print(json.dumps({k: v for k, v in cpu.items() if k != "runs"}, indent=2))
        return 0
    if args.command == "wrk":
        return wrk_command(args)
    if args.command == "soak":
        from load.soak import soak

        soaked = soak(
            rate=args.rate,
            minutes=args.minutes,
            interval_s=args.interval_s,
            log_maxlen=args.log_maxlen,
            users=args.users,
            fill=args.prefill,
            share=args.share,
            log=log,
        )
        print(json.dumps({k: v for k, v in soaked.items() if k != "samples"}, indent=2))
        return 0
    if args.command in (None, "bench"):
        if args.command is None:
            args = parser.parse_args(["bench", *(argv or [])])
        if args.compare:
            args.duration = args.wrk_duration
            return compare_command(args, ("decide", "realistic"))
        if args.quick:
            args.step_s, args.hold_s, args.wrk_duration = 1.5, 3.0, 3.0
            args.workers_s, args.workers_rounds = 3.0, 1
        return bench(args)
    mix = decide_only() if args.decide_only else Mix()
    if args.command == "run":
        res = asyncio.run(run_open(args.url, mix.request, rate=args.rate, duration_s=args.duration))
        print(json.dumps(res.summary(), indent=2))
        return 0
    out = asyncio.run(
        ramp(
            args.url,
            mix.request,
            server_pid=None,
            start_rps=args.start_rps,
            step_s=args.step_s,
            slo_ms=args.slo_ms,
            refine=args.refine,
        )
    )
    print(json.dumps(out.summary(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
