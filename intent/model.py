"""A loaded intent model: LightGBM text checked against the feature declarations it needs."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import lightgbm as lgb
import numpy as np

from intent.features import FEATURE_NAMES, FEATURES_VERSION

__all__ = ["IntentModel", "ModelMismatch", "read_features_version", "with_features_version"]

# LightGBM's loader ignores a trailing `key=value` line, so the artifact stays a stock model
# file an edge client can load while still saying which declarations produced its inputs.
_VERSION_KEY = "refreshd_features_version="


class ModelMismatch(ValueError):
    """The model was trained on other feature declarations than the ones computed here."""


def with_features_version(model_text: str, features_version: str) -> str:
    """Return LightGBM model text tagged with the features version it was trained on."""
    return f"{model_text.rstrip()}\n{_VERSION_KEY}{features_version}\n"


def read_features_version(model_text: str) -> str | None:
    """Return the features version a model text is tagged with, if any."""
    tail = model_text.rstrip().rsplit("\n", 1)[-1]
    return tail[len(_VERSION_KEY) :].strip() if tail.startswith(_VERSION_KEY) else None


class IntentModel:
    """Score feature rows with a LightGBM booster on one thread per call."""

    def __init__(self, booster: lgb.Booster, *, feature_names: Sequence[str], version: str) -> None:
        self._booster = booster
        self.feature_names = tuple(feature_names)
        self.version = version

    @classmethod
    def from_text(
        cls,
        model_text: str,
        *,
        feature_names: Sequence[str] = FEATURE_NAMES,
        features_version: str = FEATURES_VERSION,
        version: str | None = None,
    ) -> IntentModel:
        """Load model text; raise ModelMismatch unless it was trained on these features."""
        found = read_features_version(model_text)
        if found != features_version:
            raise ModelMismatch(
                f"model was trained on features version {found!r}, this code computes "
                f"{features_version!r}; retrain the model or deploy matching code"
            )
        booster = lgb.Booster(model_str=model_text)
        names = booster.feature_name()
        if tuple(names) != tuple(feature_names):
            missing = sorted(set(feature_names) - set(names))
            extra = sorted(set(names) - set(feature_names))
            raise ModelMismatch(
                f"model feature names differ: missing {missing}, unexpected {extra}"
                + ("" if missing or extra else ", same names in another order")
            )
        return cls(
            booster,
            feature_names=names,
            version=version or hashlib.sha256(model_text.encode()).hexdigest()[:12],
        )

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Return click-intent probabilities for the rows of X."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"expected rows of {len(self.feature_names)} features, got {X.shape}")
        # One thread per call: the service runs many workers, and LightGBM's thread pool costs
        # more than it saves on the few rows of one micro-batch.
        return np.asarray(self._booster.predict(X, num_threads=1), dtype=np.float64)

    def predict_one(self, vector: Sequence[float]) -> float:
        """Return the probability for one feature vector."""
        return float(self.predict(np.asarray(vector, dtype=np.float64).reshape(1, -1))[0])
