"""Command line: `refreshd serve` (and `python -m refreshd`)."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from refreshd.settings import Settings, SettingsError

if TYPE_CHECKING:
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
    replay = sub.add_parser(
        "replay",
        help="re-run a window of logged decisions, or try a candidate model or threshold on it",
        description="Replay the decisions with since <= ts < until (epoch ms; at most "
        "10000) with the model, policy and configuration of their time, and report how many "
        "reproduce. With --model or --threshold, also report what the candidate flips and its "
        "estimated click change (from the exploration decisions). Prints the JSON report; "
        "--out DIR also writes report.json, report.md and replay.png. The store is found as "
        "for `refreshd train`.",
    )
    replay.add_argument("--since", type=int, required=True, help="window start, epoch ms")
    replay.add_argument("--until", type=int, required=True, help="window end, epoch ms")
    replay.add_argument("--model", help="candidate model version (from GET /v1/models)")
    replay.add_argument("--threshold", type=float, help="candidate intent threshold in [0, 1]")
    replay.add_argument("--out", type=Path, help="write the report files into this directory")
    replay.add_argument("--data-dir", type=Path, help="embedded Valkey data (default ./var)")
    replay.add_argument("--redis-url", help="use this Redis/Valkey")
    return parser


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) binds only the loopback interface."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost: it may resolve anywhere


def _with_store(settings: Settings, job: Callable[[Store], Awaitable[int]]) -> int:
    """Run `job` against the configured store, or the embedded Valkey in DATA_DIR."""
    import asyncio

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
            return await job(store)
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


def _now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000


def _train(settings: Settings, force: bool) -> int:
    import msgspec

    from refreshd.core.errors import RefreshdError
    from refreshd.live.registry import ModelRegistry
    from refreshd.live.training import retrain

    async def job(store: Store) -> int:
        registry = ModelRegistry()
        try:
            await registry.refresh(store)
            print("training from the store's logs ...", file=sys.stderr)
            report = await retrain(store, registry, now_ms=_now_ms(), force=force, source="cli")
        except RefreshdError as exc:
            print(f"refreshd train: {exc.message}", file=sys.stderr)
            return 1
        print(msgspec.json.format(msgspec.json.encode(report)).decode())
        return 0

    return _with_store(settings, job)


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    import msgspec

    from refreshd.core.errors import RefreshdError, StoreUnavailable
    from refreshd.live.replay import run_replay
    from refreshd.live.replayfiles import write_report

    async def job(store: Store) -> int:
        try:
            report = await run_replay(store, settings, since=args.since, until=args.until,
                                      now_ms=_now_ms(), model=args.model,
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

    return _with_store(settings, job)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"refreshd: {exc}", file=sys.stderr)
        return 2
    if args.command in ("train", "replay"):
        changes_t: dict[str, object] = {}
        if args.data_dir:
            changes_t["data_dir"] = args.data_dir
        if args.redis_url:
            changes_t["redis_url"] = args.redis_url
        settings = settings.replace(**changes_t)
        if args.command == "train":
            return _train(settings, args.force)
        return _replay(settings, args)
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
