"""`refresh-sim sweep`: parameters parsed, one row per value, the oracles and the gap reported."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from client_sim.cli import main
from client_sim.sweep import parse_param, run_sweep, set_key
from tests.client_sim.sim_support import SCENARIOS


def test_params_parse_as_toml_scalars() -> None:
    assert parse_param("launch.informativeness=0,0.5,1") == ("launch.informativeness", [0, 0.5, 1])
    assert parse_param("meta.name=a,b")[1] == ["a", "b"]
    for bad in ("launch.informativeness", "=1", "k="):
        with pytest.raises(ValueError):
            parse_param(bad)


def test_set_key_copies_and_creates_tables() -> None:
    base = {"launch": {"informativeness": 0.4}}
    got = set_key(base, "launch.informativeness", 0.0)
    assert got["launch"]["informativeness"] == 0.0 and base["launch"]["informativeness"] == 0.4
    assert set_key({}, "in_visit.informativeness", 1)["in_visit"] == {"informativeness": 1}
    with pytest.raises(ValueError):
        set_key({"launch": 3}, "launch.informativeness", 0)


def test_a_small_sweep_writes_one_row_per_value(tmp_path: Path) -> None:
    data = tomllib.loads((SCENARIOS / "city_commuters.toml").read_text())
    data["time"].update(train_users=120, train_days=2)
    data["space"].update(users=2)
    data["dedupe"].update(users=2, screens_per_user=2)
    data["report"].update(bootstrap=60)
    rows = run_sweep(data, [("launch.informativeness", [0, 1])], users=60, hours=24, seed=3,
                     out=tmp_path)  # fmt: skip
    assert [r["params"] for r in rows] == [{"launch.informativeness": 0},
                                           {"launch.informativeness": 1}]  # fmt: skip
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert doc["operating_point"] == "reference_click_pv" and len(doc["rows"]) == 2
    for r in rows:
        assert {"learned_refresh_requests_change", "learned_ci", "oracle_gap_captured",
                "prior_signal_oracle_refresh_requests_change",
                "actual_intent_oracle_refresh_requests_change"} <= set(r)  # fmt: skip
    assert (tmp_path / "sweep.png").stat().st_size > 0
    assert "oracle gap captured" in (tmp_path / "sweep.md").read_text()


def test_cli_refuses_a_bad_param(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["sweep", "--scenario", str(SCENARIOS / "city_commuters.toml"), "--param", "nope",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 2
    assert "key=value" in capsys.readouterr().err
