"""Train the intent model with a time-based holdout and report AUC, logloss and calibration.

When the training rows include randomised decisions (exploration traffic), the staleness gain
curve (`intent.staleness`) is fitted on them and shipped in the model text, so the decision
score becomes P(click) × gain(list age). AUC, logloss and calibration always judge the click
probability itself.

`train(..., init_model=text)` continues boosting from an existing model (LightGBM's
`init_model`): the new trees fit what that model gets wrong on the new rows, and the result
is the old trees plus the new ones. That is sound only when both see the same feature columns,
so it refuses a model of another features version.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Protocol

import lightgbm as lgb
import numpy as np

from intent.dataset import Dataset
from intent.model import IntentModel, ModelMismatch, read_tags, with_tags
from intent.staleness import AGE_FEATURE, fit_staleness

__all__ = [
    "DEFAULT_PARAMS",
    "Fitted",
    "Fitter",
    "TrainResult",
    "auc",
    "evaluate",
    "fit_here",
    "is_better",
    "logloss",
    "score_quantiles",
    "train",
]

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "metric": "binary_logloss",  # early stopping on logloss keeps the scores calibrated
    "learning_rate": 0.05,
    "num_leaves": 15,  # a few thousand rows per day cannot support deeper trees
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "lambda_l2": 1.0,
    "verbose": -1,
    "deterministic": True,
    "force_row_wise": True,  # deterministic=True needs a fixed histogram layout
}
# Probabilities are clipped this far from 0 and 1 so one confident miss cannot make logloss inf.
_EPS = 1e-15
# Below this many rows a second thread costs more in OpenMP synchronisation than it saves,
# and on a busy host (training shares it with the service) spinning threads stall each other.
SINGLE_THREAD_ROWS = 200_000
CALIBRATION_BINS = 10
# The training score distribution travels with the model as this many evenly spaced quantiles
# (0 %, 1 %, …, 100 %) of the decision scores of every training row: ~1 KB of metadata, and a
# PSI against them is within 0.01 (or 5 %) of one against the rows themselves (tests/intent).
SCORE_QUANTILES = 101


@dataclasses.dataclass(frozen=True, slots=True)
class TrainResult:
    """A trained model as LightGBM text plus what it was trained on and how well it did."""

    model_text: str
    feature_names: tuple[str, ...]
    features_version: str
    metrics: dict[str, Any]
    best_iteration: int


def auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Return ROC AUC via the Mann-Whitney rank statistic (ties count half); NaN if one class."""
    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Return 1-based ranks, ties sharing their average (scipy's rankdata, without its import)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    first = np.concatenate(([True], xs[1:] != xs[:-1]))
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, len(xs)))
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = (starts + (sizes + 1) / 2.0)[np.cumsum(first) - 1]
    return ranks


def logloss(y: np.ndarray, p: np.ndarray) -> float:
    """Return the mean binary log loss (LightGBM's `binary_logloss`); NaN for no rows."""
    y = np.asarray(y, dtype=np.float64)
    q = np.clip(p, _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))) if len(y) else math.nan


def _metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    y = np.asarray(y, dtype=np.float64)
    bins = np.minimum((p * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    table = []
    for b in range(CALIBRATION_BINS):
        mask = bins == b
        n = int(mask.sum())
        table.append(
            {
                "lo": b / CALIBRATION_BINS,
                "hi": (b + 1) / CALIBRATION_BINS,
                "count": n,
                "mean_predicted": float(p[mask].mean()) if n else None,
                "observed_rate": float(y[mask].mean()) if n else None,
            }
        )
    return {
        "auc": auc(y, p),
        "logloss": logloss(y, p),
        "rows": len(y),
        "positives": int(y.sum()),
        "base_rate": float(y.mean()) if len(y) else math.nan,
        "mean_predicted": float(p.mean()) if len(y) else math.nan,
        "calibration": table,
    }


def score_quantiles(scores: np.ndarray) -> list[float]:
    """Return `SCORE_QUANTILES` evenly spaced quantiles of scores: their distribution, compact.

    Equally spaced quantiles stand for equally many rows each, so they can be passed to
    `intent.drift.psi` as the expected scores in place of the rows.
    """
    points = np.quantile(np.asarray(scores, dtype=np.float64), np.linspace(0, 1, SCORE_QUANTILES))
    return [round(float(q), 6) for q in points]


def evaluate(model_text: str, dataset: Dataset) -> dict[str, Any]:
    """Return AUC, logloss, rows, positives and a calibration table of a model on a dataset."""
    model = IntentModel.from_text(
        model_text,
        feature_names=dataset.feature_names,
        features_version=dataset.features_version,
    )
    return _metrics(dataset.y, model.predict_click(dataset.X))


@dataclasses.dataclass(frozen=True, slots=True)
class Fitted:
    """A booster as one fitter left it: its best round and how many rounds the run looked at."""

    booster: lgb.Booster
    best_iteration: int
    rounds_run: int
    fitted_on: str  # where the trees were grown, for the report: "this machine", "dask ..."


class Fitter(Protocol):
    """Grow a booster on `fit` and pick its round on `holdout` (logloss, early-stopping rule).

    Only this step differs between training here and on a cluster (`intent.distributed`);
    the split, the parameters, the tags and the report stay in `train`.
    """

    def __call__(
        self,
        fit: Dataset,
        holdout: Dataset,
        params: dict[str, Any],
        *,
        num_boost_round: int,
        early_stopping_rounds: int,
        init_model: str | None = None,
    ) -> Fitted: ...


def fit_here(
    fit: Dataset,
    holdout: Dataset,
    params: dict[str, Any],
    *,
    num_boost_round: int,
    early_stopping_rounds: int,
    init_model: str | None = None,
) -> Fitted:
    """Grow the booster in this process, stopping once the holdout logloss stops improving."""
    threads = 1 if len(fit) < SINGLE_THREAD_ROWS else 2
    p = {"num_threads": threads, **params}
    train_set = lgb.Dataset(fit.X, fit.y, feature_name=list(fit.feature_names), params=p)
    valid_set = lgb.Dataset(holdout.X, holdout.y, reference=train_set, params=p)
    history: dict[str, Any] = {}
    booster = lgb.train(
        p,
        train_set,
        num_boost_round=num_boost_round,
        valid_sets=[valid_set],
        valid_names=["holdout"],
        init_model=None if init_model is None else lgb.Booster(model_str=init_model),
        callbacks=[
            lgb.early_stopping(early_stopping_rounds, verbose=False),
            lgb.log_evaluation(0),
            lgb.record_evaluation(history),
        ],
    )
    # lgb.train hands back a booster already cut to the best iteration; the history tells how
    # many rounds actually ran. With an init model, iterations count its trees too.
    rounds_run = len(history["holdout"][p["metric"]])
    best = booster.best_iteration or booster.current_iteration()
    return Fitted(booster, best, rounds_run, "this machine")


def train(
    dataset: Dataset,
    *,
    params: Mapping[str, Any] | None = None,
    valid_fraction: float = 0.2,
    seed: int = 0,
    num_boost_round: int = 500,
    early_stopping_rounds: int = 30,
    init_model: str | None = None,
    fitter: Fitter = fit_here,
) -> TrainResult:
    """Train on the earlier rows, stop early on the later `valid_fraction`, and report.

    With `init_model` (a model text of the same features version) the rounds continue that
    model; its staleness curve is kept when these rows cannot fit a new one. `fitter` grows the
    trees (here, or on a Dask cluster: `intent.distributed`).
    """
    fit, holdout = dataset.split_by_time(valid_fraction)
    if len(set(fit.y.tolist())) < 2:
        raise ValueError("the training rows need both labels")
    init_tags = read_tags(init_model) if init_model is not None else {}
    if init_model is not None and init_tags.get("features_version") != dataset.features_version:
        raise ModelMismatch(
            f"cannot continue a model of features version {init_tags.get('features_version')} "
            f"on rows of {dataset.features_version}"
        )
    p = {**DEFAULT_PARAMS, **(params or {}), "seed": seed}
    fitted = fitter(
        fit,
        holdout,
        p,
        num_boost_round=num_boost_round,
        early_stopping_rounds=early_stopping_rounds,
        init_model=init_model,
    )
    best = fitted.best_iteration
    tags = {"features_version": dataset.features_version}
    explored = dataset.take(np.flatnonzero(dataset.explored))
    curve = None
    if len(explored) and AGE_FEATURE in dataset.feature_names:
        age = explored.X[:, dataset.feature_names.index(AGE_FEATURE)]
        curve = fit_staleness(age, explored.refreshed, explored.clicks_soon)
    if curve is not None:
        tags["staleness"] = curve.to_text()
    elif "staleness" in init_tags:
        tags["staleness"] = init_tags["staleness"]
    text = with_tags(fitted.booster.model_to_string(num_iteration=best), **tags)
    metrics = evaluate(text, holdout)
    # Every row, not the holdout alone: the holdout is the last hours of the log, and a live
    # window compared with one time of day would drift by the clock. (`predict` is what the
    # service scores with: the click probability times the staleness gain.)
    model = IntentModel.from_text(
        text, feature_names=dataset.feature_names, features_version=dataset.features_version
    )
    metrics.update(
        score_quantiles=score_quantiles(model.predict(dataset.X)),
        train_rows=len(fit),
        train_positives=int(fit.y.sum()),
        best_iteration=best,
        rounds_run=fitted.rounds_run,
        stopped_early=fitted.rounds_run < num_boost_round,
        warm_started=init_model is not None,
        holdout_from_ts=int(holdout.ts.min()),
        explored_rows=len(explored),
        staleness=None if curve is None else [list(p) for p in curve.points],
        fitted_on=fitted.fitted_on,
    )
    return TrainResult(
        model_text=text,
        feature_names=dataset.feature_names,
        features_version=dataset.features_version,
        metrics=metrics,
        best_iteration=best,
    )


def is_better(
    new_metrics: Mapping[str, Any],
    current_metrics: Mapping[str, Any] | None,
    *,
    min_auc_gain: float = 0.0,
) -> bool:
    """Return True if the new model may replace the current one (both scored on one holdout)."""
    new_auc = float(new_metrics["auc"])
    if math.isnan(new_auc):
        return False  # a one-class holdout says nothing; keep what we have
    if current_metrics is None:
        return True
    if (new_metrics["rows"], new_metrics["positives"]) != (
        current_metrics["rows"],
        current_metrics["positives"],
    ):
        raise ValueError("compare models on the same holdout: rows/positives differ")
    current_auc = float(current_metrics["auc"])
    return math.isnan(current_auc) or new_auc >= current_auc + min_auc_gain
