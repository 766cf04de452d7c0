"""The feature registry: every declared feature, and the stored models trained on it.

What a feature center shows a client team: a feature's name, its declaration's version, the
event types it reads, its window and aggregate, and which model versions depend on it. The
declarations are code (`intent.features.FEATURES`); the models record the declarations they
were trained on (`ModelMeta.features_version`, `feature_names`), so lineage is a join of the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from intent.features import FEATURES, FEATURES_VERSION, features_version
from refreshd.live.registry import ModelMeta

__all__ = ["FeatureInfo", "FeatureRegistry", "OtherModel", "feature_registry"]


class FeatureInfo(msgspec.Struct, kw_only=True):
    """One declared feature and the models trained on this declaration of it."""

    name: str
    # Hash of this one declaration and the semantics all features share: it changes when this
    # feature changes meaning, while `features_version` changes when any feature does.
    version: str
    aggregate: str  # the declaration's kind: count, sum, since_last, ratio, hour, launch, ...
    source_event_types: list[str]  # empty: a context feature (the request, not the events)
    window_s: int | None  # None: reads no events
    within_s: int | None = None  # a sequence's "A then B within" bound
    models: list[str]  # stored model versions trained on the current declarations with it


class OtherModel(msgspec.Struct):
    """A stored model trained on other declarations: the service will not score with it."""

    version: str
    features_version: str


class FeatureRegistry(msgspec.Struct):
    features_version: str
    features: list[FeatureInfo]
    other_models: list[OtherModel]


def feature_registry(metas: Sequence[ModelMeta]) -> FeatureRegistry:
    """Return the declared features joined with the stored models (oldest first) using them."""
    same = [m for m in metas if m.features_version == FEATURES_VERSION]
    return FeatureRegistry(
        features_version=FEATURES_VERSION,
        features=[
            FeatureInfo(
                name=spec.name,
                version=features_version((spec,)),
                aggregate=spec.kind,
                source_event_types=list(spec.source_types),
                window_s=spec.window_s or None,
                within_s=spec.within_s or None,
                models=[m.version for m in same if spec.name in m.feature_names],
            )
            for spec in FEATURES
        ],
        other_models=[
            OtherModel(m.version, m.features_version)
            for m in metas
            if m.features_version != FEATURES_VERSION
        ],
    )
