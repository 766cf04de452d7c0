"""The SLO search: grow the rate by a factor, then bisect between the last pass and first miss."""

from __future__ import annotations

import pytest

from load.ramp import search


@pytest.mark.parametrize("capacity", [250.0, 700.0, 1000.0, 5000.0])
async def test_search_brackets_the_capacity(capacity: float) -> None:
    probed: list[float] = []

    async def probe(rate: float) -> bool:
        probed.append(rate)
        return rate <= capacity

    found = await search(probe, start_rps=200, factor=1.5, max_rps=20_000, refine=4)
    assert found <= capacity
    # Four bisections of a ×1.5 bracket leave it ×1.5^(1/16) ≈ 2.6 % wide.
    assert found >= capacity / 1.5 ** (1 / 16) - 1e-9
    growth = next(k for k in range(30) if 200 * 1.5**k > capacity) + 1  # up to the first miss
    assert len(probed) == growth + 4


async def test_search_without_a_passing_step_or_a_failing_one() -> None:
    async def never(rate: float) -> bool:
        return False

    async def always(rate: float) -> bool:
        return True

    assert await search(never, start_rps=200, factor=1.5, max_rps=1000, refine=3) == 0.0
    assert await search(always, start_rps=200, factor=1.5, max_rps=1000, refine=3) == 200 * 1.5**3
