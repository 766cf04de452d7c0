"""`refresh-sim run --scenario FILE ...` and `refresh-sim sweep --scenario FILE --param k=v1,v2`."""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path

from client_sim.progress import Progress
from client_sim.scenario import ScenarioError, load_scenario

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refresh-sim",
        description="Simulate devices against refreshd and compare each policy with its "
        "baseline on the same users.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a scenario and write report.md, report.json, PNGs")
    run.add_argument("--scenario", required=True, type=Path, help="scenario TOML file")
    run.add_argument("--users", type=int, default=1000, help="evaluation users (default 1000)")
    run.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    run.add_argument("--mode", choices=("fast", "http"), default="fast")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", type=Path, default=Path("sim-report"), help="output directory")
    run.add_argument("--url", help="http mode: a running refreshd on loopback (default: start one)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--bounds",
        action="store_true",
        help="fast mode: also run diagnostic arms that read the ground truth (the visit's prior "
        "and actual intent, the list's true staleness) to show what such knowledge would be "
        "worth next to the learned policy; never a shippable policy",
    )
    run.add_argument(
        "--experiment",
        type=Path,
        metavar="FILE.json",
        help="also run this threshold experiment (a PUT /v1/experiments/{id} body, status "
        "running) and print its report next to the simulator's paired comparison of its arms",
    )
    run.add_argument(
        "--experiment-id", help="the experiment's id (default: the file name without .json)"
    )
    sweep = sub.add_parser(
        "sweep",
        help="run a scenario at several values of world parameters and report the time "
        "headline, the oracles and the oracle gap captured at each (sweep.json/.md/.png)",
    )
    sweep.add_argument("--scenario", required=True, type=Path, help="scenario TOML file")
    sweep.add_argument(
        "--param",
        action="append",
        required=True,
        metavar="KEY=V1,V2,...",
        help="a dotted scenario key and its values, e.g. launch.informativeness=0,0.25,0.5 "
        "(repeat for a grid)",
    )
    sweep.add_argument("--users", type=int, default=1000, help="evaluation users (default 1000)")
    sweep.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    sweep.add_argument("--seed", type=int, default=0)
    sweep.add_argument("--out", type=Path, default=Path("sim-sweep"), help="output directory")
    return parser


def _sweep(args: argparse.Namespace) -> int:
    from client_sim.sweep import parse_param, run_sweep

    try:
        params = [parse_param(p) for p in args.param]
        rows = run_sweep(
            tomllib.loads(args.scenario.read_text()),
            params,
            users=args.users,
            hours=args.hours,
            seed=args.seed,
            out=args.out,
            progress=lambda s: print(f"refresh-sim sweep: {s}", file=sys.stderr),
        )
    except (OSError, ValueError, ScenarioError) as exc:  # TOMLDecodeError is a ValueError
        print(f"refresh-sim: {exc}", file=sys.stderr)
        return 2
    print(f"refresh-sim sweep: {len(rows)} runs; report in {args.out}/", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sweep":
        return _sweep(args)
    try:
        sc = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"refresh-sim: {exc}", file=sys.stderr)
        return 2
    if args.users < 1 or not 0 < args.hours <= 24 * 7:
        print("refresh-sim: --users must be ≥ 1 and --hours in (0, 168]", file=sys.stderr)
        return 2
    if args.seed < 0:
        print("refresh-sim: --seed must be ≥ 0", file=sys.stderr)
        return 2
    if args.bounds and args.mode != "fast":
        print("refresh-sim: --bounds needs --mode fast (it reads the simulated ground truth)",
              file=sys.stderr)  # fmt: skip
        return 2
    experiment = None
    if args.experiment is not None:
        from client_sim.experiment import ExperimentFileError, load_experiment

        try:
            experiment = load_experiment(args.experiment, args.experiment_id)
        except ExperimentFileError as exc:
            print(f"refresh-sim: {exc}", file=sys.stderr)
            return 2
    elif args.experiment_id is not None:
        print("refresh-sim: --experiment-id needs --experiment", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    if args.mode == "http":
        from client_sim.http_mode import run_http_cli

        return run_http_cli(sc, args, experiment)
    from client_sim.fast import run_fast
    from client_sim.report import write_report

    prog = Progress(1, enabled=not args.quiet)
    result = run_fast(
        sc,
        users=args.users,
        hours=args.hours,
        seed=args.seed,
        progress=prog,
        bounds=args.bounds,
        experiment=experiment,
    )
    prog.set_stage("report")
    metrics = write_report(result, args.out)
    prog.close()
    elapsed = time.perf_counter() - t_start
    rate = args.users * args.hours / elapsed
    print(f"refresh-sim: {args.users} users × {args.hours:g} h in {elapsed:.1f} s "
          f"({rate:,.0f} users·hours/s); report in {args.out}/", file=sys.stderr)  # fmt: skip
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in prog.timings.items())
    print(f"refresh-sim: stages: {stages}", file=sys.stderr)
    head = metrics.get("time.refresh_requests_per_user", {})
    print(f"time: refresh requests {head.get('relative_change')} at the reference click PV "
          f"(CI {head.get('ci')})", file=sys.stderr)  # fmt: skip
    if result.experiment is not None:
        from client_sim.experiment import experiment_text

        print(experiment_text(result.experiment), end="")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
