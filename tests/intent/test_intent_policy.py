"""The threshold policy."""

from __future__ import annotations

import math

import pytest

from intent.policy import decide_intent


@pytest.mark.parametrize(
    ("score", "threshold", "expected"),
    [
        (0.31, 0.3, (True, "intent")),
        (0.30, 0.3, (True, "intent")),  # at the threshold: refresh
        (0.29, 0.3, (False, "no_intent")),
        (0.0, 0.0, (True, "intent")),
        (0.99, 1.0, (False, "no_intent")),
    ],
)
def test_threshold(score: float, threshold: float, expected: tuple[bool, str]) -> None:
    assert decide_intent(score, threshold) == expected


@pytest.mark.parametrize(("score", "threshold"), [(None, 0.3), (math.nan, 0.3), (0.5, 1.5)])
def test_no_score_or_bad_threshold_is_the_callers_problem(
    score: float | None, threshold: float
) -> None:
    with pytest.raises(ValueError):
        decide_intent(score, threshold)
