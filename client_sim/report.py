"""Turn a fast-mode run into metrics with CIs, report.json, report.md and PNG plots.

report.json has exactly the shape docs/simulator.md documents: `{"scenario", "users", "hours",
"seed", "metrics": {name: {"baseline", "policy", "relative_change", "ci"}}}` (and `experiment`
with `--experiment`, `client_sim.experiment`), keys sorted, floats
rounded to 6 significant digits, and nothing run-dependent (no timestamps, no timings), so a
seed reproduces it byte for byte.

The headline (`headline` in report.json, the `time.*` rows) is measured at a click PV declared
before any run: the reference rule's (`time.reference_interval_min`, the production 5-minute
rule). The intent policy's threshold arms are brought to exactly that click PV by mixing two
neighbouring thresholds whose click PVs bracket it (a per-user randomised mixture: its totals
are the weighted combination, recomputed with its weight on every bootstrap resample of
users), and the
headline is its refresh-request change against the reference arm on the same users. The same
mixture is also compared with the fixed frontier at that click PV (the cheapest mix of any two
fixed intervals), each heuristic family and the `bound_visit` oracle (with `--bounds`) are
brought to the same click PV the same way, and every non-fixed arm is also compared with the
fixed sweep at its own click PV (`time.<arm>.*_vs_fixed_sweep`). PVCTR is click PV over
exposure PV (refreshed lists actually seen, `client_sim.device.Seen`).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from client_sim.experiment import experiment_json
from client_sim.fast import FastResult
from client_sim.stats import (
    Boot,
    Metric,
    chain_mix,
    compare,
    frontier_mix,
    interp_mix,
    metric,
    round_sig,
)
from client_sim.timeexp import COUNTS, HEURISTICS, POLICY_KINDS

__all__ = ["build_metrics", "family_at", "headline", "operating_mix", "write_report"]

# (metric, what the issue asks of relative_change or policy, check)


Tot = dict[str, float]


def _mix(a: Tot, b: Tot, w: float) -> Tot:
    return {k: (1 - w) * a[k] + w * b[k] for k in a}


def family_at(tot: Tot, keys: list[str], target: float) -> Tot | None:
    """The per-user randomised mixture of two arms of one family whose click PV is `target`:
    a share w of users on one arm, 1 − w on the other, so every total is the weighted
    combination. `keys` are the family's arms in parameter order (threshold, gap); the two
    mixed are neighbours in it (`stats.chain_mix`). Conservative: a policy between the two arms
    could only do better than their chord. None when no two neighbours bracket `target`."""
    curve = [_arm(tot, k) for k in keys]
    got = chain_mix(curve, "clicks", target, "refreshes")
    return None if got is None else _mix(curve[got[0]], curve[got[1]], got[2])


def _arm(tot: Tot, key: str) -> Tot:
    return {c: tot[f"{key}.{c}"] for c in COUNTS}


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


# Per-user measures of an arm's totals (the report's `time.*` rows).
def _measures(n: int) -> dict[str, Any]:
    return {
        "refresh_requests_per_user": lambda t: t["refreshes"] / n,
        "forced_refreshes_per_user": lambda t: (t["pulls"] + t["event_refreshes"]) / n,
        "policy_refreshes_per_user": lambda t: (
            t["refreshes"] - t["pulls"] - t["event_refreshes"]) / n,
        "click_pv_per_user": lambda t: t["clicks"] / n,
        "exposure_pv_per_user": lambda t: t["exposures"] / n,
        "click_uv_share": lambda t: t["clicked"] / n,
        "pvctr": lambda t: _ratio(t["clicks"], t["exposures"]),
        "uvctr": lambda t: _ratio(t["clicked"], t["exposed"]),
    }  # fmt: skip


def _time_metrics(r: FastResult, boot: Boot) -> dict[str, Metric]:
    n = r.users
    per_user: dict[str, np.ndarray] = {}
    for arm in r.arms:
        m = r.time.matrix(arm.key)
        for j, col in enumerate(COUNTS):
            per_user[f"{arm.key}.{col}"] = m[:, j]
    point, reps = boot.totals(per_user)  # once: every comparison is a function of totals

    def cmp(fn: Any) -> Metric:
        return metric(fn(point), [fn(t) for t in reps])

    family = {k: [a.key for a in sorted(r.arms, key=lambda a: a.value) if a.kind == k]
              for k in {a.kind for a in r.arms}}  # fmt: skip
    fixed = family["fixed"]
    ref = r.reference_key

    def at_op(kind: str, fn: Any) -> Any:
        """(reference arm, family mixed to the reference click PV) under `fn`."""

        def inner(tot: Tot) -> tuple[float, float] | None:
            base = _arm(tot, ref)
            pol = family_at(tot, family.get(kind, []), base["clicks"])
            return None if pol is None else (fn(base), fn(pol))

        return inner

    def frontier(fn: Any) -> Any:
        def inner(tot: Tot) -> tuple[float, float] | None:
            target = tot[f"{ref}.clicks"]
            pol = family_at(tot, family.get("intent", []), target)
            base = frontier_mix([_arm(tot, k) for k in fixed], "clicks", target, "refreshes")
            return None if pol is None or base is None else (fn(base), fn(pol))

        return inner

    out: dict[str, Metric] = {}
    measures = _measures(n)
    for name, fn in measures.items():
        out[f"time.{name}"] = cmp(at_op("intent", fn))
    out["time.refresh_requests_vs_fixed_frontier"] = cmp(
        frontier(measures["refresh_requests_per_user"]))  # fmt: skip
    for kind in (*HEURISTICS, "bound_signal", "bound_visit"):
        if kind not in family:
            continue
        prefix = "bounds" if kind.startswith("bound") else "time"
        for name in ("refresh_requests_per_user", "click_pv_per_user", "pvctr"):
            out[f"{prefix}.{kind}.{name}_at_operating_point"] = cmp(at_op(kind, measures[name]))

    # Every non-fixed arm against the fixed sweep at its own click PV (neighbouring intervals
    # mixed), as before.
    for a in (a for a in r.arms if a.kind != "fixed"):

        def vs_fixed(tot: Tot, a: Any = a, col: str = "refreshes") -> Any:
            pol = _arm(tot, a.key)
            base = interp_mix([_arm(tot, f) for f in fixed], "clicks", pol["clicks"])
            if base is None:
                return None
            if col == "pvctr":
                return _ratio(base["clicks"], base["exposures"]), _ratio(
                    pol["clicks"], pol["exposures"])  # fmt: skip
            return base[col] / n, pol[col] / n

        name = f"time.{a.key}" if a.kind in POLICY_KINDS else f"bounds.{a.key}"
        out[f"{name}.refresh_requests_vs_fixed_sweep"] = cmp(
            functools.partial(vs_fixed, a=a, col="refreshes"))  # fmt: skip
        out[f"{name}.pvctr_vs_fixed_sweep"] = cmp(functools.partial(vs_fixed, a=a, col="pvctr"))
    return out


def _rel(m: Metric | None) -> float | None:
    x = None if m is None else m.get("relative_change")
    return x if isinstance(x, float) else None


def operating_mix(r: FastResult, kind: str = "intent") -> tuple[str, str, float] | None:
    """The two arms of `kind` mixed at the reference click PV, and the second one's share."""
    keys = [a.key for a in sorted(r.arms, key=lambda a: a.value) if a.kind == kind]
    curve = [{"clicks": float(r.time.matrix(k)[:, 1].sum()),
              "refreshes": float(r.time.matrix(k)[:, 0].sum())} for k in keys]  # fmt: skip
    target = float(r.time.matrix(r.reference_key)[:, 1].sum())
    got = chain_mix(curve, "clicks", target, "refreshes")
    return None if got is None else (keys[got[0]], keys[got[1]], got[2])


def headline(r: FastResult, metrics: dict[str, Metric]) -> dict[str, Any]:
    """The headline object of report.json: the intent policy at the reference rule's click PV."""
    ref_min = r.scenario.time.reference_interval_min
    req = metrics.get("time.refresh_requests_per_user", {})
    learned = _rel(req)
    heur = {k: _rel(metrics.get(f"time.{k}.refresh_requests_per_user_at_operating_point"))
            for k in HEURISTICS}  # fmt: skip
    reached = [v for v in heur.values() if v is not None]
    oracle = _rel(metrics.get("bounds.bound_visit.refresh_requests_per_user_at_operating_point"))
    gap = None
    if oracle is not None and learned is not None and oracle < 0:
        gap = round_sig(learned / oracle)
    mix = operating_mix(r)
    front = metrics.get("time.refresh_requests_vs_fixed_frontier", {})
    ref_clicks = float(r.time.matrix(r.reference_key)[:, 1].sum())
    reach = {}  # how close each heuristic family's highest click PV comes to the operating point
    for kind in HEURISTICS:
        got = [float(r.time.matrix(a.key)[:, 1].sum()) for a in r.arms if a.kind == kind]
        reach[kind] = round_sig(max(got) / ref_clicks - 1.0) if got and ref_clicks else None
    return {
        "operating_point": "reference_click_pv",
        "reference_interval_min": int(ref_min) if float(ref_min).is_integer() else ref_min,
        "reference_click_pv_per_user": metrics.get("time.click_pv_per_user", {}).get("baseline"),
        "refresh_requests_change": learned,
        "ci": req.get("ci"),
        "click_pv_change": _rel(metrics.get("time.click_pv_per_user")),
        "exposure_pvctr_change": _rel(metrics.get("time.pvctr")),
        "forced_refresh_requests_change": _rel(metrics.get("time.forced_refreshes_per_user")),
        "policy_refresh_requests_change": _rel(metrics.get("time.policy_refreshes_per_user")),
        "refresh_requests_change_vs_fixed_frontier": _rel(front),
        "ci_vs_fixed_frontier": front.get("ci"),
        "mixture": None if mix is None else {"arms": [mix[0], mix[1]],
                                             "weight_second": round_sig(mix[2])},
        "heuristic_refresh_requests_change": heur,
        "heuristic_max_click_pv_change": reach,
        "best_heuristic_refresh_requests_change": min(reached) if reached else None,
        "oracle_refresh_requests_change": oracle,
        "oracle_gap_captured": gap,
    }  # fmt: skip


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
            boot,
            pu,
            lambda t: (
                (t["none"] / t["screens"], t["greedy"] / t["screens"]) if t["screens"] else None
            ),
        )
        out["dedupe.duplicates_per_screen_optimal"] = compare(
            boot,
            pu,
            lambda t: (
                (t["none"] / t["screens"], t["optimal"] / t["screens"]) if t["screens"] else None
            ),
        )
        out["dedupe.total_score_per_full_screen"] = compare(
            boot, pu, lambda t: (t["sg"] / t["full"], t["so"] / t["full"]) if t["full"] else None
        )
    return dict(sorted(out.items()))


def report_json(r: FastResult, metrics: dict[str, Metric]) -> str:
    doc = {"scenario": r.scenario.name, "users": r.users, "hours": round_sig(r.hours),
           "seed": r.seed, "headline": headline(r, metrics), "metrics": metrics}  # fmt: skip
    if r.experiment is not None:
        doc["experiment"] = experiment_json(r.experiment)
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_report(r: FastResult, out_dir: Path) -> dict[str, Metric]:
    """Write report.json, report.md and the plots; return the metrics."""
    from client_sim.markdown import render_markdown, write_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = build_metrics(r)
    (out_dir / "report.json").write_text(report_json(r, metrics), encoding="utf-8")
    plots = write_plots(r, metrics, out_dir)
    md = render_markdown(r, metrics, plots, headline=headline(r, metrics), mix=operating_mix(r))
    (out_dir / "report.md").write_text(md, encoding="utf-8")
    return metrics
