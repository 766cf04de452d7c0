"""Offline intent tools: generate a synthetic log, train a model from JSONL logs.

The one module of `intent/` that touches files: everything it calls is pure.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from intent.dataset import build_dataset
from intent.train import train
from synth.eventlog import generate

__all__ = ["main"]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    encoder = msgspec.json.Encoder()
    with path.open("wb") as f:
        for row in rows:
            f.write(encoder.encode(row))
            f.write(b"\n")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    decoder = msgspec.json.Decoder(dict[str, Any])
    with path.open("rb") as f:
        return [decoder.decode(line) for line in f if line.strip()]


def _generate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = generate(users=args.users, days=args.days, seed=args.seed)
    _write_jsonl(out / "decisions.jsonl", log.decisions)
    _write_jsonl(out / "events.jsonl", log.events)
    print(f"wrote {len(log.decisions)} decisions and {len(log.events)} events to {out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    # Wall-clock timing is progress output for a person, never an input to the pipeline.
    started = time.perf_counter()
    decisions = _read_jsonl(Path(args.decisions))
    events = _read_jsonl(Path(args.events))
    print(f"read {len(decisions)} decisions, {len(events)} events")
    dataset = build_dataset(decisions, events)
    print(
        f"built {len(dataset)} point-in-time rows ({int(dataset.y.sum())} positive) "
        f"in {time.perf_counter() - started:.1f} s"
    )
    result = train(
        dataset,
        valid_fraction=args.valid_fraction,
        seed=args.seed,
        num_boost_round=args.rounds,
        early_stopping_rounds=args.early_stopping,
    )
    m = result.metrics
    print(
        f"holdout: AUC {m['auc']:.4f}  logloss {m['logloss']:.4f}  rows {m['rows']}  "
        f"positives {m['positives']}  best iteration {result.best_iteration}"
    )
    print("calibration (bin: count, mean predicted, observed rate):")
    for b in m["calibration"]:
        if b["count"]:
            print(
                f"  [{b['lo']:.1f}, {b['hi']:.1f}): {b['count']:6d}  "
                f"{b['mean_predicted']:.3f}  {b['observed_rate']:.3f}"
            )
    Path(args.out).write_text(result.model_text)
    report = {
        "features_version": result.features_version,
        "feature_names": list(result.feature_names),
        "best_iteration": result.best_iteration,
        "metrics": m,
    }
    if args.report:
        Path(args.report).write_bytes(msgspec.json.format(msgspec.json.encode(report)))
    print(f"model written to {args.out} in {time.perf_counter() - started:.1f} s")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m intent.cli",
        description="Offline intent-model tools: synthetic logs and training.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser(
        "generate",
        help="write a seeded synthetic log (decisions.jsonl, events.jsonl)",
        description="Write DIR/decisions.jsonl and DIR/events.jsonl from the synthetic world.",
    )
    g.add_argument("--out", required=True, metavar="DIR", help="output directory")
    g.add_argument("--users", type=int, default=200, help="number of users (default 200)")
    g.add_argument("--days", type=int, default=3, help="days simulated (default 3)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.set_defaults(func=_generate)
    t = sub.add_parser(
        "train",
        help="train a model from JSONL logs and report holdout metrics",
        description=(
            "Build point-in-time rows from the decision and event logs, train LightGBM with "
            "early stopping on the latest rows (time-based holdout), write the model text and "
            "a JSON report (AUC, logloss, calibration table)."
        ),
    )
    t.add_argument("--decisions", required=True, metavar="FILE", help="decisions JSONL")
    t.add_argument("--events", required=True, metavar="FILE", help="events JSONL")
    t.add_argument("--out", required=True, metavar="FILE", help="model text output")
    t.add_argument("--report", metavar="FILE", help="JSON report output")
    t.add_argument("--valid-fraction", type=float, default=0.2, help="holdout share (0.2)")
    t.add_argument("--rounds", type=int, default=500, help="max boosting rounds (500)")
    t.add_argument("--early-stopping", type=int, default=30, help="patience in rounds (30)")
    t.add_argument("--seed", type=int, default=0, help="LightGBM seed (default 0)")
    t.set_defaults(func=_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the offline intent command given by argv; return the exit status."""
    args = _parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
