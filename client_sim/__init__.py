"""client_sim: a synthetic world of devices that compares each refreshd policy with its baseline.

Fast mode (`client_sim.fast`) drives the service's pure pieces in-process on a virtual clock;
HTTP mode (`client_sim.http_mode`) drives a running service. `refresh-sim run` is the CLI.
"""

from client_sim.fast import FastResult, run_fast
from client_sim.report import build_metrics, write_report
from client_sim.scenario import Scenario, ScenarioError, load_scenario, parse_scenario

__all__ = [
    "FastResult",
    "Scenario",
    "ScenarioError",
    "build_metrics",
    "load_scenario",
    "parse_scenario",
    "run_fast",
    "write_report",
]
