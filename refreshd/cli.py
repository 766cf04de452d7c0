"""Command line: `refreshd serve` (and `python -m refreshd`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from refreshd.settings import Settings, SettingsError


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"refreshd: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        changes: dict[str, object] = {}
        if args.host:
            changes["host"] = args.host
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
        from refreshd.server import serve

        return serve(settings.replace(**changes))
    return 2  # pragma: no cover - argparse enforces the sub-command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
