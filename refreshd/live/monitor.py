"""Model monitoring in the worker: score drift, missing features, feature ages, calibration.

Per decision the service makes three calls, ~3.5 µs together (`python -m load.bench_monitor`).
`scored` (the model answered) keeps a reference to the feature vector, whose missing values
are counted with numpy for a batch of vectors at once (every `MISSING_BATCH` vectors and
before each scrape), and appends the score to a bounded window of this worker's recent scores
for that model version. `aged` keeps the logged feature ages for
`refreshd_feature_age_seconds`, observed in batches the same way. `decided` counts the answer
by reason, outcome, node and degraded, through counter children resolved once per label
combination. The gauges that summarise the window are computed before each scrape
(`update`), not per decision: the PSI of the window against the training scores the model
carries (`score_quantiles` in its metrics, recorded by `intent.train`), and the live model's
age. The calibration gauge comes from a scheduled job (`calibrate`,
`refreshd.live.calibration`). docs/operations.md lists the metrics and alerts.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Sequence

import numpy as np
from prometheus_client import Counter, Gauge

from intent.drift import psi
from intent.features import FEATURE_NAMES, MISSING
from refreshd.core.ladder import NODE_OF_REASON
from refreshd.core.messages import DecideResponse
from refreshd.live.calibration import Calibration, calibrate
from refreshd.live.registry import ModelRegistry
from refreshd.metrics import Metrics
from refreshd.store.protocol import Store

__all__ = ["PSI_MIN_SCORES", "Monitor"]

log = logging.getLogger(__name__)

# Fewer scores than this make PSI noise: with ten bins its expected value on an unchanged
# distribution is about 9 / n (0.02 at 500), well below the 0.2 alert.
PSI_MIN_SCORES = 500
# Windows kept at once: the live version and the few it replaced (their scores are still in
# flight for a moment after a swap); older ones are dropped.
MAX_WINDOWS = 4
# Scored vectors held until their missing values are counted: a numpy pass over 256 of them
# costs ~1.1 µs a vector; a Python loop costs ~1.4 µs plus ~0.5 µs per counter increment, and
# a vector has ~10 missing values.
MISSING_BATCH = 256
_BOOL = {True: "true", False: "false"}


class Monitor:
    """This worker's view of the live model: score windows, missing features, gauges."""

    def __init__(
        self,
        metrics: Metrics,
        registry: ModelRegistry,
        clock: Callable[[], int],
        *,
        window: int,
    ) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.metrics = metrics
        self.registry = registry
        self.clock = clock
        self.window = window
        self.windows: dict[str, collections.deque[float]] = {}
        self._missing = [metrics.feature_missing.labels(name) for name in FEATURE_NAMES]
        self._vectors: list[Sequence[float]] = []
        self._ages: list[Sequence[float | None]] = []
        self._decisions: dict[tuple[str, bool, bool], Counter] = {}
        self._psi_versions: set[str] = set()
        self._calibrated: set[str] = set()
        metrics.before_render.append(self.update)

    # --- per decision --------------------------------------------------------------------------

    def scored(self, features: Sequence[float], score: float, version: str) -> None:
        """Count a scored vector and its missing features; remember the score."""
        vectors = self._vectors
        vectors.append(features)  # computed for this decision and never changed afterwards
        if len(vectors) >= MISSING_BATCH:
            self.count_missing()
        window = self.windows.get(version)
        if window is None:
            window = self._new_window(version)
        window.append(score)

    def aged(self, ages: Sequence[float | None]) -> None:
        """Hold a logged decision's feature ages for the age histogram (counted in batches)."""
        if len(ages) != len(self.metrics.feature_age.features):
            return  # another features version's vector (a rolling upgrade)
        self._ages.append(ages)
        if len(self._ages) >= MISSING_BATCH:
            self.count_ages()

    def count_ages(self) -> None:
        """Add the held age vectors to `refreshd_feature_age_seconds`."""
        ages, self._ages = self._ages, []
        if ages:
            self.metrics.feature_age.add(np.array(ages, dtype=np.float64))  # None → NaN

    def decided(self, answer: DecideResponse) -> None:
        """Count a decision by reason, outcome, node and degraded, and its degraded causes."""
        key = (answer.reason, answer.refresh, answer.degraded)
        counter = self._decisions.get(key)
        if counter is None:
            node = NODE_OF_REASON[answer.reason]
            refresh, degraded = _BOOL[answer.refresh], _BOOL[answer.degraded]
            counter = self.metrics.decisions.labels(answer.reason, refresh, node, degraded)
            self._decisions[key] = counter
        counter.inc()
        for cause in answer.degraded_reasons:
            self.metrics.degraded.labels(cause).inc()

    def count_missing(self) -> None:
        """Add the held vectors to the scored and missing-feature counters."""
        vectors, self._vectors = self._vectors, []
        if not vectors:
            return
        self.metrics.features_scored.inc(len(vectors))
        counts = (np.asarray(vectors, dtype=np.float64) == MISSING).sum(axis=0).tolist()
        for child, n in zip(self._missing, counts, strict=True):
            if n:
                child.inc(n)

    def _new_window(self, version: str) -> collections.deque[float]:
        while len(self.windows) >= MAX_WINDOWS:
            del self.windows[next(iter(self.windows))]  # the oldest version first
        window: collections.deque[float] = collections.deque(maxlen=self.window)
        self.windows[version] = window
        return window

    # --- before each scrape --------------------------------------------------------------------

    def psi(self) -> dict[str, float]:
        """Return the PSI of each version's window that is full enough and has a reference."""
        meta = self.registry.meta
        if meta is None:
            return {}
        reference = meta.metrics.get("score_quantiles")
        window = self.windows.get(meta.version)
        if not reference or window is None or len(window) < min(PSI_MIN_SCORES, self.window):
            return {}
        return {meta.version: psi(reference, window)}

    def update(self) -> None:
        """Count held vectors and ages; set the gauges: PSI per version, the live model's age."""
        self.count_missing()
        self.count_ages()
        values = self.psi()
        _set_labelled(self.metrics.score_psi, values, self._psi_versions)
        meta = self.registry.meta
        age_s = float("nan") if meta is None else (self.clock() - meta.created_ts) / 1000
        self.metrics.model_age.set(age_s)

    # --- the scheduled job ---------------------------------------------------------------------

    async def calibrate(self, store: Store) -> list[Calibration]:
        """Measure calibration on the store's matured decisions; set the gauge per version."""
        results = await calibrate(store, self.registry, now_ms=self.clock())
        _set_labelled(
            self.metrics.calibration_ratio,
            {c.model_version: c.ratio for c in results},
            self._calibrated,
        )
        for c in results:
            log.debug("calibration of %s: %.3f on %d decisions", c.model_version, c.ratio, c.rows)
        return results


def _set_labelled(gauge: Gauge, values: dict[str, float], shown: set[str]) -> None:
    """Set a gauge's `model_version` children to `values`; remove the ones no longer there."""
    for version in shown - values.keys():
        gauge.remove(version)
    for version, value in values.items():
        gauge.labels(version).set(value)
    shown.clear()
    shown.update(values)
