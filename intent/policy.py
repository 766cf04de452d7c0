"""The intent policy: refresh when the model's score clears the threshold."""

from __future__ import annotations

import math
from typing import Literal

__all__ = ["decide_intent"]


def decide_intent(
    score: float | None, threshold: float
) -> tuple[bool, Literal["intent", "no_intent"]]:
    """Return (refresh, reason) for a score; a missing score is the caller's fallback case."""
    if score is None or math.isnan(score):
        raise ValueError("no intent score: the caller applies the fallback rule instead")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    return (True, "intent") if score >= threshold else (False, "no_intent")
