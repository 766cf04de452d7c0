"""Two builds side by side: this working tree against a git ref, with wrk, in one run.

`python -m load wrk --compare REF` (or `python -m load bench --compare REF`; `A..B` measures
commit B against commit A) unpacks REF with
`git archive` into a temporary directory (the working tree and its git state are not touched)
and measures both builds with the same wrk runs as the capacity bench: a fresh server pinned
to one core, wrk and Valkey on the other, a 2 s warm-up, then the timed run. Builds alternate
ABBA… over the rounds so a drift of the machine's load falls on both; the medians and their
ratio are printed. A ratio is the figure to quote: absolute rates move with the machine.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from load import servers
from load.wrk import ROOT, WrkRun, measure


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def resolve(ref: str) -> str:
    """The commit `ref` names (a clear error when it names none)."""
    try:
        return _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"--compare {ref!r}: not a commit of this repository") from None


def unpack(commit: str, into: Path) -> None:
    """Write the files of `commit` under `into` (no checkout, no worktree)."""
    with subprocess.Popen(
        ["git", "-C", str(ROOT), "archive", commit], stdout=subprocess.PIPE
    ) as archive:
        subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    if archive.returncode != 0:
        raise RuntimeError(f"git archive {commit} failed")


def describe_here() -> str:
    """This tree's commit, and whether tracked files changed since."""
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return _git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else "")


def _summary(runs: list[WrkRun]) -> dict[str, Any]:
    cpu = [r.server_cpu_ms_per_request for r in runs if r.server_cpu_ms_per_request is not None]
    return {
        "runs": [r.summary() for r in runs],
        "rps": [round(r.rps) for r in runs],
        "median_rps": statistics.median(r.rps for r in runs),
        "median_cpu_ms_per_request": statistics.median(cpu) if cpu else None,
        "valid": all(r.valid for r in runs),
    }


def compare(
    ref: str,
    *,
    modes: tuple[str, ...] = ("decide",),
    rounds: int = 3,
    duration_s: float = 10.0,
    connections: int = 64,
    warmup_s: float = 2.0,
    wrk: str = "wrk",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure REF's build and this tree's, alternating; return per-mode medians and ratios.

    `ref` may be a range `A..B`: then B's build is measured against A's (both unpacked), so a
    step made earlier can be measured on a quiet machine later.
    """
    base, _, head = ref.partition("..")
    commit = resolve(base)
    head_commit = resolve(head) if head else None
    here = head_commit[:9] if head_commit else describe_here()
    log(
        f"== compare: this tree ({here}) against {ref} ({commit[:9]}), {rounds} rounds of "
        f"{duration_s:g} s per build and mode; load average before: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    out: dict[str, Any] = {"ref": ref, "ref_commit": commit, "this": here, "modes": {}}
    with tempfile.TemporaryDirectory(prefix="refreshd-compare-") as tmp:
        tree = Path(tmp) / "ref"
        tree.mkdir()
        unpack(commit, tree)
        builds: dict[str, Path | None] = {f"ref {commit[:9]}": tree, "this tree": None}
        if head_commit is not None:
            this = Path(tmp) / "this"
            this.mkdir()
            unpack(head_commit, this)
            builds = {f"ref {commit[:9]}": tree, f"this {head_commit[:9]}": this}
        for mode in modes:
            runs: dict[str, list[WrkRun]] = {label: [] for label in builds}
            for r in range(rounds):
                order = list(builds.items())
                for label, src in order if r % 2 == 0 else order[::-1]:
                    run = measure(
                        f"{label} {mode}",
                        servers.refreshd(1, tree=src),
                        mode,
                        duration_s=duration_s,
                        connections=connections,
                        wrk=wrk,
                        warmup_s=warmup_s,
                    )
                    runs[label].append(run)
                    log("   " + run.line())
            (ref_label, this_label) = builds
            a, b = _summary(runs[ref_label]), _summary(runs[this_label])
            ratio = b["median_rps"] / a["median_rps"] if a["median_rps"] else float("nan")
            cpu_a, cpu_b = a["median_cpu_ms_per_request"], b["median_cpu_ms_per_request"]
            cpu_ratio = cpu_b / cpu_a if cpu_a and cpu_b else None
            valid = a["valid"] and b["valid"]
            out["modes"][mode] = {
                ref_label: a,
                this_label: b,
                "rps_ratio_this_over_ref": ratio,
                "cpu_per_request_ratio_this_over_ref": cpu_ratio,
                "valid": valid,
            }
            log(
                f"   {mode}: median {b['median_rps']:.0f} rps (this) / {a['median_rps']:.0f} rps "
                f"(ref) = {ratio:.2f}; CPU per request this / ref = "
                + (f"{cpu_ratio:.2f}" if cpu_ratio is not None else "?")
                + ("" if valid else "  (NOT VALID: a run's generator saturated or it had errors)")
            )
    log("   load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return out
