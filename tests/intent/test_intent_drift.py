"""PSI (intent.drift) and the training score distribution a model carries (intent.train)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intent.drift import EPSILON, psi
from intent.train import SCORE_QUANTILES, TrainResult, score_quantiles

UNIFORM = np.linspace(0.0, 1.0, 1001)


def test_a_distribution_against_itself_is_zero() -> None:
    assert psi(UNIFORM, UNIFORM) == 0.0
    rng = np.random.default_rng(0)
    assert psi(rng.random(5000), rng.random(5000)) < 0.01  # two samples of one distribution


def test_all_scores_in_the_top_decile_by_the_definition() -> None:
    # Expected: ten bins of 10 %; actual: everything in the last one, nine bins empty.
    e, a = 0.1, EPSILON
    want = 9 * (a - e) * math.log(a / e) + (1 - e) * math.log(1 / e)
    assert psi(UNIFORM, np.full(100, 0.99)) == pytest.approx(want, rel=0.02)


def test_a_half_sigma_shift_is_a_significant_drift() -> None:
    rng = np.random.default_rng(1)
    expected = rng.normal(0, 1, 20_000)
    # PSI of a normal shifted by d is close to d² (the symmetric KL divergence), a bit less
    # after binning: 0.5 sigma is past the usual 0.2 alert, 0.2 sigma well below it.
    assert 0.2 < psi(expected, rng.normal(0.5, 1, 20_000)) < 0.26
    assert psi(expected, rng.normal(0.2, 1, 20_000)) < 0.05


def test_more_shift_means_more_psi() -> None:
    rng = np.random.default_rng(2)
    expected = rng.beta(2, 5, 10_000)
    values = [psi(expected, np.clip(expected + d, 0, 1)) for d in (0.0, 0.02, 0.05, 0.1, 0.2)]
    assert values == sorted(values) and values[0] == 0.0


def test_the_bins_are_quantiles_of_the_expected_scores() -> None:
    # Expected scores crowded near 0, actual ones all below the expected 10 % quantile: with
    # quantile bins that is one bin of 10 % against 100 %, wherever the scores lie.
    expected = np.linspace(0, 1, 1001) ** 8
    actual = expected[expected < np.quantile(expected, 0.1)]
    e, a = 0.1, EPSILON
    want = 9 * (a - e) * math.log(a / e) + (1 - e) * math.log(1 / e)
    assert psi(expected, actual) == pytest.approx(want, rel=0.02)


def test_a_point_mass_merges_its_bins() -> None:
    expected = np.concatenate([np.zeros(700), np.linspace(0.1, 1, 300)])
    assert psi(expected, expected) == 0.0  # not a blow-up from empty bins between equal edges
    assert math.isfinite(psi(expected, np.full(50, 0.5)))
    # All zeros: one bin of 70 % against 100 %, three of ~10 % against none.
    want = 0.3 * math.log(1 / 0.7) + 3 * (EPSILON - 0.1) * math.log(EPSILON / 0.1)
    assert psi(expected, np.zeros(100)) == pytest.approx(want, rel=0.05)


def test_empty_input_and_bad_bins_are_refused() -> None:
    with pytest.raises(ValueError):
        psi([], [0.5])
    with pytest.raises(ValueError):
        psi([0.5], [])
    with pytest.raises(ValueError):
        psi([0.5], [0.5], bins=0)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(0, 1), min_size=1, max_size=200),
    st.lists(st.floats(0, 1), min_size=1, max_size=200),
    st.integers(1, 20),
)
def test_psi_is_never_negative(expected: list[float], actual: list[float], bins: int) -> None:
    assert psi(expected, actual, bins) >= 0.0  # every term (a - e) ln(a / e) is >= 0


@pytest.mark.parametrize("shift", [0.0, 0.03, 0.1, 0.3])
def test_the_quantile_sketch_stands_in_for_the_scores(shift: float) -> None:
    rng = np.random.default_rng(3)
    scores = rng.beta(2, 3, 20_000)
    live = np.clip(rng.beta(2, 3, 5_000) + shift, 0, 1)
    sketch = score_quantiles(scores)
    assert len(sketch) == SCORE_QUANTILES
    assert psi(sketch, live) == pytest.approx(psi(scores, live), rel=0.05, abs=0.01)


def test_training_records_the_score_distribution(trained_model: TrainResult) -> None:
    q = trained_model.metrics["score_quantiles"]
    assert len(q) == SCORE_QUANTILES and q == sorted(q)
    assert 0.0 <= q[0] < q[50] < q[-1] <= 1.0
