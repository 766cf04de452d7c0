"""The experiments a worker decides with: loaded from the store, refreshed when they change."""

from __future__ import annotations

import logging

from refreshd.experiments import ExperimentConfig, ExperimentError, parse_experiment
from refreshd.store import Store

log = logging.getLogger(__name__)
KIND = "experiments"


class ExperimentBook:
    """Every stored experiment of this worker and the store version it came from."""

    def __init__(self) -> None:
        self.version = -1
        self.experiments: dict[str, ExperimentConfig] = {}

    async def refresh(self, store: Store) -> bool:
        """Reload the experiments if their version changed; return whether it did."""
        if await store.config_version(KIND) == self.version:
            return False
        version, items = await store.get_config(KIND)
        experiments: dict[str, ExperimentConfig] = {}
        for exp_id, blob in sorted(items.items()):
            try:
                experiments[exp_id] = parse_experiment(exp_id, blob)
            except ExperimentError as exc:  # stored by an older version?
                log.error("skipping stored experiment %s: %s", exp_id, exc)
        self.experiments, self.version = experiments, version
        return True
