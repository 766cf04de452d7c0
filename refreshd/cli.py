"""Command line: `refreshd serve`, `train` and `parity` (and `python -m refreshd`)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import ipaddress
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from refreshd.settings import Settings, SettingsError

if TYPE_CHECKING:
    from intent.train import Fitter
    from refreshd.store.protocol import Store


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refreshd",
        description="refreshd: decides when a mobile homepage should refresh, and dedupes it. "
        "Settings come from REFRESHD_* environment variables (see README); flags override them.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the HTTP service",
        description="Run the HTTP service. Without REFRESHD_REDIS_URL an embedded Valkey "
        "(AOF on) is started with its data under DATA_DIR/valkey.",
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1, REFRESHD_HOST)")
    serve.add_argument("--port", type=int, help="port to bind (default 8080, REFRESHD_PORT)")
    serve.add_argument(
        "--workers", type=int, help="worker processes sharing the port (REFRESHD_WORKERS)"
    )
    serve.add_argument(
        "--data-dir", type=Path, help="where the embedded Valkey keeps data (default ./var)"
    )
    serve.add_argument("--redis-url", help="use this Redis/Valkey instead of the embedded one")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve on a non-loopback address without REFRESHD_ADMIN_TOKEN: anyone who reaches "
        "the port can change rules, fences, experiments and the policy",
    )
    train = sub.add_parser(
        "train",
        help="retrain the intent model from the store's logs now",
        description="Train on the newest decision and event logs in the store and publish the "
        "model unless the current one is as good on the same holdout (--force publishes anyway). "
        "Uses REFRESHD_REDIS_URL / REFRESHD_REDIS_CLUSTER, else the embedded Valkey in DATA_DIR "
        "(stop a running `refreshd serve` on that data dir first, or use POST /v1/models/train).",
    )
    train.add_argument("--force", action="store_true", help="publish even if not better")
    train.add_argument("--data-dir", type=Path, help="embedded Valkey data (default ./var)")
    train.add_argument("--redis-url", help="use this Redis/Valkey")
    train.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="grow the trees on the Dask cluster whose scheduler is at ADDRESS "
        "(tcp://host:8786), or on N worker threads started here with local:N (local: one per "
        "core); needs pip install 'refreshd[distributed]'",
    )
    train.add_argument(
        "--dask-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the scheduler and a first worker (default 10)",
    )
    parity = sub.add_parser(
        "parity",
        help="check the logged feature vectors against a point-in-time rebuild",
        description="Rebuild the features of every decision with SINCE <= ts < UNTIL from the "
        "event log, as the service saw it, and compare them value by value with the vectors "
        "the decisions logged. Prints the report as JSON (or writes parity.json and parity.md "
        "to --out). Exit 0: every row matches; 1: some differ; 2: bad arguments; 3: the store "
        "failed. Times are ISO-8601 (no offset: UTC) or epoch milliseconds.",
    )
    parity.add_argument("--since", type=parse_time, required=True, help="window start")
    parity.add_argument("--until", type=parse_time, required=True, help="window end (excluded)")
    parity.add_argument("--out", type=Path, help="write parity.json and parity.md here")
    parity.add_argument("--data-dir", type=Path, help="embedded Valkey data (default ./var)")
    parity.add_argument("--redis-url", help="use this Redis/Valkey")
    replay = sub.add_parser(
        "replay",
        help="re-run a window of logged decisions, or try a candidate model or threshold on it",
        description="Replay the decisions with SINCE <= ts < UNTIL (at most 10000; "
        "ISO-8601, no offset meaning UTC, or epoch milliseconds) with the model, policy and "
        "configuration of their time, and report how many "
        "reproduce. With --model or --threshold, also report what the candidate flips and its "
        "estimated click change (from the exploration decisions). Prints the JSON report; "
        "--out DIR also writes report.json, report.md and replay.png. The store is found as "
        "for `refreshd train`.",
    )
    replay.add_argument("--since", type=parse_time, required=True, help="window start")
    replay.add_argument("--until", type=parse_time, required=True, help="window end (excluded)")
    replay.add_argument("--model", help="candidate model version (from GET /v1/models)")
    replay.add_argument("--threshold", type=float, help="candidate intent threshold in [0, 1]")
    replay.add_argument("--out", type=Path, help="write the report files into this directory")
    replay.add_argument("--data-dir", type=Path, help="embedded Valkey data (default ./var)")
    replay.add_argument("--redis-url", help="use this Redis/Valkey")
    return parser


def parse_time(text: str) -> int:
    """Return epoch milliseconds from epoch ms digits or an ISO-8601 time (UTC if no offset)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither ISO-8601 (2024-05-01T12:00:00Z) nor epoch milliseconds"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) binds only the loopback interface."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost: it may resolve anywhere


def _with_store(
    settings: Settings, body: Callable[[Store], Awaitable[int]], *, command: str, failed: int
) -> int:
    """Run `body` against the configured store (else the embedded Valkey in DATA_DIR); a
    domain error (the store unavailable, too little data) is printed and exits `failed`."""
    import asyncio

    from refreshd.core.errors import RefreshdError
    from refreshd.store.embedded import EmbeddedValkey
    from refreshd.store.redis import RedisStore

    async def run(url: str | None) -> int:
        store = RedisStore(
            url,
            cluster_nodes=settings.redis_cluster,
            timeout_s=10.0,
            ack_replicas=settings.ack_replicas,
            ack_timeout_ms=settings.ack_timeout_ms,
        )
        try:
            return await body(store)
        except RefreshdError as exc:
            print(f"refreshd {command}: {exc.message}", file=sys.stderr)
            return failed
        finally:
            await store.close()

    if settings.redis_url or settings.redis_cluster:
        return asyncio.run(run(settings.redis_url))
    embedded = EmbeddedValkey(settings.data_dir, appendfsync=settings.appendfsync)
    url = embedded.start()
    try:
        return asyncio.run(run(url))
    finally:
        embedded.stop()


@contextlib.contextmanager
def _report_stream(dask: str | None) -> Iterator[TextIO]:
    """Yield the stream the report goes to; with Dask, fd 1 is stderr until the report is out.

    LightGBM's network code prints its set-up (ports, ranks) with printf from worker threads
    that never saw `verbose=-1`; with `--dask local:N` those threads are in this process, and
    stdout must carry the JSON report alone.
    """
    if dask is None:
        yield sys.stdout
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with os.fdopen(os.dup(saved), "w") as report:
            yield report
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _train(settings: Settings, force: bool, dask: str | None, dask_timeout_s: float) -> int:
    import time

    import msgspec

    from intent.train import fit_here
    from refreshd.live.registry import ModelRegistry
    from refreshd.live.training import retrain

    with contextlib.ExitStack() as stack:
        out = stack.enter_context(_report_stream(dask))
        fitter: Fitter = fit_here
        if dask is not None:
            from intent.distributed import DaskFitter, DaskUnavailable, connect

            try:
                fitter = DaskFitter(stack.enter_context(connect(dask, timeout_s=dask_timeout_s)))
            except DaskUnavailable as exc:
                print(f"refreshd train: {exc}", file=sys.stderr)
                return 2

        async def body(store: Store) -> int:
            registry = ModelRegistry()
            await registry.refresh(store)
            print("training from the store's logs ...", file=sys.stderr)
            report = await retrain(store, registry, now_ms=time.time_ns() // 1_000_000,
                                   force=force, source="cli", fitter=fitter)  # fmt: skip
            print(msgspec.json.format(msgspec.json.encode(report)).decode(), file=out)
            return 0

        return _with_store(settings, body, command="train", failed=1)


def _parity(settings: Settings, since_ms: int, until_ms: int, out: Path | None) -> int:
    import msgspec

    from intent.parity import to_markdown
    from refreshd.live.parity import parity_report

    async def body(store: Store) -> int:
        report = await parity_report(store, since_ms=since_ms, until_ms=until_ms)
        text = msgspec.json.format(msgspec.json.encode(report)).decode()
        if out is None:
            print(text)
        else:
            out.mkdir(parents=True, exist_ok=True)
            (out / "parity.json").write_text(text + "\n")
            (out / "parity.md").write_text(to_markdown(report))
            print(f"wrote {out / 'parity.json'} and {out / 'parity.md'}", file=sys.stderr)
        if report.decisions == 0:
            print("refreshd parity: no decisions in the window", file=sys.stderr)
        return 0 if report.ok else 1

    # 3, not 1: a job gating on parity must tell "the features differ" from "no store".
    return _with_store(settings, body, command="parity", failed=3)


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    import time

    import msgspec

    from refreshd.core.errors import RefreshdError, StoreUnavailable
    from refreshd.live.replay import run_replay
    from refreshd.live.replayfiles import write_report

    async def body(store: Store) -> int:
        try:
            report = await run_replay(store, settings, since=args.since, until=args.until,
                                      now_ms=time.time_ns() // 1_000_000, model=args.model,
                                      threshold=args.threshold)  # fmt: skip
        except RefreshdError as exc:
            where = f" ({exc.field})" if exc.field else ""
            print(f"refreshd replay: {exc.message}{where}", file=sys.stderr)
            return 1 if isinstance(exc, StoreUnavailable) else 2  # 2: a bad argument
        print(msgspec.json.format(msgspec.json.encode(report)).decode())
        if args.out is not None:
            for path in write_report(report, args.out):
                print(f"wrote {path}", file=sys.stderr)
        return 0

    return _with_store(settings, body, command="replay", failed=1)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"refreshd: {exc}", file=sys.stderr)
        return 2
    if args.command in ("train", "parity", "replay"):
        changes_t: dict[str, object] = {}
        if args.data_dir:
            changes_t["data_dir"] = args.data_dir
        if args.redis_url:
            changes_t["redis_url"] = args.redis_url
        if args.command == "train":
            if args.dask_timeout <= 0:
                print("refreshd: --dask-timeout must be positive", file=sys.stderr)
                return 2
            return _train(settings.replace(**changes_t), args.force, args.dask, args.dask_timeout)
        if args.command == "replay":
            return _replay(settings.replace(**changes_t), args)
        if args.since >= args.until:
            print(f"refreshd parity: --since ({args.since}) must be before --until "
                  f"({args.until}), in epoch ms", file=sys.stderr)  # fmt: skip
            return 2
        return _parity(settings.replace(**changes_t), args.since, args.until, args.out)
    if args.command == "serve":
        changes: dict[str, object] = {}
        if args.host:
            changes["host"] = args.host
        host = str(changes.get("host", settings.host))
        if not settings.admin_token and not is_loopback(host):
            if not args.insecure_no_auth:
                print(
                    f"refreshd: refusing to serve on {host} without an admin token: set "
                    "REFRESHD_ADMIN_TOKEN (configuration routes then need 'Authorization: "
                    "Bearer <token>'), bind a loopback address (--host 127.0.0.1), or pass "
                    "--insecure-no-auth to serve it open anyway",
                    file=sys.stderr,
                )
                return 2
            print(
                f"refreshd: WARNING: serving on {host} with no admin token "
                "(--insecure-no-auth): configuration routes are open to anyone",
                file=sys.stderr,
            )
        if args.port is not None:
            if not 0 <= args.port <= 65535:
                print("refreshd: --port must be in [0, 65535]", file=sys.stderr)
                return 2
            changes["port"] = args.port
        if args.workers is not None:
            if not 1 <= args.workers <= 64:
                print("refreshd: --workers must be in [1, 64]", file=sys.stderr)
                return 2
            changes["workers"] = args.workers
        if args.data_dir:
            changes["data_dir"] = args.data_dir
        if args.redis_url:
            changes["redis_url"] = args.redis_url
        settings = settings.replace(**changes)
        from refreshd.server import serve

        return serve(settings)
    return 2  # pragma: no cover - argparse enforces the sub-command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
