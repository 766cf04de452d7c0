"""A small fast-mode run end to end: every metric with a CI, and byte-identical reruns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client_sim.cli import main
from client_sim.fast import run_fast
from client_sim.report import build_metrics, write_report
from client_sim.targets import TARGETS
from client_sim.timeexp import COUNTS
from tests.client_sim.sim_support import SCENARIOS, small, tiny_scenario_file
from tests.client_sim.test_sim_measure import HEADLINE_KEYS


@pytest.fixture(scope="module")
def result():  # type: ignore[no-untyped-def]
    return run_fast(small(), users=150, hours=24, seed=5)


def test_every_metric_has_baseline_policy_and_ci(result) -> None:  # type: ignore[no-untyped-def]
    metrics = build_metrics(result)
    for name, _, _ in TARGETS:
        assert name in metrics, name
    for name in ("space.fixes_per_user_hour", "events.sync_requests_per_user",
                 "dedupe.duplicates_per_screen", "time.intent_" ):  # fmt: skip
        found = [m for k, m in metrics.items() if k.startswith(name)]
        assert found, name
    with_ci = [k for k, m in metrics.items() if m["ci"] is not None]
    assert {"space.fixes_per_user_hour", "events.sync_requests_per_user",
            "dedupe.duplicates_per_screen"} <= set(with_ci)  # fmt: skip
    assert any(k.startswith("time.") for k in with_ci)
    for m in metrics.values():
        assert set(m) == {"baseline", "policy", "relative_change", "ci"}


def test_every_kind_of_arm_runs_and_exposures_are_lists_seen(result) -> None:  # type: ignore[no-untyped-def]
    kinds = {a.kind for a in result.arms}
    assert {"fixed", "intent", "heuristic_open", "heuristic_scroll"} <= kinds
    assert len([a for a in result.arms if a.kind == "fixed"]) >= 12
    ref, exp = COUNTS.index("refreshes"), COUNTS.index("exposures")
    for a in result.arms:
        m = result.time.matrix(a.key)
        assert (m[:, exp] <= m[:, ref]).all(), a.key  # at most one exposure per refresh
    fast = result.time.matrix("fixed_1m")
    assert fast[:, exp].sum() < fast[:, ref].sum()  # timer refreshes nobody looked at


def test_optimal_never_below_greedy(result) -> None:  # type: ignore[no-untyped-def]
    assert result.screens
    for s in result.screens:
        assert s.score_optimal >= s.score_greedy - 1e-9
        assert s.dups_greedy <= s.dups_none


def test_report_files_have_the_design_shape(result, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_report(result, tmp_path)
    doc = json.loads((tmp_path / "report.json").read_text())
    assert set(doc) == {"scenario", "users", "hours", "seed", "headline", "metrics"}
    head = doc["headline"]
    assert set(head) >= HEADLINE_KEYS
    assert head["operating_point"] == "reference_click_pv"
    assert head["reference_interval_min"] == 5
    assert head["oracle_refresh_requests_change"] is None  # no --bounds
    assert head["oracle_gap_captured"] is None
    if head["refresh_requests_change"] is not None:
        assert abs(head["click_pv_change"]) < 1e-9  # the mixture sits at the reference click PV
        assert (
            head["refresh_requests_change"]
            == doc["metrics"]["time.refresh_requests_per_user"]["relative_change"]
        )
    assert (tmp_path / "report.md").read_text().startswith("# refresh-sim report")
    assert (tmp_path / "pareto.png").stat().st_size > 1000


@pytest.mark.slow
def test_same_seed_same_report(tmp_path: Path) -> None:
    scenario = tiny_scenario_file(tmp_path)
    outs = []
    for k in range(2):
        out = tmp_path / f"out{k}"
        args = ["run", "--scenario", str(scenario), "--users", "40", "--hours", "8", "--seed",
                "11", "--out", str(out), "--quiet"]  # fmt: skip
        assert main(args) == 0
        outs.append(out)
    for name in ("report.json", "report.md"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()


def test_cli_rejects_bad_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[clicks]\nbrowse_rate = -2\n")
    assert main(["run", "--scenario", str(bad), "--users", "5"]) == 2
    assert "clicks.browse_rate" in capsys.readouterr().err


def test_bounds_are_diagnostic_arms_reported_apart(tmp_path: Path) -> None:
    r = run_fast(small(), users=60, hours=12, seed=5, bounds=True)
    kinds = {a.kind for a in r.arms}
    assert {"bound_prior", "bound_visit"} <= kinds
    metrics = write_report(r, tmp_path)
    assert any(k.startswith("bounds.bound_visit_") for k in metrics)
    assert not any(k.startswith("time.bound") for k in metrics)  # never mistaken for a policy
    assert "### Bounds" in (tmp_path / "report.md").read_text()


def test_bounds_need_fast_mode(capsys: pytest.CaptureFixture[str]) -> None:
    scenario = SCENARIOS / "travellers.toml"
    assert main(["run", "--scenario", str(scenario), "--mode", "http", "--bounds"]) == 2
    assert "--bounds" in capsys.readouterr().err
