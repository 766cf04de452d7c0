"""The experiments a worker decides with: loaded from the store, refreshed when they change."""

from __future__ import annotations

import logging

from refreshd.core.experiments import ExperimentConfig, ExperimentError, parse_experiment
from refreshd.core.expstats import REQUEST_METRICS
from refreshd.live.configbook import reload_if_changed
from refreshd.store.protocol import Store

log = logging.getLogger(__name__)
KIND = "experiments"


class ExperimentBook:
    """Every stored experiment of this worker and the store version it came from."""

    def __init__(self) -> None:
        self.version = -1
        self.experiments: dict[str, ExperimentConfig] = {}
        # The running experiments with a per-request guardrail: what the HTTP shell measures
        # for (most requests find none and cost nothing more).
        self.guarded: dict[str, ExperimentConfig] = {}

    async def refresh(self, store: Store) -> bool:
        """Reload the experiments if their version changed; return whether it did."""
        loaded = await reload_if_changed(
            store, KIND, self.version, parse_experiment, (ExperimentError,)
        )
        if loaded is None:
            return False
        self.version, self.experiments = loaded
        self.guarded = {
            exp_id: cfg
            for exp_id, cfg in self.experiments.items()
            if cfg.status == "running" and any(g in REQUEST_METRICS for g in cfg.guardrails)
        }
        running = sum(1 for e in self.experiments.values() if e.status == "running")
        log.info(
            "experiments v%d: %d experiments, %d running",
            self.version,
            len(self.experiments),
            running,
        )
        return True
