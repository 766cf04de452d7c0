"""`refresh-sim sweep`: the time headline across values of world parameters nobody has measured.

Some world parameters have no published value — how much the launch source says about a
visit's intent is the first — so a result at one value says little. For each value (each
combination, with several `--param`), the same seeded users are simulated in fast mode with the
diagnostic bound arms, and at the pre-declared operating point (the reference rule's click PV)
the sweep reports the learned policy's refresh-request change with its paired CI, the oracles'
(the visit's prior intent, with its launch source when the world has one; the visit's actual
intent) and the share of the actual-intent oracle's saving the policy captures.

Written: `sweep.json` (one row per combination), `sweep.md` and `sweep.png`.
"""

from __future__ import annotations

import copy
import itertools
import json
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["parse_param", "run_sweep", "set_key"]


def parse_param(text: str) -> tuple[str, list[Any]]:
    """Parse `a.b=v1,v2,...` into the dotted key and its values (TOML scalars)."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key or not values.strip():
        raise ValueError(f"--param wants key=value[,value...], got {text!r}")
    out = []
    for raw in values.split(","):
        raw = raw.strip()
        try:
            out.append(tomllib.loads(f"v = {raw}")["v"])
        except tomllib.TOMLDecodeError:
            out.append(raw)  # a bare word: a string
    return key, out


def set_key(data: Mapping[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Return a deep copy of a scenario table with `dotted` (e.g. launch.informativeness) set."""
    out = copy.deepcopy(dict(data))
    node = out
    *path, last = dotted.split(".")
    for part in path:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ValueError(f"{dotted}: {part} is not a table")
        node = child
    node[last] = value
    return out


def _rel(metrics: Mapping[str, Any], key: str) -> tuple[float | None, list[float] | None]:
    m = metrics.get(key) or {}
    return m.get("relative_change"), m.get("ci")


def run_sweep(
    base: Mapping[str, Any],
    params: Sequence[tuple[str, list[Any]]],
    *,
    users: int,
    hours: float,
    seed: int,
    out: Path,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every combination of the parameters' values over the scenario table `base` (a
    parsed scenario file); write and return the rows."""
    from client_sim.fast import run_fast
    from client_sim.report import build_metrics, headline
    from client_sim.scenario import parse_scenario

    rows: list[dict[str, Any]] = []
    keys = [k for k, _ in params]
    combos = list(itertools.product(*(v for _, v in params)))
    for n, combo in enumerate(combos, 1):
        data: dict[str, Any] = dict(base)
        for key, value in zip(keys, combo, strict=True):
            data = set_key(data, key, value)
        sc = parse_scenario(data)
        label = ", ".join(f"{k}={v}" for k, v in zip(keys, combo, strict=True))
        if progress is not None:
            progress(f"[{n}/{len(combos)}] {label}")
        result = run_fast(sc, users=users, hours=hours, seed=seed, bounds=True)
        metrics = build_metrics(result)
        head = headline(result, metrics)
        prior, prior_ci = _rel(
            metrics, "bounds.bound_signal.refresh_requests_per_user_at_operating_point"
        )
        if prior is None:
            prior, prior_ci = _rel(
                metrics, "bounds.bound_prior.refresh_requests_per_user_at_operating_point"
            )
        visit, visit_ci = _rel(
            metrics, "bounds.bound_visit.refresh_requests_per_user_at_operating_point"
        )
        rows.append(
            {
                "params": dict(zip(keys, combo, strict=True)),
                "learned_refresh_requests_change": head["refresh_requests_change"],
                "learned_ci": head["ci"],
                "click_pv_change": head["click_pv_change"],
                "exposure_pvctr_change": head["exposure_pvctr_change"],
                "best_heuristic_refresh_requests_change": head[
                    "best_heuristic_refresh_requests_change"
                ],
                "prior_signal_oracle_refresh_requests_change": prior,
                "prior_signal_oracle_ci": prior_ci,
                "actual_intent_oracle_refresh_requests_change": visit,
                "actual_intent_oracle_ci": visit_ci,
                "oracle_gap_captured": head["oracle_gap_captured"],
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "scenario": str(base.get("meta", {}).get("name", "scenario")),
        "users": users,
        "hours": hours,
        "seed": seed,
        "operating_point": "reference_click_pv",
        "rows": rows,
    }
    (out / "sweep.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    (out / "sweep.md").write_text(_markdown(doc))
    _plot(rows, keys, out / "sweep.png")
    return rows


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f} %"


def _ci(ci: Sequence[float] | None) -> str:
    return "" if not ci else f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def _markdown(doc: Mapping[str, Any]) -> str:
    lines = [
        f"# refresh-sim sweep: {doc['scenario']}",
        "",
        f"{doc['users']} users × {doc['hours']:g} h, seed {doc['seed']}. Every row is measured at "
        "the reference rule's click PV (the operating point declared before the runs): the "
        "refresh-request change against the reference rule, with a paired bootstrap 95 % CI.",
        "",
        "| parameters | learned policy | best heuristic | prior+signal oracle | "
        "actual-intent oracle | oracle gap captured |",
        "|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        params = ", ".join(f"`{k}={v}`" for k, v in r["params"].items())
        gap = r["oracle_gap_captured"]
        lines.append(
            f"| {params} | {_pct(r['learned_refresh_requests_change'])}{_ci(r['learned_ci'])} | "
            f"{_pct(r['best_heuristic_refresh_requests_change'])} | "
            f"{_pct(r['prior_signal_oracle_refresh_requests_change'])}"
            f"{_ci(r['prior_signal_oracle_ci'])} | "
            f"{_pct(r['actual_intent_oracle_refresh_requests_change'])}"
            f"{_ci(r['actual_intent_oracle_ci'])} | {'n/a' if gap is None else f'{gap:.2f}'} |"
        )
    lines += [
        "",
        "Oracle gap captured is the learned saving divided by the actual-intent oracle's saving "
        "at the same click PV: the share of what perfect knowledge of each visit's intent would "
        "save that the shippable policy gets.",
        "",
    ]
    return "\n".join(lines)


def _plot(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [", ".join(str(v) for v in r["params"].values()) for r in rows]
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(7, 4))
    series = [
        ("learned policy", "learned_refresh_requests_change"),
        ("best heuristic", "best_heuristic_refresh_requests_change"),
        ("prior+signal oracle", "prior_signal_oracle_refresh_requests_change"),
        ("actual-intent oracle", "actual_intent_oracle_refresh_requests_change"),
    ]
    for name, key in series:
        ys = [100 * r[key] if r[key] is not None else float("nan") for r in rows]
        ax.plot(list(xs), ys, marker="o", label=name)
    ax.axhline(-14, color="grey", linestyle=":", label="reference result (−14 %)")
    ax.set_xticks(list(xs), labels, rotation=30 if len(rows) > 6 else 0)
    ax.set_xlabel(", ".join(keys))
    ax.set_ylabel("refresh requests vs the reference rule (%)\nat its click PV")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
