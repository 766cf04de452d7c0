"""Training on the synthetic log: holdout quality, report shape, early stopping, the publish rule."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from intent.dataset import Dataset
from intent.features import FEATURE_NAMES
from intent.model import IntentModel, ModelMismatch, read_tags, with_features_version
from intent.train import TrainResult, auc, evaluate, is_better, train
from synth.bootstrap import bootstrap


def test_model_beats_chance_on_a_time_based_holdout(trained: TrainResult) -> None:
    assert trained.metrics["auc"] >= 0.65
    assert 0.0 < trained.metrics["logloss"] < math.log(2)  # better than a coin


def test_holdout_is_the_latest_rows(synthetic_dataset: Dataset, trained: TrainResult) -> None:
    m = trained.metrics
    assert m["rows"] + m["train_rows"] == len(synthetic_dataset)
    assert m["rows"] == pytest.approx(0.2 * len(synthetic_dataset), abs=1)
    assert m["positives"] + m["train_positives"] == int(synthetic_dataset.y.sum())
    assert m["holdout_from_ts"] >= np.sort(synthetic_dataset.ts)[m["train_rows"] - 1]


def test_calibration_table_accounts_for_every_row(trained: TrainResult) -> None:
    table = trained.metrics["calibration"]
    assert len(table) == 10
    assert sum(b["count"] for b in table) == trained.metrics["rows"]
    for b in table:
        if b["count"]:
            assert b["lo"] <= b["mean_predicted"] <= b["hi"]
            assert 0.0 <= b["observed_rate"] <= 1.0
    observed = sum(b["observed_rate"] * b["count"] for b in table if b["count"])
    assert observed == pytest.approx(trained.metrics["positives"])


def test_early_stopping_picks_the_best_round(trained: TrainResult) -> None:
    assert trained.metrics["stopped_early"]
    assert trained.best_iteration == trained.metrics["rounds_run"] - 30
    assert f"Tree={trained.best_iteration - 1}\n" in trained.model_text
    assert f"Tree={trained.best_iteration}\n" not in trained.model_text  # extra rounds dropped


def test_training_is_deterministic(synthetic_dataset: Dataset, trained: TrainResult) -> None:
    again = train(synthetic_dataset, seed=0)
    assert again.model_text == trained.model_text


def test_evaluate_scores_any_dataset(synthetic_dataset: Dataset, trained: TrainResult) -> None:
    _, holdout = synthetic_dataset.split_by_time(0.2)
    m = evaluate(trained.model_text, holdout)
    assert m["auc"] == trained.metrics["auc"]
    assert m["rows"] == len(holdout)


def test_randomised_rows_give_the_model_a_staleness_curve(
    synthetic_dataset: Dataset, trained: TrainResult
) -> None:
    """Exploration rows where a refresh helps old lists more: the model ships the gain curve."""
    ds = synthetic_dataset
    rng = np.random.default_rng(3)
    age = ds.X[:, FEATURE_NAMES.index("since_refresh_s")]
    refreshed = rng.random(len(ds)) < 0.5
    stale = np.where(age < 0, 1.0, 1 - np.exp(-np.maximum(age, 0) / 1800))
    clicks = rng.poisson(np.where(refreshed, 1.0, 1.0 - 0.8 * stale))
    explored = dataclasses.replace(
        ds, explored=np.ones(len(ds), dtype=bool), refreshed=refreshed, clicks_soon=clicks
    )
    result = train(explored, seed=0)
    curve = result.metrics["staleness"]
    assert curve is not None and curve[-1][1] == 1.0
    assert result.metrics["explored_rows"] == len(ds)
    model = IntentModel.from_text(result.model_text)
    assert model.staleness is not None and [list(p) for p in model.staleness.points] == curve
    # The click model and its report are untouched; only the decision score is scaled.
    assert result.metrics["auc"] == trained.metrics["auc"]
    assert "staleness" in read_tags(result.model_text)
    assert trained.metrics["staleness"] is None and "staleness" not in read_tags(trained.model_text)


@pytest.mark.parametrize("n", [2, 5, 17, 40])
def test_auc_equals_the_pairwise_definition(n: int) -> None:
    rng = np.random.default_rng(n)
    y = rng.integers(0, 2, size=n)
    y[:2] = [0, 1]
    scores = rng.integers(0, 4, size=n).astype(float)  # many ties
    pairs = [(p, q) for p, q in itertools.product(range(n), repeat=2) if y[p] == 1 and y[q] == 0]
    expected = sum(1.0 if scores[p] > scores[q] else 0.5 if scores[p] == scores[q] else 0.0
                   for p, q in pairs) / len(pairs)  # fmt: skip
    assert auc(y, scores) == pytest.approx(expected)


def test_auc_of_one_class_is_nan() -> None:
    assert math.isnan(auc(np.ones(5), np.arange(5.0)))


def _m(auc_: float, rows: int = 100, positives: int = 40) -> dict[str, float]:
    return {"auc": auc_, "rows": rows, "positives": positives}


@pytest.mark.parametrize(
    ("new", "current", "gain", "expected"),
    [
        (_m(0.70), None, 0.0, True),  # nothing published yet
        (_m(0.70), _m(0.69), 0.0, True),
        (_m(0.70), _m(0.70), 0.0, True),  # not worse
        (_m(0.69), _m(0.70), 0.0, False),  # worse: refused
        (_m(0.705), _m(0.70), 0.01, False),  # better, but not by enough
        (_m(0.72), _m(0.70), 0.01, True),
        (_m(math.nan), _m(0.70), 0.0, False),  # a one-class holdout proves nothing
        (_m(math.nan), None, 0.0, False),
        (_m(0.60), _m(math.nan), 0.0, True),
    ],
)
def test_is_better(
    new: dict[str, float], current: dict[str, float] | None, gain: float, expected: bool
) -> None:
    assert is_better(new, current, min_auc_gain=gain) is expected


def test_is_better_refuses_different_holdouts() -> None:
    with pytest.raises(ValueError, match="same holdout"):
        is_better(_m(0.8, rows=100), _m(0.7, rows=120))


def test_training_needs_both_labels(synthetic_dataset: Dataset) -> None:
    ones = synthetic_dataset.take(np.flatnonzero(synthetic_dataset.y == 1))
    with pytest.raises(ValueError, match="both labels"):
        train(ones)


def test_a_warm_start_continues_the_model(synthetic_dataset: Dataset, trained: TrainResult) -> None:
    newest = synthetic_dataset.take(np.argsort(synthetic_dataset.ts)[-2000:])
    more = train(newest, init_model=trained.model_text, num_boost_round=20)
    # The champion's trees come first, unchanged; the new ones follow.
    assert trained.best_iteration < more.best_iteration <= trained.best_iteration + 20
    assert more.metrics["warm_started"] is True
    assert more.model_text.count("\nTree=") == more.best_iteration
    first_tree = trained.model_text.split("\nTree=1\n")[0].split("\nTree=0\n")[1]
    assert first_tree in more.model_text
    other = with_features_version(trained.model_text, "f-other")
    with pytest.raises(ModelMismatch, match="features version"):
        train(newest, init_model=other)


def test_bootstrap_trains_a_loadable_first_model() -> None:
    result = bootstrap(users=80, days=2, seed=1)
    assert result.metrics["auc"] > 0.6
    IntentModel.from_text(result.model_text)


@pytest.mark.parametrize("n", [1, 2, 9, 200])
def test_average_ranks_match_scipy(n: int) -> None:
    from scipy.stats import rankdata

    from intent.train import _average_ranks

    x = np.random.default_rng(n).integers(0, 5, size=n).astype(np.float64)  # many ties
    assert np.array_equal(_average_ranks(x), rankdata(x))
