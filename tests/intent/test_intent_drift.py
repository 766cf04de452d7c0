"""The PSI helper: zero for one distribution, growing with the shift, finite on empty bins."""

from __future__ import annotations

import math

import numpy as np
import pytest

from intent.drift import EMPTY_BIN_SHARE, psi


def test_same_sample_has_no_drift() -> None:
    x = np.random.default_rng(0).beta(2, 5, 5000)
    assert psi(x, x) == pytest.approx(0.0, abs=1e-12)


def test_psi_grows_with_the_shift() -> None:
    rng = np.random.default_rng(1)
    expected = rng.normal(0, 1, 20_000)
    values = [psi(expected, rng.normal(shift, 1, 20_000)) for shift in (0.0, 0.2, 0.5, 1.0)]
    assert values == sorted(values)
    assert values[0] < 0.01 and 0.02 < values[1] < 0.1 and values[3] > 0.25


def test_a_known_value_with_an_empty_bin() -> None:
    # Two bins cut at the expected median; every actual score lands in the upper one.
    expected = np.arange(100) / 100
    actual = np.full(50, 0.9)
    e, a_low = 0.5, EMPTY_BIN_SHARE
    want = (a_low - e) * math.log(a_low / e) + (1.0 - e) * math.log(1.0 / e)
    assert psi(expected, actual, bins=2) == pytest.approx(want)


def test_tied_quantiles_merge_into_one_bin() -> None:
    assert psi([0.3] * 100, [0.3] * 10) == pytest.approx(0.0)
    assert psi([0.3] * 100, [0.1] * 10) > 1.0  # everything moved below the only edge


def test_out_of_range_scores_fall_into_the_outer_bins() -> None:
    expected = np.linspace(0.2, 0.4, 1000)
    assert psi(expected, [-5.0, 5.0] * 50) == pytest.approx(psi(expected, [0.2, 0.4] * 50))


@pytest.mark.parametrize(("expected", "actual"), [([], [0.1]), ([0.1], [])])
def test_an_empty_sample_has_no_psi(expected: list[float], actual: list[float]) -> None:
    assert math.isnan(psi(expected, actual))


def test_bins_must_be_positive() -> None:
    with pytest.raises(ValueError, match="bins"):
        psi([0.1], [0.1], bins=0)
