"""Scenario files: the shipped ones load and differ; bad values are named by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from client_sim.scenario import ScenarioError, load_scenario, parse_scenario
from tests.client_sim.sim_support import SCENARIOS


def test_shipped_scenarios_load_and_differ() -> None:
    a = load_scenario(SCENARIOS / "city_commuters.toml")
    b = load_scenario(SCENARIOS / "travellers.toml")
    assert a.name == "city_commuters" and b.name == "travellers"
    assert a.places.city != b.places.city
    assert a.population.mix != b.population.mix
    assert b.places.destinations and not a.places.destinations


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
