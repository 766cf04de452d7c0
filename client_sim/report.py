"""Turn a fast-mode run into metrics with CIs, report.json, report.md and PNG plots.

report.json has exactly the shape docs/simulator.md documents: `{"scenario", "users", "hours",
"seed", "metrics": {name: {"baseline", "policy", "relative_change", "ci"}}}`, keys sorted, floats
rounded to 6 significant digits, and nothing run-dependent (no timestamps, no timings), so a
seed reproduces it byte for byte. The headline time comparison is at equal click PV: the
intent policy at the pre-declared headline threshold (`time.headline_quantile` of the training
scores) against the fixed-interval sweep interpolated at the same click PV (a mix of the two
neighbouring intervals, which a share of users on each would achieve). Every other threshold
gets the same comparison (`time.intent_<t>.*`).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from client_sim.fast import FastResult
from client_sim.stats import Boot, Metric, compare, interp_mix, metric, round_sig
from client_sim.timeexp import COUNTS

__all__ = ["build_metrics", "write_report"]

# (metric, what the issue asks of relative_change or policy, check)


def _time_metrics(r: FastResult, boot: Boot) -> dict[str, Metric]:
    n = r.users
    per_user: dict[str, np.ndarray] = {}
    for arm in r.arms:
        m = r.time.matrix(arm.key)
        for j, col in enumerate(COUNTS):
            per_user[f"{arm.key}.{col}"] = m[:, j]
    fixed = [a for a in r.arms if a.kind == "fixed"]
    intent = [a for a in r.arms if a.kind == "intent"]

    def arm_tot(tot: dict[str, float], key: str) -> dict[str, float]:
        return {c: tot[f"{key}.{c}"] for c in COUNTS}

    head = next(a for a in intent if a.value == r.trained.headline)

    def view(fn: Any) -> Any:
        """Compare the headline threshold with the fixed sweep at its click PV."""

        def inner(tot: dict[str, float]) -> tuple[float, float] | None:
            pol = arm_tot(tot, head.key)
            base = interp_mix([arm_tot(tot, f.key) for f in fixed], "clicks", pol["clicks"])
            return None if base is None else (fn(base), fn(pol))

        return inner

    def ratio(a: float, b: float) -> float:
        return a / b if b else math.nan

    out = {
        "time.refresh_requests_per_user": compare(
            boot, per_user, view(lambda t: t["refreshes"] / n)),
        "time.policy_refreshes_per_user": compare(
            boot, per_user, view(lambda t: (t["refreshes"] - t["event_refreshes"]) / n)),
        "time.click_pv_per_user": compare(boot, per_user, view(lambda t: t["clicks"] / n)),
        "time.click_uv_share": compare(boot, per_user, view(lambda t: t["clicked"] / n)),
        "time.pvctr": compare(boot, per_user, view(lambda t: ratio(t["clicks"], t["impressions"]))),
        "time.uvctr": compare(boot, per_user, view(lambda t: ratio(t["clicked"], t["exposed"]))),
    }  # fmt: skip
    for a in (a for a in r.arms if a.kind != "fixed"):

        def vs_fixed(tot: Any, a: Any = a, col: str = "refreshes") -> Any:
            pol = arm_tot(tot, a.key)
            base = interp_mix([arm_tot(tot, f.key) for f in fixed], "clicks", pol["clicks"])
            if base is None:
                return None
            if col == "pvctr":
                return ratio(base["clicks"], base["impressions"]), ratio(
                    pol["clicks"], pol["impressions"])  # fmt: skip
            return base[col] / n, pol[col] / n

        name = f"time.intent_{a.value:g}" if a.kind == "intent" else f"bounds.{a.key}"
        out[f"{name}.refresh_requests_vs_fixed_sweep"] = compare(
            boot, per_user, functools.partial(vs_fixed, a=a, col="refreshes")
        )
        out[f"{name}.pvctr_vs_fixed_sweep"] = compare(
            boot, per_user, functools.partial(vs_fixed, a=a, col="pvctr"))  # fmt: skip
    return out


def _median_metric(boot: Boot, base: tuple[np.ndarray, np.ndarray],
                   pol: tuple[np.ndarray, np.ndarray]) -> Metric:  # fmt: skip
    b0, brep = boot.weighted_medians(*base)
    p0, prep = boot.weighted_medians(*pol)
    if math.isnan(b0) or math.isnan(p0):
        return metric(None, [])
    return metric((b0, p0), list(zip(brep.tolist(), prep.tolist(), strict=True)))


def _pooled(values: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([x for vs in values for x in vs], dtype=np.float64)
    o = np.array([i for i, vs in enumerate(values) for _ in vs], dtype=np.int64)
    return v, o


def build_metrics(r: FastResult) -> dict[str, Metric]:
    """Return every comparison of the run as report entries."""
    reps = r.scenario.report.bootstrap
    out = _time_metrics(r, Boot(r.users, reps, r.seed))
    sp = r.space
    if sp:
        boot = Boot(len(sp), reps, r.seed + 1)
        pu = {
            "fixes": np.array([s.fixes for s in sp]), "base": np.array([s.base_fixes for s in sp]),
            "hours": np.array([s.hours for s in sp]), "entries": np.array([s.entries for s in sp]),
            "missed": np.array([s.missed for s in sp]),
            "base_missed": np.array([s.base_missed for s in sp]),
            "cards": np.array([s.card_clicks for s in sp]),
            "base_cards": np.array([s.base_card_clicks for s in sp]),
            "one": np.ones(len(sp)),
        }  # fmt: skip
        out["space.fixes_per_user_hour"] = compare(
            boot, pu, lambda t: (t["base"] / t["hours"], t["fixes"] / t["hours"])
        )
        out["space.entries_missed_pct"] = compare(
            boot,
            pu,
            lambda t: (
                (100 * t["base_missed"] / t["entries"], 100 * t["missed"] / t["entries"])
                if t["entries"]
                else None
            ),
        )
        out["space.median_entry_delay_s"] = _median_metric(
            boot, _pooled([s.base_delays_s for s in sp]), _pooled([s.delays_s for s in sp])
        )
        out["space.fence_card_click_pv_per_user"] = compare(
            boot, pu, lambda t: (t["base_cards"] / t["one"], t["cards"] / t["one"]))  # fmt: skip
    sy = r.sync
    boot = Boot(len(sy), reps, r.seed + 2)
    pu = {
        "dirs": np.array([s.directives for s in sy]), "got": np.array([s.delivered for s in sy]),
        "push_got": np.array([s.push_delivered for s in sy]),
        "push_req": np.array([s.push_requests for s in sy]), "one": np.ones(len(sy)),
    }  # fmt: skip
    out["events.sync_requests_per_user"] = compare(
        boot, pu, lambda t: (t["push_req"] / t["one"], 0.0)
    )
    out["events.directives_delivered_pct"] = compare(
        boot,
        pu,
        lambda t: (
            (100 * t["push_got"] / t["dirs"], 100 * t["got"] / t["dirs"]) if t["dirs"] else None
        ),
    )
    out["events.delivery_latency_median_s"] = _median_metric(
        boot, _pooled([s.push_latencies_s for s in sy]), _pooled([s.latencies_s for s in sy])
    )
    sc = r.screens
    if sc:
        boot = Boot(len(sc), reps, r.seed + 3)
        pu = {
            "screens": np.array([s.screens for s in sc]),
            "none": np.array([s.dups_none for s in sc]),
            "greedy": np.array([s.dups_greedy for s in sc]),
            "optimal": np.array([s.dups_optimal for s in sc]),
            "full": np.array([s.full_screens for s in sc]),
            "sg": np.array([s.score_greedy for s in sc]),
            "so": np.array([s.score_optimal for s in sc]),
        }  # fmt: skip
        out["dedupe.duplicates_per_screen"] = compare(
            boot, pu, lambda t: (t["none"] / t["screens"], t["greedy"] / t["screens"])
        )
        out["dedupe.duplicates_per_screen_optimal"] = compare(
            boot, pu, lambda t: (t["none"] / t["screens"], t["optimal"] / t["screens"])
        )
        out["dedupe.total_score_per_full_screen"] = compare(
            boot, pu, lambda t: (t["sg"] / t["full"], t["so"] / t["full"]) if t["full"] else None
        )
    return dict(sorted(out.items()))


def report_json(r: FastResult, metrics: dict[str, Metric]) -> str:
    doc = {"scenario": r.scenario.name, "users": r.users, "hours": round_sig(r.hours),
           "seed": r.seed, "metrics": metrics}  # fmt: skip
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_report(r: FastResult, out_dir: Path) -> dict[str, Metric]:
    """Write report.json, report.md and the plots; return the metrics."""
    from client_sim.markdown import render_markdown, write_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = build_metrics(r)
    (out_dir / "report.json").write_text(report_json(r, metrics), encoding="utf-8")
    plots = write_plots(r, metrics, out_dir)
    (out_dir / "report.md").write_text(render_markdown(r, metrics, plots), encoding="utf-8")
    return metrics
