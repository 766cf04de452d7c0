"""Flame graphs of one route under wrk load: where a worker's CPU goes, as an SVG and a table.

`python -m load flame --mode decide|location|events|realistic [--duration 12] [--out DIR]`
starts a fresh one-worker server (pinned like the capacity bench: server on one core, wrk and
Valkey on the other), warms it for 2 s, then samples it with py-spy at 200 Hz while wrk drives
it. py-spy pauses the process for each sample (a few µs): without pausing (`--nonblocking`)
about a third of the stacks came out torn, rooted at whatever frame was being read. py-spy
writes collapsed stacks; this module turns them into `flame-<mode>.svg` (one box per frame,
width = share of samples; hover for the figure) and prints the functions with the largest
inclusive and self shares. The SVG is drawn here rather
than by py-spy so the same samples give both the picture and the table.

Sampling a process needs ptrace rights (root, or `kernel.yama.ptrace_scope=0`).
"""

from __future__ import annotations

import argparse
import collections
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable
from pathlib import Path

from load import servers
from load.wrk import MODES, ROOT, cores, find_wrk, pin_tree, prepare, run_wrk

WIDTH, ROW, MIN_SHARE = 1200, 16, 0.002  # px, px, boxes narrower than 0.2 % are not drawn
_IDLE_POOL = "_worker (concurrent/futures/thread.py)"


def read_stacks(lines: Iterable[str]) -> dict[tuple[str, ...], int]:
    """Parse py-spy's raw (collapsed) output: `frame;frame;... count` per line."""
    stacks: dict[tuple[str, ...], int] = collections.Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        if frames and _name(frames[-1]) == _IDLE_POOL:
            continue  # a thread-pool worker blocked on its queue (py-spy takes some as busy)
        if frames and count.isdigit():
            stacks[tuple(frames)] += int(count)
    return stacks


_PREFIX = re.compile(r"^.*/site-packages/|^.*/lib/python3\.\d+/|^" + re.escape(f"{ROOT}/"))


def _name(frame: str) -> str:
    """`handle (/repo/refreshd/http/app.py:12)` → `handle (refreshd/http/app.py)`: lines
    merged, paths relative to the repository or to the library directory."""
    func, _, where = frame.partition(" (")
    path = _PREFIX.sub("", where.rsplit(":", 1)[0].rstrip(")"))
    return f"{func} ({path})" if path else func


def shares(stacks: dict[tuple[str, ...], int]) -> tuple[dict[str, float], dict[str, float]]:
    """Inclusive and self share of all samples per function (lines merged)."""
    total = sum(stacks.values()) or 1
    incl: dict[str, float] = collections.defaultdict(float)
    own: dict[str, float] = collections.defaultdict(float)
    for stack, n in stacks.items():
        names = [_name(f) for f in stack]
        for name in set(names):
            incl[name] += n / total
        if names:
            own[names[-1]] += n / total
    return incl, own


def _colour(name: str) -> str:
    hue = 20 if "refreshd/" in name or "intent/" in name or "geo/" in name else 200
    if "asyncio" in name:
        hue = 0
    shade = zlib.crc32(name.encode()) % 30
    return f"hsl({hue + shade},70%,{55 + shade % 15}%)" if hue else f"hsl(0,0%,{60 + shade}%)"


def svg(stacks: dict[tuple[str, ...], int], title: str) -> str:
    """An icicle-free flame graph (root at the bottom) of the stacks, as a standalone SVG."""
    tree: dict[str, object] = {}
    counts: dict[int, int] = collections.Counter()

    def add(node: dict[str, object], path: tuple[str, ...], n: int) -> None:
        for frame in path:
            child = node.setdefault(frame, {})
            assert isinstance(child, dict)
            counts[id(child)] += n
            node = child

    for stack, n in stacks.items():
        add(tree, tuple(_name(f) for f in stack), n)
    total = sum(stacks.values()) or 1
    boxes: list[tuple[float, int, float, str, int]] = []

    def walk(node: dict[str, object], x: float, depth: int) -> None:
        for name, child in sorted(node.items()):
            assert isinstance(child, dict)
            n = counts[id(child)]
            if n / total >= MIN_SHARE:
                boxes.append((x, depth, n / total, name, n))
                walk(child, x, depth + 1)
            x += n / total

    walk(tree, 0.0, 0)
    depth = max((b[1] for b in boxes), default=0) + 1
    height = (depth + 3) * ROW
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="monospace" font-size="11">',
        f'<rect width="100%" height="100%" fill="#fdfdf6"/>'
        f'<text x="6" y="14" font-size="13">{html.escape(title)} — {total} samples</text>',
    ]
    for x, d, w, name, n in boxes:
        px, pw, py = x * WIDTH, w * WIDTH, height - (d + 1) * ROW
        label = html.escape(name)
        chars = int(pw / 7)
        text = label if len(name) <= chars else html.escape(name[: max(chars - 2, 0)] + "..")
        out.append(
            f"<g><title>{label}: {w:.1%} ({n} samples)</title>"
            f'<rect x="{px:.1f}" y="{py}" width="{max(pw - 0.5, 0.5):.1f}" height="{ROW - 1}" '
            f'fill="{_colour(name)}"/>'
            + (f'<text x="{px + 2:.1f}" y="{py + 11}">{text}</text>' if chars >= 4 else "")
            + "</g>"
        )
    out.append("</svg>")
    return "\n".join(out)


def record(
    mode: str, *, duration_s: float, connections: int, wrk: str
) -> dict[tuple[str, ...], int]:
    """Sample a fresh one-worker server under wrk; return the collapsed stacks."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy (the test extra has it)")
    pair = cores()
    with servers.refreshd(1) as (url, pid), tempfile.TemporaryDirectory() as tmp:
        if pair:
            pin_tree(pid, *pair)
        prepare(url, mode, connections=connections, wrk=wrk)
        raw = Path(tmp) / "stacks.txt"
        cmd = [spy, "record", "-p", str(pid), "--subprocesses", "-r", "200"]
        cmd += ["-d", f"{duration_s:g}", "-f", "raw", "-o", str(raw)]
        sampler = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)  # py-spy attaches before the load starts
        run = run_wrk(
            url,
            mode=mode,
            duration_s=max(duration_s - 1, 1),
            connections=connections,
            server_pid=pid,
            generator_core=pair[1] if pair else None,
            wrk=wrk,
            label=f"refreshd 1 worker {mode}",
        )
        _, err = sampler.communicate(timeout=duration_s + 60)
        print(run.line())
        if sampler.returncode != 0 or not raw.exists():
            raise SystemExit(f"py-spy failed ({sampler.returncode}): {err.decode()[-500:]}")
        return read_stacks(raw.read_text().splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m load flame",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mode", choices=MODES, default="decide", help="wrk request mode")
    parser.add_argument("--duration", type=float, default=12.0, help="seconds sampled")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("load/results"), help="SVG directory")
    parser.add_argument("--top", type=int, default=25, help="functions listed (default 25)")
    args = parser.parse_args(argv)
    binary = find_wrk(install=True)
    if binary is None:
        print("no wrk: the flame graphs need it (.ci/wrk says how to install it)")
        return 1
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    stacks = record(args.mode, duration_s=args.duration, connections=args.connections, wrk=binary)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"flame-{args.mode}.svg"
    stamp = time.strftime("%Y-%m-%d")
    path.write_text(svg(stacks, f"refreshd 1 worker, wrk {args.mode}, {stamp}"))
    incl, own = shares(stacks)
    print(f"{'inclusive':>9} {'self':>6}  function")
    for name, share in sorted(incl.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"{share:9.1%} {own.get(name, 0):6.1%}  {name}")
    print("largest self shares:")
    for name, share in sorted(own.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"{share:9.1%}  {name}")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
