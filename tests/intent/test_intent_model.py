"""Loading a model from text: identical predictions, and refusing the wrong features."""

from __future__ import annotations

import itertools

import lightgbm as lgb
import numpy as np
import pytest

from intent.dataset import Dataset
from intent.features import FEATURE_NAMES, FEATURES, FEATURES_VERSION, features_version
from intent.model import (
    FAST_ROWS_MAX,
    IntentModel,
    ModelMismatch,
    read_features_version,
    read_tags,
    with_features_version,
    with_tags,
)
from intent.staleness import Staleness
from intent.train import TrainResult


def test_round_trip_gives_identical_predictions(
    trained: TrainResult, synthetic_dataset: Dataset
) -> None:
    X = synthetic_dataset.X[:300]
    a = IntentModel.from_text(trained.model_text)
    pa = a.predict(X)
    assert np.all((pa > 0) & (pa < 1))
    assert read_features_version(trained.model_text) == FEATURES_VERSION
    assert IntentModel.from_text(trained.model_text).predict(X).tolist() == pa.tolist()
    resaved = with_features_version(a._booster.model_to_string(), FEATURES_VERSION)
    assert IntentModel.from_text(resaved).predict(X).tolist() == pa.tolist()


def test_predict_one_equals_the_batched_row(
    trained: TrainResult, synthetic_dataset: Dataset
) -> None:
    model = IntentModel.from_text(trained.model_text)
    X = synthetic_dataset.X[:20]
    batch = model.predict(X)
    assert [model.predict_one(row.tolist()) for row in X] == batch.tolist()


def test_version_identifies_the_artifact(trained: TrainResult) -> None:
    a = IntentModel.from_text(trained.model_text)
    assert a.version == IntentModel.from_text(trained.model_text).version
    assert IntentModel.from_text(trained.model_text, version="m7").version == "m7"
    assert a.feature_names == FEATURE_NAMES


def test_a_model_for_other_declarations_is_refused(trained: TrainResult) -> None:
    other = features_version(FEATURES[:-1])
    with pytest.raises(ModelMismatch, match="retrain"):
        IntentModel.from_text(trained.model_text, features_version=other)
    untagged = trained.model_text.rsplit("refreshd_features_version=", 1)[0]
    with pytest.raises(ModelMismatch, match="None"):
        IntentModel.from_text(untagged)


def test_feature_names_must_match(trained: TrainResult) -> None:
    renamed = ("clicks_5m", *FEATURE_NAMES[1:])
    with pytest.raises(ModelMismatch, match="missing"):
        IntentModel.from_text(trained.model_text, feature_names=renamed)
    swapped = (FEATURE_NAMES[1], FEATURE_NAMES[0], *FEATURE_NAMES[2:])
    with pytest.raises(ModelMismatch, match="another order"):
        IntentModel.from_text(trained.model_text, feature_names=swapped)


def test_rows_of_the_wrong_width_are_refused(trained: TrainResult) -> None:
    model = IntentModel.from_text(trained.model_text)
    with pytest.raises(ValueError, match="features"):
        model.predict(np.zeros((2, len(FEATURE_NAMES) - 1)))
    with pytest.raises(ValueError, match="features"):
        model.predict_one([0.0] * 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_batch_size_scores_bit_identical_to_stock_lightgbm(
    trained: TrainResult, seed: int
) -> None:
    """The single-row fast path and the batch path both equal a stock Booster's predict.

    An edge device loads the same artifact into stock LightGBM; its score must equal ours.
    """
    model = IntentModel.from_text(trained.model_text)
    stock = lgb.Booster(model_str=trained.model_text)
    rng = np.random.default_rng(seed)
    n = 2000
    X = rng.normal(size=(n, len(FEATURE_NAMES))) * rng.choice([0.01, 1, 30, 1e6], size=(n, 1))
    X[rng.random(X.shape) < 0.05] = np.nan  # missing values take the trees' default branches
    X[rng.random(X.shape) < 0.1] = 0.0
    X[: n // 2] = np.abs(X[: n // 2])
    expected = stock.predict(X).tolist()
    assert model.predict(X).tolist() == expected
    i = 0
    for size in itertools.cycle(range(1, FAST_ROWS_MAX + 3)):  # both sides of the switch
        if i >= n:
            break
        assert model.predict(X[i : i + size]).tolist() == expected[i : i + size]
        i += size
    assert [model.predict_one(row.tolist()) for row in X[:200]] == expected[:200]


def test_a_staleness_curve_rides_in_the_model_text_and_scales_the_score(
    trained: TrainResult, synthetic_dataset: Dataset
) -> None:
    X = synthetic_dataset.X[:200].copy()
    age_col = FEATURE_NAMES.index("since_refresh_s")
    X[:, age_col] = np.linspace(-1, 20_000, len(X))
    curve = Staleness(((120.0, 0.1), (1800.0, 0.5), (7200.0, 1.0)))
    text = with_tags(trained.model_text, staleness=curve.to_text())
    assert read_tags(text) == {"features_version": FEATURES_VERSION, "staleness": curve.to_text()}
    assert read_features_version(text) == FEATURES_VERSION
    plain = IntentModel.from_text(trained.model_text)
    scaled = IntentModel.from_text(text)
    assert scaled.staleness == curve and plain.staleness is None
    assert scaled.predict_click(X).tolist() == plain.predict(X).tolist()
    assert scaled.predict(X) == pytest.approx(plain.predict(X) * curve.gain(X[:, age_col]))
    assert scaled.predict(X[:3]) == pytest.approx(scaled.predict(X)[:3], rel=1e-12)  # fast path
    # A stock LightGBM loader still reads the artifact, tags and all.
    assert lgb.Booster(model_str=text).predict(X).tolist() == plain.predict(X).tolist()
    # Re-tagging replaces, never duplicates.
    assert with_tags(text, staleness=curve.to_text()) == text


def test_a_broken_staleness_tag_is_refused(trained: TrainResult) -> None:
    with pytest.raises(ModelMismatch, match="staleness"):
        IntentModel.from_text(with_tags(trained.model_text, staleness="10:0.9,20:0.1"))
