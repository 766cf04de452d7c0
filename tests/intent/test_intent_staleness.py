"""The staleness gain curve: fitted from randomised refreshes, monotone, shipped in the model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from intent.staleness import BUCKET_EDGES_S, Staleness, fit_staleness


def _randomised_log(
    n: int, decay_s: float, *, floor: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of a world where a list of age a gets floor + (1-floor)·exp(-a/decay) of the clicks."""
    rng = np.random.default_rng(seed)
    age = np.exp(rng.uniform(np.log(30), np.log(40_000), n))
    age[rng.random(n) < 0.05] = -1.0  # never refreshed
    refreshed = rng.random(n) < 0.5
    rate = 0.8 * rng.gamma(2.0, 0.5, n)  # users differ; the coin flip does not see it
    seen_age = np.where(refreshed, 0.0, np.where(age < 0, np.inf, age))
    fresh = floor + (1 - floor) * np.exp(-seen_age / decay_s)
    clicks = rng.poisson(rate * fresh)
    return age, refreshed, clicks


@pytest.mark.parametrize("decay_s", [600.0, 3600.0])
def test_the_fitted_curve_follows_the_worlds_decay(decay_s: float) -> None:
    age, refreshed, clicks = _randomised_log(200_000, decay_s)
    curve = fit_staleness(age, refreshed, clicks)
    assert curve is not None
    gains = [g for _, g in curve.points]
    assert gains == sorted(gains) and gains[-1] == 1.0
    # The true gain of a refresh at age a, relative to a list from long ago: 1 - exp(-a/decay).
    for a, g in curve.points:
        assert g == pytest.approx(1 - math.exp(-a / decay_s), abs=0.08), (a, g)


def test_a_refresh_that_gains_nothing_gives_no_curve() -> None:
    rng = np.random.default_rng(1)
    n = 50_000
    age = rng.uniform(0, 40_000, n)
    assert fit_staleness(age, rng.random(n) < 0.5, np.zeros(n, dtype=int)) is None
    # Fresh lists get *more* clicks without a refresh: no gain anywhere, so no curve.
    refreshed = rng.random(n) < 0.5
    assert fit_staleness(age, refreshed, rng.poisson(np.where(refreshed, 0.3, 0.6))) is None


def test_too_few_rows_give_no_curve() -> None:
    age, refreshed, clicks = _randomised_log(40, 1800.0)
    assert fit_staleness(age, refreshed, clicks) is None


def test_gain_interpolates_and_treats_never_refreshed_as_oldest() -> None:
    curve = Staleness(((100.0, 0.2), (1000.0, 0.6), (10_000.0, 1.0)))
    ages = [0.0, 100.0, 550.0, 1000.0, 9999.0, 1e9, -1.0]
    expected = [0.2, 0.2, 0.4, 0.6, pytest.approx(1.0, abs=1e-4), 1.0, 1.0]
    assert curve.gain(np.array(ages)).tolist() == pytest.approx(expected)
    assert [curve.gain_one(a) for a in ages] == pytest.approx(expected)
    many = np.tile(ages, 5)  # the numpy path (more than 16 rows) agrees with the scalar one
    assert curve.gain(many).tolist() == pytest.approx(expected * 5)


def test_text_round_trip_and_validation() -> None:
    curve = Staleness(((190.0, 0.1831), (849.0, 0.3232), (6788.0, 1.0)))
    assert Staleness.from_text(curve.to_text()) == curve
    for bad in ["", "1:0.5,x", "10:0.9,20:0.5", "10:0.5,10:0.6", "10:1.5", "inf:1.0", "-5:0.5",
                "nan:0.5"]:  # fmt: skip
        with pytest.raises(ValueError):
            Staleness.from_text(bad)


def test_a_nan_age_counts_as_never_refreshed() -> None:
    curve = Staleness(((100.0, 0.2), (1000.0, 1.0)))
    assert curve.gain_one(math.nan) == 1.0
    assert curve.gain(np.full(3, math.nan)).tolist() == [1.0] * 3
    assert curve.gain(np.full(40, math.nan)).tolist() == [1.0] * 40


def test_thin_logs_give_no_curve_and_thin_buckets_merge() -> None:
    """Too few clicks to measure: no curve rather than a noisy one; thin buckets pool."""
    age, refreshed, clicks = _randomised_log(3_000, 1800.0)
    sparse = np.where(np.random.default_rng(2).random(len(clicks)) < 0.05, clicks, 0)
    assert fit_staleness(age, refreshed, sparse) is None
    curve = fit_staleness(age, refreshed, clicks, min_clicks=200)
    assert curve is not None and len(curve.points) < len(BUCKET_EDGES_S)
