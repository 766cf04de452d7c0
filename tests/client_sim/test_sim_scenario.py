"""Scenario files: the shipped ones load and differ; bad values are named by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from client_sim.launch import depth_auc, mixed, source_auc
from client_sim.scenario import InVisit, Launch, ScenarioError, load_scenario, parse_scenario
from tests.client_sim.sim_support import SCENARIOS


def test_shipped_scenarios_load_and_differ() -> None:
    a = load_scenario(SCENARIOS / "city_commuters.toml")
    b = load_scenario(SCENARIOS / "travellers.toml")
    assert a.name == "city_commuters" and b.name == "travellers"
    assert a.places.city != b.places.city
    assert a.population.mix != b.population.mix
    assert b.places.destinations and not a.places.destinations


def test_shipped_scenarios_take_the_launch_and_in_visit_defaults() -> None:
    """Neither file has [launch] or [in_visit]: both load unchanged, with the documented
    defaults (λ = κ = 0.4, chosen from the evidence in docs/simulator.md)."""
    for name in ("city_commuters", "travellers"):
        text = (SCENARIOS / f"{name}.toml").read_text()
        assert "[launch]" not in text and "[in_visit]" not in text
        sc = load_scenario(SCENARIOS / f"{name}.toml")
        assert sc.launch == Launch() and sc.in_visit == InVisit()
    assert Launch().informativeness == 0.4 and InVisit().informativeness == 0.4
    assert Launch().bypass == {"scan_shortcut": 0.8, "widget": 0.5}


def test_default_informativeness_is_the_evidence_midpoint() -> None:
    """AUC 0.5 (no information) to 0.7 (all context, Katevas et al. 2017) is the evidence
    range; the defaults sit at its midpoint, 0.60, for the source and for one depth step."""
    assert source_auc(*mixed(Launch())) == pytest.approx(0.60, abs=1e-3)
    assert depth_auc(InVisit()) == pytest.approx(0.60, abs=1e-9)
    # λ mixes linearly: AUC = 0.5 + λ (AUC(1) - 0.5); the evidence range ends at λ = 0.8.
    full = source_auc(*mixed(Launch(informativeness=1.0)))
    for lam in (0.0, 0.2, 0.8):
        auc = source_auc(*mixed(Launch(informativeness=lam)))
        assert auc == pytest.approx(0.5 + lam * (full - 0.5), abs=1e-9)
    assert source_auc(*mixed(Launch(informativeness=0.8))) == pytest.approx(0.70, abs=1e-3)
    assert mixed(Launch(informativeness=0.0))[0] == mixed(Launch(informativeness=0.0))[1]


def test_launch_tables_parse() -> None:
    sc = parse_scenario({"launch": {"informativeness": 0.0, "bypass": {}},
                         "in_visit": {"informativeness": 1.0}})  # fmt: skip
    assert sc.launch.informativeness == 0.0 and sc.launch.bypass == {}
    assert sc.launch.browse == Launch().browse
    assert sc.in_visit.informativeness == 1.0


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"clicks": {"browse_rate": -1}}, "clicks.browse_rate"),
        (
            {"archetypes": {"commuter": {"sessions_per_day": "many"}}},
            "archetypes.commuter.sessions_per_day",
        ),
        ({"archetypes": {"commuter": {"diurnal": [1, 2, 3]}}}, "archetypes.commuter.diurnal"),
        ({"archetypes": {"commuter": {"mobility": "teleport"}}}, "archetypes.commuter.mobility"),
        ({"archetypes": {"pilot": {}}}, "archetypes.pilot"),
        ({"population": {"mix": {"pilot": 1.0}}}, "population.mix.pilot"),
        ({"population": {"mix": {"commuter": 0.0}}}, "population.mix"),
        ({"places": {"radius_km": True}}, "places.radius_km"),
        ({"events": {"push_success": 1.5}}, "events.push_success"),
        ({"time": {"reference_interval_min": 7}}, "time.reference_interval_min"),
        ({"time": {"train_users": 10.5}}, "time.train_users"),
        ({"scenario": {"start": "yesterday"}}, "scenario.start"),
        ({"scenario": {"start": "2024-03-04T00:00:00"}}, "scenario.start"),
        ({"sessions": {"typo_key": 1}}, "sessions.typo_key"),
        ({"nonsense": {}}, "nonsense"),
        ({"launch": {"informativeness": 1.5}}, "launch.informativeness"),
        ({"launch": {"browse": {"shake": 1.0}}}, "launch.browse.shake"),
        ({"launch": {"utility": {"icon": -1.0}}}, "launch.utility.icon"),
        ({"launch": {"utility": {"icon": 0.0}}}, "launch.utility"),
        ({"launch": {"bypass": {"scan_shortcut": 2.0}}}, "launch.bypass.scan_shortcut"),
        ({"launch": {"bypass": {"teleport": 0.5}}}, "launch.bypass.teleport"),
        ({"launch": {"typo": 1}}, "launch.typo"),
        ({"in_visit": {"informativeness": -0.1}}, "in_visit.informativeness"),
        ({"in_visit": {"depth_per_scroll_browse": 3}}, "in_visit.depth_per_scroll_browse"),
    ],
)
def test_errors_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data)
    assert err.value.key == key
    assert key in str(err.value)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[scenario\nname = 1")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(bad)


def test_unknown_city_is_reported() -> None:
    from client_sim.places import build_places

    sc = parse_scenario({"places": {"city": "Atlantis", "country": "XX"}})
    with pytest.raises(ScenarioError) as err:
        build_places(sc.places)
    assert err.value.key == "places.city"
