"""Retraining from the store's logs on matured labels, published only if not worse.

A decision's label matures when its click window (`intent.dataset.LABEL_HORIZON_S`) has closed
(`intent.dataset.label_matured`); only matured decisions are trained on, since a younger one
would count as "no click" merely because its click has not happened yet.

A candidate is made one of two ways:
- **warm**: continue the champion (LightGBM `init_model`) on the decisions whose labels matured
  after the champion's newest one (`TrainWindow.label_horizon_ts`; every matured one for a
  champion without a window, the bootstrap model). Sound only for a champion of this code's
  features and with a bounded number of trees; a few minutes of new labels train in seconds.
- **full**: a new model on the sliding window of the newest `MAX_LOG_ROWS` logged decisions.
  Used when a warm start is not sound, when asked (the API, the CLI), and every `full_every_s`
  of a warm chain, so that its trees stay bounded and old patterns can be forgotten.
Either way the holdout is the newest fifth of the candidate's rows, the champion is scored on
the same rows, and the candidate is published only if not worse (`intent.train.is_better`).

The heavy part (`fit_candidate`: reading and decoding the logs, building point-in-time rows,
LightGBM) runs off the event loop: in a worker process for the service (`Trainer`), which also
reads the logs itself from the store's address (`LogSource`), and in a thread for the API and
the CLI. Parsing some 600 000 log entries and building rows is pure Python: on the event loop it
stalled decisions for seconds, and in a thread it would hold the GIL against them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import math
import multiprocessing
import os
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import msgspec

from intent.dataset import Dataset, EventLog, build_dataset, label_matured, received_at
from intent.features import FEATURES_VERSION
from intent.model import read_features_version
from intent.train import Fitter, TrainResult, evaluate, fit_here, is_better, train
from refreshd.core.errors import Conflict
from refreshd.live.registry import ModelMeta, ModelRegistry, TrainWindow, publish
from refreshd.store.protocol import LOG_DECISIONS, LOG_EVENTS, Store
from refreshd.store.redis import RedisStore

log = logging.getLogger(__name__)

# Below this many rows a holdout AUC is noise; keep the current model.
MIN_TRAIN_ROWS = 500
# The newest rows used for one training run: a few days of a mid-size app, minutes of CPU.
MAX_LOG_ROWS = 300_000
# The holdout share: train()'s default, so the champion is scored on the candidate's holdout.
HOLDOUT_FRACTION = 0.2
# A warm start adds at most this many trees and stops after this many without gain: minutes of
# new labels support a few trees, not hundreds.
WARM_ROUNDS = 100
WARM_PATIENCE = 10
# How far below its champion's AUC a warm candidate may rank the holdout (`_not_worse`): well
# inside the noise of a few hundred rows' AUC (~0.02), far below a real regression.
WARM_AUC_MARGIN = 0.005
# A chain with this many trees is not continued (each tree costs every decision ~0.04 µs).
MAX_WARM_TREES = 1000
# The worker process trains at the lowest priority, so on a busy host requests come first.
TRAINER_NICE = 19
# The worker process's own store connection: a read of the logs may take a while.
LOG_READ_TIMEOUT_S = 30.0
_decode = msgspec.json.Decoder()


class TrainReport(msgspec.Struct):
    published: bool
    reason: str
    rows: int
    metrics: dict[str, Any]
    current_metrics: dict[str, Any] | None
    model: ModelMeta | None
    mode: str = "full"  # "warm": the champion continued on new labels; "full": a new model
    window: TrainWindow | None = None  # the labels the candidate learnt from


@dataclasses.dataclass(frozen=True)
class LogSource:
    """A Redis store's address: a worker process reads the logs itself rather than receive them."""

    url: str | None
    cluster_nodes: tuple[str, ...]

    async def read(self) -> tuple[list[bytes], list[bytes]]:
        store = RedisStore(self.url, cluster_nodes=self.cluster_nodes, timeout_s=LOG_READ_TIMEOUT_S)
        try:
            return await _read_logs(store)
        finally:
            await store.close()


async def _read_logs(store: Store) -> tuple[list[bytes], list[bytes]]:
    decisions = await store.read_log(LOG_DECISIONS, MAX_LOG_ROWS)
    return decisions, await store.read_log(LOG_EVENTS, MAX_LOG_ROWS)


@dataclasses.dataclass(frozen=True)
class FitJob:
    """What `fit_candidate` needs, picklable for a worker process: the logs or where they are."""

    decisions: list[bytes]
    events: list[bytes]
    logs: LogSource | None
    as_of_ms: int
    min_rows: int
    champion_text: str | None
    champion: ModelMeta | None
    warm: bool  # continue the champion (the caller checked `warm_start_unsound`)
    fitter: Fitter = fit_here  # picklable for the training process (a function, not a client)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A trained candidate and the champion's metrics on its holdout, or why there is none."""

    mode: str
    rows: int
    result: TrainResult | None = None
    champion_metrics: dict[str, Any] | None = None
    window: TrainWindow | None = None
    problem: str | None = None  # not enough data: no candidate
    warning: str | None = None  # the champion could not be scored on the holdout


def warm_start_unsound(text: str | None, meta: ModelMeta | None) -> str | None:
    """Return why the champion cannot be continued, or None if it can."""
    if text is None or meta is None:
        return "no champion"
    if read_features_version(text) != FEATURES_VERSION:
        return "the champion was trained on other features"
    if text.count("\nTree=") >= MAX_WARM_TREES:
        return f"the champion has {MAX_WARM_TREES} trees or more"
    return None


def fit_candidate(job: FitJob) -> Candidate:
    """Build matured rows from the logs, train a candidate, score the champion too."""
    blobs = (job.decisions, job.events) if job.logs is None else asyncio.run(job.logs.read())
    decisions = [_decode.decode(b) for b in blobs[0]]
    events = EventLog(_decode.decode(b) for b in blobs[1])
    matured = [d for d in decisions if label_matured(d, job.as_of_ms)]
    mode, init, base_ts = "full", None, job.as_of_ms
    if job.warm and job.champion is not None:
        mode, init = "warm", job.champion_text
        window = job.champion.window
        base_ts = job.champion.created_ts if window is None else window.base_ts
        if window is not None:
            matured = [d for d in matured if received_at(d) > window.label_horizon_ts]
    dataset = build_dataset(matured, events)
    what = "newly matured" if mode == "warm" else "matured"
    problem = (
        f"not enough training data: {len(dataset)} {what} rows (need {job.min_rows} with both "
        "labels)"
    )
    if len(dataset) < job.min_rows or len(set(dataset.y.tolist())) < 2:
        return Candidate(mode, len(dataset), problem=problem)
    try:
        if init is None:
            result = train(dataset, fitter=job.fitter)
        else:
            result = train(dataset, init_model=init, num_boost_round=WARM_ROUNDS,
                           early_stopping_rounds=WARM_PATIENCE, fitter=job.fitter)  # fmt: skip
    except ValueError:  # the earlier rows hold one label only
        return Candidate(mode, len(dataset), problem=problem)
    _, holdout = dataset.split_by_time(HOLDOUT_FRACTION)
    champion_metrics, warning = None, None
    if job.champion_text is not None:
        try:
            champion_metrics = evaluate(job.champion_text, holdout)
        except Exception as exc:  # e.g. older feature declarations: the new model wins
            warning = f"the champion cannot be scored on the new holdout: {exc}"
    used = set(dataset.decision_ids)
    window = TrainWindow(
        label_horizon_ts=max(received_at(d) for d in matured if str(d["decision_id"]) in used),
        from_ts=int(dataset.ts.min()),
        to_ts=int(dataset.ts.max()),
        warm_start_of=job.champion.version if init is not None and job.champion else None,
        base_ts=base_ts,
    )
    return Candidate(mode, len(dataset), result, champion_metrics, window, warning=warning)


def _not_worse(mode: str, metrics: dict[str, Any], champion: dict[str, Any] | None) -> bool:
    """The gate: a full candidate must rank at least as well as the champion on the holdout.

    A warm candidate is the champion plus a few trees, so their AUCs differ mostly by the
    holdout's noise and a strict comparison would refuse it about every other time. It passes
    when it predicts the newest labels at least as well (logloss, what its trees were stopped
    on) and ranks them no worse than `WARM_AUC_MARGIN` below the champion; the full retrain
    every `full_every_s` is held to the strict rule, so the chain cannot drift far.
    """
    if mode != "warm" or champion is None:
        return is_better(metrics, champion)
    return metrics["logloss"] <= champion["logloss"] and is_better(
        metrics, champion, min_auc_gain=-WARM_AUC_MARGIN
    )


def freshness_s(meta: ModelMeta | None, now_ms: int) -> float:
    """Seconds from the newest matured label a model learnt from to now; NaN if unknown."""
    if meta is None or meta.window is None:
        return math.nan
    return max(0.0, (now_ms - meta.window.label_horizon_ts) / 1000)


async def read_logs(store: Store, count: int) -> tuple[list[Any], list[Any]]:
    """Return the newest `count` rows of the decision log and of the event log, decoded."""
    decisions = [_decode.decode(b) for b in await store.read_log(LOG_DECISIONS, count)]
    events = [_decode.decode(b) for b in await store.read_log(LOG_EVENTS, count)]
    return decisions, events


async def logged_dataset(store: Store, *, min_rows: int = MIN_TRAIN_ROWS) -> Dataset:
    """Build point-in-time rows from the newest logs; 409 if too few to train or judge on."""
    decisions, events = await read_logs(store, MAX_LOG_ROWS)
    dataset = await asyncio.to_thread(build_dataset, decisions, events)
    if len(dataset) < min_rows or len(set(dataset.y.tolist())) < 2:
        raise Conflict(
            f"not enough training data: {len(dataset)} rows (need {min_rows} with both labels)",
            field=None,
        )
    return dataset


def holdout_of(dataset: Dataset) -> Dataset:
    """Return the rows every model is judged on: the newest `HOLDOUT_FRACTION`."""
    return dataset.split_by_time(HOLDOUT_FRACTION)[1]


async def evaluate_or_none(model_text: str | None, holdout: Dataset) -> dict[str, Any] | None:
    """Return a model's metrics on the holdout; None when there is no model or it cannot be
    evaluated (e.g. trained on older feature declarations: then the other model wins)."""
    if model_text is None:
        return None
    try:
        return await asyncio.to_thread(evaluate, model_text, holdout)
    except Exception as exc:
        log.warning("model cannot be evaluated on the holdout: %s", exc)
        return None


async def retrain(
    store: Store,
    registry: ModelRegistry,
    *,
    now_ms: int,
    force: bool = False,
    source: str = "retrain",
    who: str | None = None,
    min_rows: int = MIN_TRAIN_ROWS,
    warm: bool = False,
    executor: concurrent.futures.Executor | None = None,
    logs: LogSource | None = None,
    fitter: Fitter = fit_here,
) -> TrainReport:
    """Train on the newest matured logs; publish unless the champion is better on the holdout.

    `warm` continues the champion when `warm_start_unsound` finds nothing against it.
    `executor` runs the heavy part (None: a thread); with `logs`, it reads the logs too.
    `fitter` grows the booster (here, or on a Dask cluster: `intent.distributed`); the rows,
    the holdout and the publish rule are the same whichever it is.
    """
    decisions, events = ([], []) if logs is not None else await _read_logs(store)
    text, champion = registry.text, registry.meta
    warm = warm and warm_start_unsound(text, champion) is None
    job = FitJob(decisions, events, logs, now_ms, min_rows, text, champion, warm, fitter)
    cand = await asyncio.get_running_loop().run_in_executor(executor, fit_candidate, job)
    if cand.warning:
        log.warning("%s", cand.warning)
    if cand.result is None:
        raise Conflict(cand.problem or "no candidate", field=None)
    result, current = cand.result, cand.champion_metrics

    def report(published: bool, reason: str, model: ModelMeta | None = None) -> TrainReport:
        return TrainReport(
            published, reason, cand.rows, result.metrics, current, model, cand.mode, cand.window
        )

    if not force and result.model_text == text:
        return report(False, "identical to the current model")
    if not force and not _not_worse(cand.mode, result.metrics, current):
        kept = champion.version if champion is not None else "no model"
        got = f"candidate AUC {result.metrics['auc']:.4f} logloss {result.metrics['logloss']:.4f}"
        if current is not None:
            got += f", champion {current['auc']:.4f} {current['logloss']:.4f} on the same holdout"
        return report(False, f"kept {kept} ({got})")
    meta = await publish(
        store, result, created_ts=now_ms, source=source, who=who, window=cand.window
    )
    await registry.refresh(store)
    reason = "forced" if force and current is not None else "better or first model"
    return report(True, reason, meta)


def _lower_priority() -> None:
    os.nice(TRAINER_NICE)


class Trainer:
    """One worker's continuous retraining: its training process and its full-retrain cadence.

    The process is started on the first run (only the worker holding the lease trains) and
    kept; a crashed one is replaced on the next run.
    """

    def __init__(self, *, full_every_s: float, in_process: bool = True) -> None:
        self.full_every_ms = int(full_every_s * 1000)
        self.in_process = in_process
        self.last_full_ms: int | None = None  # when this worker last made a full candidate
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._last_skip: str | None = None

    def _pool(self) -> concurrent.futures.Executor | None:
        if not self.in_process:
            return None
        if self._executor is None:
            self._executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),  # no fork of a threaded process
                initializer=_lower_priority,
            )
        return self._executor

    def full_due(self, registry: ModelRegistry, now_ms: int) -> bool:
        """Whether this run should be a full retrain rather than a warm start."""
        if warm_start_unsound(registry.text, registry.meta) is not None:
            return True
        meta = registry.meta
        assert meta is not None
        base = meta.created_ts if meta.window is None else meta.window.base_ts
        # A refused full candidate is not retried before the next period: the chain goes on.
        last = max(base, self.last_full_ms or base)
        return now_ms - last >= self.full_every_ms

    async def run(
        self, store: Store, registry: ModelRegistry, *, now_ms: int, source: str = "retrain"
    ) -> TrainReport | None:
        """Make one candidate (warm unless a full retrain is due) and log what happened."""
        full = self.full_due(registry, now_ms)
        try:
            report = await self.train(store, registry, now_ms=now_ms, source=source, warm=not full)
        except Conflict as exc:
            # Repeated every few minutes while traffic is low: say it once.
            level = logging.DEBUG if exc.message == self._last_skip else logging.INFO
            log.log(level, "%s skipped: %s", source, exc.message)
            self._last_skip = exc.message
            return None
        self._last_skip = None
        if report.mode == "full":
            self.last_full_ms = now_ms
        model = report.model.version if report.model else None
        log.info("%s (%s, %d rows): %s%s", source, report.mode, report.rows, report.reason,
                 f": {model}" if model else "")  # fmt: skip
        return report

    async def train(
        self,
        store: Store,
        registry: ModelRegistry,
        *,
        now_ms: int,
        force: bool = False,
        source: str = "api",
        who: str | None = None,
        warm: bool = False,
    ) -> TrainReport:
        """`retrain` in the training process, which reads the logs itself from a Redis store."""
        pool = self._pool()
        logs = None  # the memory store (tests) exists in this process only
        if pool is not None and isinstance(store, RedisStore):
            logs = LogSource(store.url, store.cluster_nodes)
        try:
            return await retrain(
                store, registry, now_ms=now_ms, force=force, source=source, who=who,
                warm=warm, executor=pool, logs=logs,
            )  # fmt: skip
        except BrokenProcessPool:
            self._executor = None  # the next run starts a new process
            raise

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
