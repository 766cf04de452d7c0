"""A decision as an operator reads it: the log row, explained with the versions of its time.

The decision log is written once per decision (`refreshd.core.flow.DecisionLog`) and read by
training, replay and the audit alike; this module only turns a row into the audit record of
`GET /v1/decisions/{id}` and rebuilds the request the device sent.
"""

from __future__ import annotations

import msgspec

from intent.features import FEATURE_NAMES, FEATURES_VERSION
from refreshd.core.flow import ConfigVersions, DecisionLog
from refreshd.core.messages import DecideRequest, Exposure

__all__ = ["AuditRecord", "DecisionList", "audit_record", "request_of"]


class AuditRecord(msgspec.Struct, kw_only=True):
    """What was decided, why, and with which model, features and configuration versions."""

    decision_id: str
    user_id: str
    ts: int
    received_ts: int | None
    request: DecideRequest
    refresh: bool
    reason: str
    next_check_s: int | None
    score: float | None
    threshold: float | None
    threshold_source: str | None
    model_version: str | None
    feature_version: str | None
    features: dict[str, float] | None  # name → the value scored (or that would have been)
    feature_age_s: dict[str, float | None] | None  # name → seconds since its newest event
    experiment: Exposure | None
    explore: bool
    propensity: float | None
    config_versions: ConfigVersions
    degraded_reasons: list[str]
    directives: list[str]


class DecisionList(msgspec.Struct):
    user_id: str
    decisions: list[AuditRecord]  # newest first


def request_of(row: DecisionLog) -> DecideRequest:
    """Rebuild the decide request a row was made from (what a replay sends again)."""
    return DecideRequest(
        user_id=row.user_id,
        ts=row.ts,
        trigger=row.trigger,  # type: ignore[arg-type]  # logged from a valid request
        slots=row.slots,
        lat=row.lat,
        lng=row.lng,
        features=row.device_features,
        tz_offset_min=row.tz_offset_min,
        ack=row.ack,
        launch=row.launch,  # type: ignore[arg-type]
        home_dwell_s=row.home_dwell_s,
        scrolls=row.scrolls,
        scroll_depth=row.scroll_depth,
    )


def _named(row: DecisionLog, values: list[float] | list[float | None] | None) -> list[str]:
    """Feature names of a logged vector: this build's when its version is the row's, else
    positions (a row from before a features upgrade)."""
    n = len(values or ())
    if row.feature_version == FEATURES_VERSION and n == len(FEATURE_NAMES):
        return list(FEATURE_NAMES)
    return [f"#{i}" for i in range(n)]


def audit_record(row: DecisionLog) -> AuditRecord:
    features = None
    if row.features is not None:
        features = dict(zip(_named(row, row.features), row.features, strict=True))
    ages = None
    if row.feature_ages is not None:
        ages = dict(zip(_named(row, row.feature_ages), row.feature_ages, strict=True))
    experiment = None
    if row.experiment is not None:
        experiment = Exposure(row.experiment, row.variant or "")
    return AuditRecord(
        decision_id=row.decision_id,
        user_id=row.user_id,
        ts=row.ts,
        received_ts=row.received_ts,
        request=request_of(row),
        refresh=row.refresh,
        reason=row.reason,
        next_check_s=row.next_check_s,
        score=row.score,
        threshold=row.threshold,
        threshold_source=row.threshold_source,
        model_version=row.model_version,
        feature_version=row.feature_version,
        features=features,
        feature_age_s=ages,
        experiment=experiment,
        explore=row.explore,
        propensity=row.propensity,
        config_versions=row.config_versions,
        degraded_reasons=row.degraded_reasons,
        directives=row.directives,
    )
