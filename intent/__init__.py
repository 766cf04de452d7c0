"""intent: when to refresh — feature windows, point-in-time datasets, training, scoring, policy."""

from intent.dataset import Dataset, EventLog, build_dataset, detect_leakage
from intent.features import (
    FEATURE_NAMES,
    FEATURES,
    FEATURES_VERSION,
    MISSING,
    Context,
    FeatureSpec,
    compute,
)
from intent.model import IntentModel, ModelMismatch
from intent.policy import decide_intent
from intent.train import TrainResult, evaluate, is_better, train

__all__ = [
    "FEATURES",
    "FEATURES_VERSION",
    "FEATURE_NAMES",
    "MISSING",
    "Context",
    "Dataset",
    "EventLog",
    "FeatureSpec",
    "IntentModel",
    "ModelMismatch",
    "TrainResult",
    "build_dataset",
    "compute",
    "decide_intent",
    "detect_leakage",
    "evaluate",
    "is_better",
    "train",
]
