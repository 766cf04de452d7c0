"""The holdouts a worker decides with: loaded from the store, refreshed when they change."""

from __future__ import annotations

import logging

from refreshd.core.experiments import ExperimentConfig, ExperimentError
from refreshd.core.holdouts import HoldoutConfig, as_experiment, holdout_key, parse_holdout
from refreshd.live.configbook import reload_if_changed
from refreshd.store.protocol import Store

log = logging.getLogger(__name__)
KIND = "holdouts"


class HoldoutBook:
    """Every stored holdout of this worker, and the running ones as the flow counts them."""

    def __init__(self) -> None:
        self.version = -1
        self.holdouts: dict[str, HoldoutConfig] = {}
        self.running: dict[str, ExperimentConfig] = {}  # holdout_key(id) → as_experiment

    async def refresh(self, store: Store) -> bool:
        """Reload the holdouts if their version changed; return whether it did."""
        loaded = await reload_if_changed(
            store, KIND, self.version, parse_holdout, (ExperimentError,)
        )
        if loaded is None:
            return False
        self.version, self.holdouts = loaded
        self.running = {
            holdout_key(hid): as_experiment(hid, cfg)
            for hid, cfg in self.holdouts.items()
            if cfg.status == "running"
        }
        log.info(
            "holdouts v%d: %d holdouts, %d running",
            self.version,
            len(self.holdouts),
            len(self.running),
        )
        return True
