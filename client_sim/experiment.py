"""A threshold experiment run through the simulator, next to the simulator's own paired truth.

`refresh-sim run --experiment FILE.json` takes an experiment body exactly as
`PUT /v1/experiments/{id}` takes it (validated by `refreshd.core.experiments.parse_experiment`).

Fast mode installs it in the flow's `Config`, so the service's own assignment
(`refreshd.core.exposure.choose`) splits the evaluation users across the arms and the flow's
`stat_incrs` count every decision, click and impression into the per-variant stats; the memory
store adds them as Valkey's HINCRBY does, and the report is `refreshd.core.expstats.build_report`
over those fields, the same function `GET /v1/experiments/{id}/report` serves. The users live
the same warm-up day as the time arms and start the experiment from where it left them.

That is an A/B estimate from a split population. The simulator can also do what no real
experiment can: run *every* user on each arm's parameters (the same experiment with all the
weight on that arm, so the variant overrides are applied by the same code) and compare the arms
on the same seeded users — a paired comparison with a bootstrap CI over users, the ground truth
the A/B estimate is trying to recover. Each arm is one more pass over the users; HTTP mode
(`client_sim.http_mode`) has only the A/B side and the devices' own per-arm totals.

The decide policy the variants override is the service's default ladder with the scenario's
cooldown: `standard_policy(kind="intent")` (threshold `C.DEFAULT_THRESHOLD`, fallback every
`C.FALLBACK_INTERVAL_S`), so `{"policy": "fixed"}` is the fixed 5-minute rule and
`{"threshold": t}` the intent policy at t.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from client_sim.cloud import Cloud
from client_sim.device import ArmStats, Carry, UserWorld, run_device
from client_sim.scenario import Scenario
from client_sim.stats import Boot, Metric, compare, round_sig
from client_sim.timeexp import Predictor, drive
from refreshd import constants as C
from refreshd.core import flow
from refreshd.core.errors import MalformedJSON
from refreshd.core.experiments import METRICS, ExperimentConfig, parse_experiment, variant_weights
from refreshd.core.exposure import stats_key
from refreshd.core.expstats import SPECS, build_report, stats_from_fields, user_values
from refreshd.core.policy import PolicyDoc, standard_policy
from refreshd.core.rules import RuleSet
from refreshd.core.state import ExpUser

__all__ = [
    "DEVICE_COUNTS",
    "ExperimentFileError",
    "ExperimentResult",
    "ExperimentRun",
    "everyone_on",
    "experiment_json",
    "experiment_lines",
    "experiment_policy",
    "experiment_text",
    "load_experiment",
]

# What the devices saw per arm (users: those the service exposed, i.e. decided for at least
# once while the experiment ran).
DEVICE_COUNTS = ("users", "decides", "refreshes", "clicks", "impressions")
# Per-user columns of a paired pass: each metric's numerator and denominator for the user, from
# the service's own totals of the user in the experiment.
_TRUTH = ("exposed", *(f"{m}.{part}" for m in METRICS for part in ("num", "den")))
_ID = re.compile(C.ID_PATTERN)


class ExperimentFileError(ValueError):
    """An experiment file the simulator cannot run (the message says why)."""


def load_experiment(path: Path, exp_id: str | None = None) -> tuple[str, ExperimentConfig]:
    """Read an experiment body; its id is `exp_id` or the file's stem. It must be running:
    a draft or stopped experiment assigns nobody, so the run would measure nothing."""
    exp_id = exp_id or path.stem
    if len(exp_id) > C.ID_MAX_LEN or not _ID.match(exp_id):
        raise ExperimentFileError(f"experiment id {exp_id!r} is not a valid id")
    try:
        cfg = parse_experiment(exp_id, path.read_bytes())
    except (OSError, ValueError, MalformedJSON) as exc:  # ExperimentError is a ValueError
        raise ExperimentFileError(f"{path}: {exc}") from None
    if cfg.status != "running":
        raise ExperimentFileError(
            f'{path}: status is {cfg.status!r}; set it to "running" (only a running '
            "experiment assigns users)"
        )
    return exp_id, cfg


def experiment_policy(sc: Scenario) -> PolicyDoc:
    """The policy document the variants' params override (the service's default ladder)."""
    return standard_policy(kind="intent", min_interval_s=sc.time.min_interval_s)


def everyone_on(cfg: ExperimentConfig, key: str) -> ExperimentConfig:
    """The same experiment with every user on variant `key` (weight 1 there, 0 elsewhere; full
    coverage, no namespace): the assignment and the overrides stay the service's own."""
    weights = [1.0 if v.key == key else 0.0 for v in cfg.variants]
    return msgspec.structs.replace(cfg, weights=weights, coverage=1.0, namespace=None, sticky=False)


@dataclasses.dataclass
class ExperimentResult:
    """The report (as the API serves it), the devices' per-arm totals and, in fast mode, the
    paired comparison of every user on each arm (`paired[arm][metric]`, null in HTTP mode)."""

    exp_id: str
    cfg: ExperimentConfig
    report: dict[str, Any]
    devices: dict[str, dict[str, int]]
    paired: dict[str, dict[str, Metric]] | None = None
    mode: str = "fast"


def _exp_user(cloud: Cloud, uid: str, exp_id: str) -> ExpUser | None:
    return cloud.snapshot(uid)[0].exp.get(exp_id)


def _truth_row(eu: ExpUser | None) -> list[int]:
    """1 (exposed), then the user's (numerator, denominator) of each metric by the report's
    own definitions (`user_values`): the denominator is 1 per exposed user, or the ratio's."""
    if eu is None:
        return [0] * len(_TRUTH)
    values = user_values(eu.totals)
    row = [1]
    for m in METRICS:
        x, y, _c = values[m]
        row += [x, y if SPECS[m].denominator is not None else 1]
    return row


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


class ExperimentRun:
    """Runs the experiment chunk by chunk (the users the time arms live, from the same warm-up)
    and keeps the stats fields, the devices' totals and the paired passes' per-user totals."""

    def __init__(
        self,
        sc: Scenario,
        exp_id: str,
        cfg: ExperimentConfig,
        rules: RuleSet,
        model: Predictor | None,
        *,
        seed: int,
        paired: bool = True,
    ) -> None:
        self.sc, self.exp_id, self.cfg, self.rules, self.model = sc, exp_id, cfg, rules, model
        self.seed = seed
        self.paired = paired
        self.policy = experiment_policy(sc)
        self.fields: dict[str, dict[str, int]] = {}
        self.devices = {v.key: dict.fromkeys(DEVICE_COUNTS, 0) for v in cfg.variants}
        self.truth: dict[str, list[np.ndarray]] = {v.key: [] for v in cfg.variants}

    @property
    def passes(self) -> int:
        """Passes over the users per chunk (for progress)."""
        return 1 + (len(self.cfg.variants) if self.paired else 0)

    def _cloud(self, cfg: ExperimentConfig) -> Cloud:
        version = self.model.version if self.model is not None else None
        config = flow.Config(rules=self.rules, experiments={self.exp_id: cfg},
                             policy=self.policy, model_version=version, logs=False,
                             log_features=False, window=True)  # fmt: skip
        return Cloud(self.policy, self.rules, model_version=version, config=config)

    def _live(
        self, cloud: Cloud, worlds: list[UserWorld], carries: list[Carry],
        progress: Callable[[int], None] | None,
    ) -> list[ArmStats]:  # fmt: skip
        devices = [run_device(self.sc, w, cloud, score_mode="model", carry=c)
                   for w, c in zip(worlds, carries, strict=True)]  # fmt: skip
        done = (lambda _: progress(1)) if progress is not None else None
        return drive(devices, self.model.predict if self.model else None, on_done=done)

    def chunk(
        self, worlds: list[UserWorld], carries: list[Carry],
        progress: Callable[[int], None] | None = None,
    ) -> None:  # fmt: skip
        """Run the experiment (and the paired passes) on one chunk of warmed-up users."""
        cloud = self._cloud(self.cfg)
        for w, st in zip(worlds, self._live(cloud, worlds, carries, progress), strict=True):
            eu = _exp_user(cloud, w.user.uid, self.exp_id)
            if eu is None:
                continue  # never decided for while the experiment ran: not exposed
            row = self.devices[eu.variant]
            row["users"] += 1
            row["decides"] += st.decides
            row["refreshes"] += st.refreshes
            row["clicks"] += st.clicks
            row["impressions"] += st.impressions
        for key, incs in cloud.store.stats.items():  # HINCRBY across chunks
            acc = self.fields.setdefault(key, {})
            for name, inc in incs.items():
                acc[name] = acc.get(name, 0) + inc
        if not self.paired:
            return
        for variant in self.cfg.variants:
            cloud = self._cloud(everyone_on(self.cfg, variant.key))
            self._live(cloud, worlds, carries, progress)
            rows = [_truth_row(_exp_user(cloud, w.user.uid, self.exp_id)) for w in worlds]
            self.truth[variant.key].append(
                np.array(rows, dtype=np.float64).reshape(-1, len(_TRUTH))
            )

    def result(self) -> ExperimentResult:
        stats = {v.key: stats_from_fields(self.fields.get(stats_key(self.exp_id, v.key), {}))
                 for v in self.cfg.variants}  # fmt: skip
        report = msgspec.to_builtins(build_report(self.exp_id, self.cfg, stats))
        return ExperimentResult(self.exp_id, self.cfg, report, self.devices,
                                self._paired() if self.paired else None)  # fmt: skip

    def _paired(self) -> dict[str, dict[str, Metric]]:
        keys = [v.key for v in self.cfg.variants]
        per_user: dict[str, np.ndarray] = {}
        for k in keys:
            mat = np.vstack(self.truth[k]) if self.truth[k] else np.zeros((0, len(_TRUTH)))
            per_user |= {f"{k}.{c}": mat[:, j] for j, c in enumerate(_TRUTH)}
        users = len(per_user[f"{keys[0]}.{_TRUTH[0]}"])
        boot = Boot(users, self.sc.report.bootstrap, self.seed + 4)
        return {
            k: {m: compare(boot, per_user, functools.partial(_pair, keys[0], k, m))
                for m in self.cfg.metrics}
            for k in keys[1:]
        }  # fmt: skip


def _pair(base: str, arm: str, metric: str, t: Mapping[str, float]) -> Any:
    """(baseline, arm) of one metric from the paired passes' totals; None when undefined."""
    a = _ratio(t[f"{base}.{metric}.num"], t[f"{base}.{metric}.den"])
    b = _ratio(t[f"{arm}.{metric}.num"], t[f"{arm}.{metric}.den"])
    return None if a is None or b is None else (a, b)


# --- output ------------------------------------------------------------------------------


def experiment_json(r: ExperimentResult) -> dict[str, Any]:
    """The `experiment` object of report.json."""
    return {
        "id": r.exp_id,
        "mode": r.mode,
        "weights": [round_sig(w) for w in variant_weights(r.cfg)],
        "report": r.report,
        "devices": r.devices,
        "paired": r.paired,
    }


def _f(x: object, spec: str = ".4g") -> str:
    return "—" if not isinstance(x, int | float) or not math.isfinite(x) else format(x, spec)


def _pct(x: object) -> str:
    return "—" if not isinstance(x, int | float) else f"{x * 100:+.1f} %"


def _ci(ci: object) -> str:
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]" if isinstance(ci, list) else "—"


def _lift(x: object, ci: object) -> str:
    return _pct(x) + (f" {_ci(ci)}" if isinstance(ci, list) else "")


def _count(variant: dict[str, Any], metric: str) -> str:
    """A sum from the report's mean per user (the counts the devices saw, to compare)."""
    mean = (variant["metrics"].get(metric) or {}).get("mean")
    return "—" if mean is None else str(round(mean * variant["users"]))


def experiment_lines(r: ExperimentResult) -> list[str]:
    """The experiment's Markdown section (also what `refresh-sim` prints)."""
    rep = r.report
    variants = rep["variants"]
    weights = ", ".join(f"{v.key} {w:g}" for v, w in zip(r.cfg.variants, variant_weights(r.cfg),
                                                        strict=True))  # fmt: skip
    srm = "sample-ratio mismatch!" if rep["srm_warning"] else "no mismatch"
    lines = [
        f"## Threshold experiment `{r.exp_id}` ({r.mode} mode)",
        "",
        f"Weights {weights}; SRM p = {_f(rep['srm_p'], '.3g')} ({srm}). The A/B columns are the "
        "service's report (`GET /v1/experiments/{id}/report`) of the users split across the arms; "
        + ("the simulator columns run every user on each arm and compare them with the baseline "
           "on the same seeded users (paired bootstrap 95 % CI): the ground truth the A/B "
           "estimate is after." if r.paired is not None else
           "HTTP mode has no paired run: the devices' own per-arm totals are shown instead.")
        + "",
        "",
        "| arm | users (report / devices) | refresh requests (report / devices) | "
        "clicks (report / devices) | impressions (devices) |",
        "|---|---|---|---|---|",
    ]  # fmt: skip
    for v in variants:
        d = r.devices.get(v["key"], {})
        lines.append(
            f"| {v['key']} | {v['users']} / {d.get('users', '—')} | "
            f"{_count(v, 'refresh_requests')} / {d.get('refreshes', '—')} | "
            f"{_count(v, 'clicks')} / {d.get('clicks', '—')} | {d.get('impressions', '—')} |"
        )
    paired = r.paired is not None
    lines += [
        "",
        "| arm | metric | baseline mean | arm mean | A/B lift [95 % CI] | p | chance to win |"
        + (" simulator: all users, paired [95 % CI] |" if paired else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if paired else ""),
    ]
    base = variants[0]
    for v in variants[1:]:
        for m, res in v["metrics"].items():
            row = (
                f"| {v['key']} | {m} | {_f(base['metrics'][m]['mean'])} | {_f(res['mean'])} | "
                f"{_lift(res['relative_lift'], res['ci'])} | {_f(res['p_value'], '.3g')} | "
                f"{_f(res['chance_to_win'], '.3g')} |"
            )
            if r.paired is not None:
                truth = r.paired.get(v["key"], {}).get(m)
                row += " — |" if truth is None else (
                    f" {_lift(truth['relative_change'], truth['ci'])} |")  # fmt: skip
            lines.append(row)
    if rep.get("guardrails"):
        lines += ["", "| guardrail | arm | change [95 % CI] | breached |", "|---|---|---|---|"]
        for g in rep["guardrails"]:
            lines.append(f"| {g['metric']} | {g['variant']} | "
                         f"{_lift(g['relative_change'], g['ci'])} | "
                         f"{'YES' if g['breached'] else 'no'} |")  # fmt: skip
    return lines


def experiment_text(r: ExperimentResult) -> str:
    return "\n".join(experiment_lines(r)) + "\n"
