"""A threshold experiment through the simulator: the service's assignment and stats, end to end.

Two arms (the fixed 5-minute rule against the intent policy at 0.2) split a few hundred seeded
users in fast mode; the report must count exactly what the devices did in each arm, and the
paired passes (every user on each arm) must give the simulator's own comparison next to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from client_sim.cli import main
from client_sim.device import build_world
from client_sim.experiment import (
    ExperimentResult,
    ExperimentRun,
    experiment_text,
    load_experiment,
)
from client_sim.places import build_places
from client_sim.population import EVAL
from client_sim.timeexp import WARMUP_MS, fixed_arm, warm_up
from intent.model import IntentModel
from intent.train import TrainResult
from refreshd.core.experiments import parse_experiment
from refreshd.core.exposure import stats_key
from refreshd.core.rules import RuleSet, default_rules
from tests.client_sim.sim_support import SCENARIOS, small, tiny_scenario_file

USERS, HOURS, SEED = 300, 12, 3
BODY: dict[str, Any] = {
    "seed": "sim-thr", "status": "running", "weights": [0.5, 0.5], "guardrails": ["clicks"],
    "variants": [{"key": "control", "params": {"policy": "fixed"}},
                 {"key": "t20", "params": {"policy": "intent", "threshold": 0.2}}],
}  # fmt: skip


@pytest.fixture(scope="module")
def ran(sim_model: TrainResult) -> tuple[ExperimentRun, ExperimentResult]:
    sc = small()
    places = build_places(sc.places)
    rules = RuleSet(default_rules())
    t0 = sc.start_ms
    worlds = [build_world(sc, places, seed=SEED, cohort=EVAL, index=i, t0=t0,
                          t1=t0 + HOURS * 3_600_000, warmup_ms=WARMUP_MS).world
              for i in range(USERS)]  # fmt: skip
    carries = warm_up(sc, worlds, fixed_arm(sc, sc.time.reference_interval_min).policy, rules)
    model = IntentModel.from_text(sim_model.model_text, version="sim")
    run = ExperimentRun(sc, "thr", parse_experiment("thr", BODY), rules, model, seed=SEED)
    half = USERS // 2  # two chunks: the stats add up across them as HINCRBY does
    run.chunk(worlds[:half], carries[:half])
    run.chunk(worlds[half:], carries[half:])
    return run, run.result()


def test_both_arms_get_about_half_the_users(ran: tuple[ExperimentRun, ExperimentResult]) -> None:
    _, res = ran
    users = {v["key"]: v["users"] for v in res.report["variants"]}
    assert set(users) == {"control", "t20"}
    total = sum(users.values())
    assert total > 0.5 * USERS  # most open the app in 12 h and is exposed
    for n in users.values():
        assert 0.4 * total < n < 0.6 * total
    assert not res.report["srm_warning"] and res.report["srm_p"] > 0.001


def test_the_report_counts_what_the_devices_saw(
    ran: tuple[ExperimentRun, ExperimentResult],
) -> None:
    run, res = ran
    for v in res.report["variants"]:
        dev = res.devices[v["key"]]
        fields = run.fields[stats_key("thr", v["key"])]
        assert v["users"] == dev["users"] == fields["users"]
        assert fields["refresh_requests.sum_x"] == dev["refreshes"]
        assert fields["clicks.sum_x"] == dev["clicks"]
        assert fields["pvctr.sum_y"] == dev["impressions"]
        mean = v["metrics"]["refresh_requests"]["mean"]
        assert round(mean * v["users"]) == dev["refreshes"]


def test_the_paired_truth_sits_next_to_the_ab_estimate(
    ran: tuple[ExperimentRun, ExperimentResult],
) -> None:
    run, res = ran
    assert res.paired is not None and set(res.paired) == {"t20"}
    # Each paired pass puts every user on its arm: the users the A/B split, all of them.
    exposed = sum(v["users"] for v in res.report["variants"])
    for key in ("control", "t20"):
        assert sum(int(m[:, 0].sum()) for m in run.truth[key]) == exposed
    truth = res.paired["t20"]
    assert set(truth) == set(res.cfg.metrics)
    # Every user on both arms, paired: a far narrower interval than the A/B's ~100 users per
    # arm give, and one that excludes no change where the policies differ.
    req = truth["refresh_requests"]
    ab = next(v for v in res.report["variants"] if v["key"] == "t20")["metrics"]
    assert isinstance(req["relative_change"], float) and req["ci"] is not None
    assert req["ci"][1] - req["ci"][0] < 0.5 * (ab["refresh_requests"]["ci"][1]
                                               - ab["refresh_requests"]["ci"][0])  # fmt: skip
    assert not req["ci"][0] <= 0 <= req["ci"][1]
    text = experiment_text(res)
    assert "Threshold experiment `thr`" in text and "SRM p" in text
    assert "| guardrail | arm |" in text and "| clicks | t20 |" in text
    assert f"{_pct(ab['refresh_requests']['relative_lift'])}" in text
    assert f"{_pct(req['relative_change'])} [" in text


def _pct(x: float) -> str:
    return f"{x * 100:+.1f} %"


def test_cli_runs_the_experiment_and_prints_its_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tiny_scenario_file(tmp_path)
    exp = tmp_path / "thr-cli.json"
    exp.write_text(json.dumps(BODY))
    out = tmp_path / "out"
    args = ["run", "--scenario", str(scenario), "--users", "40", "--hours", "8", "--seed", "11",
            "--out", str(out), "--quiet", "--experiment", str(exp)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "Threshold experiment `thr-cli` (fast mode)" in printed
    doc = json.loads((out / "report.json").read_text())
    got = doc["experiment"]
    assert got["id"] == "thr-cli" and set(got["paired"]) == {"t20"}
    users = [v["users"] for v in got["report"]["variants"]]
    assert users == [got["devices"][k]["users"] for k in ("control", "t20")]
    assert all(f"| {k} | {n} / {n} |" in printed for k, n in zip(("control", "t20"), users,
                                                                   strict=True))  # fmt: skip
    assert "## Threshold experiment `thr-cli`" in (out / "report.md").read_text()


def test_cli_refuses_an_experiment_that_assigns_nobody(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = tmp_path / "thr.json"
    exp.write_text(json.dumps(BODY | {"status": "draft"}))
    scenario = SCENARIOS / "travellers.toml"
    assert main(["run", "--scenario", str(scenario), "--experiment", str(exp)]) == 2
    assert 'set it to "running"' in capsys.readouterr().err
    exp.write_text(json.dumps(BODY | {"weights": [0.7, 0.7]}))
    assert main(["run", "--scenario", str(scenario), "--experiment", str(exp)]) == 2
    assert "weights" in capsys.readouterr().err


def test_load_experiment_takes_the_id_from_the_file_name(tmp_path: Path) -> None:
    exp = tmp_path / "thr-2026.json"
    exp.write_text(json.dumps(BODY))
    assert load_experiment(exp)[0] == "thr-2026"
    assert load_experiment(exp, "other")[0] == "other"
