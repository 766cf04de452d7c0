"""The off-policy estimators (unbiased on a randomised log whose truth is known) and the
pure replay of one row."""

from __future__ import annotations

import random

import msgspec
import pytest

from refreshd.core.offpolicy import Sample, ips_change, snips_change


def _log(n: int, seed: int) -> tuple[list[Sample], float]:
    """A coin-flip log: refreshing adds 0.3 clicks where x > 0.5; the candidate refreshes
    where x > 0.2, the baseline where x > 0.7. Return the samples and the true change."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x, refreshed = rng.random(), rng.random() < 0.3
        mean = 0.5 + (0.3 if refreshed and x > 0.5 else 0.0)
        clicks = float(sum(rng.random() < mean / 2 for _ in range(2)))
        out.append(Sample(clicks, refreshed, 0.3 if refreshed else 0.7, x > 0.7, x > 0.2))
    return out, 0.3 * 0.2  # the candidate adds a refresh on x in (0.5, 0.7]


@pytest.mark.parametrize("estimator", [ips_change, snips_change])
def test_the_ci_covers_the_truth_about_95_percent_of_the_time(estimator) -> None:  # type: ignore[no-untyped-def]
    covered = 0
    for seed in range(100):
        samples, truth = _log(2000, seed)
        e = estimator(samples)
        covered += e.ci[0] <= truth <= e.ci[1]
        assert e.n == 2000 and e.se > 0
    assert 88 <= covered <= 100


def test_policies_that_agree_change_nothing() -> None:
    samples = [Sample(float(i % 3), i % 2 == 0, 0.5, i % 4 == 0, i % 4 == 0) for i in range(50)]
    for e in (ips_change(samples), snips_change(samples)):
        assert e.value == 0.0 and e.ci == (0.0, 0.0)
    assert ips_change([]).n == 0


def test_scaling_keeps_the_interval_ordered() -> None:
    e = ips_change(_log(500, 1)[0])
    neg = e.scaled(-2.0)
    assert neg.value == -2.0 * e.value and neg.ci[0] <= neg.value <= neg.ci[1]


def test_a_row_replays_with_its_policy_and_a_candidate_threshold() -> None:
    from refreshd.core.flow import DecisionLog
    from refreshd.core.ladder import Scored
    from refreshd.core.policy import standard_policy
    from refreshd.core.replay import differences, replay, with_threshold

    policy = standard_policy(threshold=0.5)
    row = DecisionLog(user_id="u", ts=10**12, trigger="open", refresh=False, reason="no_intent",
                      degraded=False, score=0.4, threshold=0.5, model_version="m",
                      features=[0.0], next_check_s=60)  # fmt: skip
    scorer = lambda r: Scored(score=0.4, model_version="m")  # noqa: E731
    assert differences(row, replay(row, policy, scorer)) == []
    lower = replay(row, with_threshold(policy, 0.3), scorer)
    assert lower.refresh and lower.reason == "intent"
    assert differences(row, lower) == ["refresh", "reason", "threshold", "next_check_s"]
    # A refresh directive that was waiting decides first, as it did.
    waiting = replay(msgspec.structs.replace(row, event_slots=[["feed"]]), policy, scorer)
    assert waiting.refresh and waiting.reason == "event" and waiting.slots == ["feed"]
