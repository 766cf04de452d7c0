import pytest

from refreshd.core.ratelimit import RateLimiter


def test_burst_then_steady_rate() -> None:
    rl = RateLimiter(rate_per_s=2, burst=3)
    assert [rl.allow("u", 0.0) for _ in range(3)] == [0, 0, 0]
    wait = rl.allow("u", 0.0)
    assert wait == pytest.approx(0.5)
    assert rl.allow("u", 0.5) == 0  # one token refilled
    assert rl.allow("u", 0.5) > 0
    assert rl.allow("other", 0.5) == 0  # users are independent


def test_disabled_allows_everything_and_tracks_nothing() -> None:
    rl = RateLimiter(rate_per_s=0, burst=1)
    assert all(rl.allow("u", 0.0) == 0 for _ in range(100)) and len(rl) == 0


def test_memory_is_bounded() -> None:
    rl = RateLimiter(rate_per_s=1, burst=1, max_users=10)
    for i in range(100):
        rl.allow(f"u{i}", 0.0)
    assert len(rl) == 10


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate_per_s=-1, burst=1)
