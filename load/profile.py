"""Profile the service under the realistic mix with pyinstrument; print where time goes.

python -m load.profile [--rate 300] [--seconds 20] [--out load/results/profile.txt]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from load.mix import Mix, decide_only, load_fences
from load.openloop import run_open
from load.servers import free_port, wait_ready


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m load.profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rate", type=float, default=300.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to load")
    parser.add_argument("--out", type=Path, default=Path("load/results/profile.txt"))
    parser.add_argument("--decide-only", action="store_true", help="only /v1/decide requests")
    args = parser.parse_args(argv)
    port = free_port()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="refreshd-profile-") as data:
        cmd = [
            sys.executable,
            "-m",
            "pyinstrument",
            "-o",
            str(args.out),
            "-m",
            "refreshd",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            data,
        ]
        proc = subprocess.Popen(cmd, env={**os.environ, "REFRESHD_LOG_LEVEL": "WARNING"})
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(f"{base}/readyz", proc, timeout_s=120)
            load_fences(base, 200)
            res = asyncio.run(
                run_open(
                    base,
                    (decide_only(seed=5) if args.decide_only else Mix(seed=5)).request,
                    rate=args.rate,
                    duration_s=args.seconds,
                )
            )
            print(res.summary())
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    text = args.out.read_text()
    print("\n".join(text.splitlines()[:80]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
