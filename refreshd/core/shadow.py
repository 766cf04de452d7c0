"""Shadow (challenger) scoring, the pure part: which decisions to shadow, the row kept of
each, and the report that compares the challenger with the champion on the same decisions.

A decision is shadowed when the champion model decided it: the intent node scored it with a
model (not exploration traffic, not a rule before the model). The challenger scores the same
feature vector; both verdicts are taken at the decision's own threshold, so `agreement` says
how often promoting the challenger would have changed what the device was told.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
import numpy as np

from intent.dataset import LABEL_HORIZON_S
from intent.drift import psi
from intent.policy import decide_intent
from intent.train import auc
from refreshd import constants as C
from refreshd.core.flow import DecisionLog

__all__ = ["ShadowReport", "ShadowRow", "is_matured", "shadow_row", "shadowable", "summarize"]


class ShadowRow(msgspec.Struct, kw_only=True):
    """One shadowed decision: both models' scores and verdicts at its threshold."""

    decision_id: str
    user_id: str
    ts: int  # the device's time of the decision (the label's start)
    received_ts: int  # the server's (when its label matures)
    champion: str  # the champion's version
    champion_score: float
    challenger_score: float
    threshold: float
    champion_refresh: bool
    challenger_refresh: bool


class ShadowReport(msgspec.Struct, kw_only=True):
    """GET /v1/models/{version}/shadow-report. Rates and AUCs are null where undefined (no
    rows; AUC: no matured row, or matured labels of one class only)."""

    version: str
    active: bool  # the challenger is being shadowed now
    decisions: int  # shadowed decisions in the report (the newest the shadow log keeps)
    matured: int  # of which the label window has closed (the AUCs' rows)
    agreement: float | None
    champion_refresh_rate: float | None
    challenger_refresh_rate: float | None
    score_psi: float | None  # challenger's scores against the champion's
    auc_champion: float | None
    auc_challenger: float | None


def shadowable(log: DecisionLog) -> bool:
    """Return whether the champion model decided this decision (so a challenger can too)."""
    return (
        log.features is not None
        and log.score is not None
        and log.threshold is not None
        and log.model_version is not None
        and not log.explore
    )


def shadow_row(log: DecisionLog, challenger_score: float) -> ShadowRow:
    """Return the row kept of a shadowable decision and the challenger's score for it."""
    assert log.score is not None and log.threshold is not None and log.model_version is not None
    return ShadowRow(
        decision_id=log.decision_id,
        user_id=log.user_id,
        ts=log.ts,
        received_ts=log.received_ts if log.received_ts is not None else log.ts,
        champion=log.model_version,
        champion_score=log.score,
        challenger_score=challenger_score,
        threshold=log.threshold,
        champion_refresh=decide_intent(log.score, log.threshold)[0],
        challenger_refresh=decide_intent(challenger_score, log.threshold)[0],
    )


def is_matured(row: ShadowRow, now_ms: int) -> bool:
    """Return whether the decision's click window has closed, late event batches included."""
    start = max(row.ts, row.received_ts)
    return start + (LABEL_HORIZON_S + C.SHADOW_LABEL_GRACE_S) * 1000 <= now_ms


def summarize(
    version: str, rows: Sequence[ShadowRow], labels: Sequence[int | None], *, active: bool
) -> ShadowReport:
    """Compare champion and challenger on `rows`; `labels[i]` is row i's click label, None
    while it has not matured."""
    if len(rows) != len(labels):
        raise ValueError("one label (or None) per row")
    n = len(rows)
    champion = np.array([r.champion_score for r in rows], dtype=np.float64)
    challenger = np.array([r.challenger_score for r in rows], dtype=np.float64)
    ripe = [i for i, y in enumerate(labels) if y is not None]
    y = np.array([labels[i] for i in ripe], dtype=np.int64)
    return ShadowReport(
        version=version,
        active=active,
        decisions=n,
        matured=len(ripe),
        agreement=_share(sum(r.champion_refresh == r.challenger_refresh for r in rows), n),
        champion_refresh_rate=_share(sum(r.champion_refresh for r in rows), n),
        challenger_refresh_rate=_share(sum(r.challenger_refresh for r in rows), n),
        score_psi=_finite(psi(champion, challenger)) if n else None,
        auc_champion=_finite(auc(y, champion[ripe])) if ripe else None,
        auc_challenger=_finite(auc(y, challenger[ripe])) if ripe else None,
    )


def _share(k: int, n: int) -> float | None:
    return k / n if n else None


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else x
