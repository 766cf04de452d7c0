"""A loaded intent model: LightGBM text checked against the feature declarations it needs."""

from __future__ import annotations

import ctypes
import hashlib
import threading
import weakref
from collections.abc import Sequence

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _LIB, _safe_call

from intent.features import FEATURE_NAMES, FEATURES_VERSION
from intent.staleness import AGE_FEATURE, Staleness

__all__ = [
    "IntentModel",
    "ModelMismatch",
    "read_features_version",
    "read_tags",
    "with_features_version",
    "with_tags",
]

# LightGBM's loader ignores trailing `key=value` lines, so the artifact stays a stock model
# file an edge client can load while still saying which declarations produced its inputs
# (`refreshd_features_version=`) and, when training measured one, the staleness curve that
# turns the click probability into the decision score (`refreshd_staleness=`).
_TAG = "refreshd_"


# Up to this many rows are scored one by one through LightGBM's single-row fast path
# (~3 us a row); `Booster.predict` spends ~50 us per call on set-up before the first row, and
# ~2 us less per row after that, so bigger batches take it (crossover ~25 rows, 64 trees).
FAST_ROWS_MAX = 16
# LightGBM C API constants (c_api.h): normal prediction, float64 input.
_PREDICT_NORMAL = 0
_DTYPE_FLOAT64 = 1


class ModelMismatch(ValueError):
    """The model was trained on other feature declarations than the ones computed here."""


class _SingleRow:
    """LightGBM's single-row fast predictor: the per-call set-up done once, for one booster.

    It runs the same trees in the same order as `Booster.predict` (scores are bit-identical,
    tested), without building a predictor, checking the input and allocating per call.
    """

    def __init__(self, booster: lgb.Booster, ncol: int) -> None:
        self._booster = booster  # the fast config points into it: keep it alive
        self._handle = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(_PREDICT_NORMAL),
                ctypes.c_int(0),  # start iteration
                ctypes.c_int(-1),  # every iteration, as Booster.predict for a loaded model
                ctypes.c_int(_DTYPE_FLOAT64),
                ctypes.c_int32(ncol),
                b"num_threads=1",
                ctypes.byref(self._handle),
            )
        )
        weakref.finalize(self, _LIB.LGBM_FastConfigFree, self._handle)
        self._row = np.zeros(ncol, dtype=np.float64)
        self._out = np.zeros(1, dtype=np.float64)
        self._out_len = ctypes.c_int64(0)
        self._args = (
            self._handle,
            self._row.ctypes.data_as(ctypes.c_void_p),
            ctypes.byref(self._out_len),
            self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
        )
        # The buffers and the fast config are shared: one caller at a time.
        self._lock = threading.Lock()

    def predict(self, X: np.ndarray) -> np.ndarray:
        out = np.empty(X.shape[0], dtype=np.float64)
        with self._lock:
            for i in range(X.shape[0]):
                self._row[:] = X[i]
                _safe_call(_LIB.LGBM_BoosterPredictForMatSingleRowFast(*self._args))
                out[i] = self._out[0]
        return out


def with_tags(model_text: str, **tags: str) -> str:
    """Return LightGBM model text with `refreshd_<key>=<value>` lines appended (or replaced)."""
    kept = {**read_tags(model_text), **tags}
    body = _strip_tags(model_text)
    lines = "".join(f"{_TAG}{k}={v}\n" for k, v in kept.items())
    return f"{body}\n{lines}"


def with_features_version(model_text: str, features_version: str) -> str:
    """Return LightGBM model text tagged with the features version it was trained on."""
    return with_tags(model_text, features_version=features_version)


def _strip_tags(model_text: str) -> str:
    lines = model_text.rstrip().split("\n")
    while lines and lines[-1].startswith(_TAG):
        lines.pop()
    return "\n".join(lines).rstrip()


def read_tags(model_text: str) -> dict[str, str]:
    """Return the trailing `refreshd_<key>=<value>` tags of a model text, in order."""
    tags: dict[str, str] = {}
    for line in reversed(model_text.rstrip().split("\n")):
        if not line.startswith(_TAG) or "=" not in line:
            break
        key, _, value = line[len(_TAG) :].partition("=")
        tags[key] = value.strip()
    return dict(reversed(tags.items()))


def read_features_version(model_text: str) -> str | None:
    """Return the features version a model text is tagged with, if any."""
    return read_tags(model_text).get("features_version")


class IntentModel:
    """Score feature rows with a LightGBM booster on one thread per call.

    `predict_click` is the booster's click probability; `predict` is the decision score: that
    probability times the staleness gain of the row's list age when the model carries a
    curve (`intent.staleness`), else the probability itself.
    """

    def __init__(
        self,
        booster: lgb.Booster,
        *,
        feature_names: Sequence[str],
        version: str,
        staleness: Staleness | None = None,
    ) -> None:
        self._booster = booster
        self.feature_names = tuple(feature_names)
        self.version = version
        self.staleness = staleness
        if staleness is not None and AGE_FEATURE not in self.feature_names:
            raise ModelMismatch(f"a staleness curve needs the {AGE_FEATURE!r} feature")
        self._age_col = self.feature_names.index(AGE_FEATURE) if staleness is not None else -1
        self._single_row = _SingleRow(booster, len(self.feature_names))

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
        curve = read_tags(model_text).get("staleness")
        try:
            staleness = Staleness.from_text(curve) if curve else None
        except ValueError as exc:
            raise ModelMismatch(str(exc)) from None
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
            staleness=staleness,
        )

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Return decision scores for the rows of X (click probability × staleness gain)."""
        X = np.asarray(X, dtype=np.float64)
        p = self.predict_click(X)
        curve = self.staleness
        if curve is None:
            return p
        if len(p) <= FAST_ROWS_MAX:  # the service's few-row batches: no numpy set-up
            col = self._age_col
            for i in range(len(p)):
                p[i] *= curve.gain_one(float(X[i, col]))
            return p
        return p * curve.gain(X[:, self._age_col])

    def importance(self) -> dict[str, float]:
        """Each feature's share of the model's total split gain (what the console draws)."""
        gains = self._booster.feature_importance(importance_type="gain")
        total = float(gains.sum()) or 1.0
        return {n: float(g) / total for n, g in zip(self.feature_names, gains, strict=True)}

    def predict_click(self, X: np.ndarray) -> np.ndarray:
        """Return click-intent probabilities for the rows of X."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"expected rows of {len(self.feature_names)} features, got {X.shape}")
        if X.shape[0] <= FAST_ROWS_MAX:
            return self._single_row.predict(X)
        # One thread per call: the service runs many workers, and LightGBM's thread pool costs
        # more than it saves on the few rows of one micro-batch.
        return np.asarray(self._booster.predict(X, num_threads=1), dtype=np.float64)

    def predict_one(self, vector: Sequence[float]) -> float:
        """Return the decision score for one feature vector."""
        return float(self.predict(np.asarray(vector, dtype=np.float64).reshape(1, -1))[0])
