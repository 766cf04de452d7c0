"""The micro-batcher: batching, model swaps, failures and timeouts."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from refreshd.live.batcher import MicroBatcher, ScoringUnavailable


class SumModel:
    """Scores a row as the mean of its values; records batch sizes."""

    def __init__(self, version: str = "v1", fail: bool = False) -> None:
        self.version = version
        self.fail = fail
        self.calls: list[int] = []

    def predict(self, rows: np.ndarray) -> np.ndarray:
        self.calls.append(len(rows))
        if self.fail:
            raise RuntimeError("boom")
        return rows.mean(axis=1)


async def test_concurrent_rows_share_one_predict_call() -> None:
    model = SumModel()
    batcher = MicroBatcher(lambda: model, max_batch=1000, max_wait_ms=2)
    results = await asyncio.gather(*(batcher.score([i, i]) for i in range(200)))
    assert [r[0] for r in results] == [float(i) for i in range(200)]
    assert model.calls == [200] and batcher.batches == 1


async def test_max_batch_flushes_early() -> None:
    model = SumModel()
    batcher = MicroBatcher(lambda: model, max_batch=64, max_wait_ms=10_000)
    await asyncio.wait_for(asyncio.gather(*(batcher.score([1.0]) for i in range(128))), 1)
    assert model.calls == [64, 64]


async def test_each_batch_uses_the_model_current_at_flush() -> None:
    current = {"m": SumModel("v1")}
    batcher = MicroBatcher(lambda: current["m"], max_wait_ms=1)
    first = await batcher.score([1.0])
    current["m"] = SumModel("v2")
    second = await asyncio.gather(*(batcher.score([2.0]) for _ in range(5)))
    assert first[1] == "v1" and {v for _, v in second} == {"v2"}


@pytest.mark.parametrize("model", [None, SumModel(fail=True)])
async def test_no_model_or_failure_raises_scoring_unavailable(model: SumModel | None) -> None:
    batcher = MicroBatcher(lambda: model, max_wait_ms=0)
    with pytest.raises(ScoringUnavailable):
        await batcher.score([1.0])


async def test_timed_out_callers_are_skipped() -> None:
    model = SumModel()
    batcher = MicroBatcher(lambda: model, max_wait_ms=50)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(batcher.score([1.0]), 0.001)
    assert (await batcher.score([3.0]))[0] == 3.0
    assert model.calls == [1]  # the abandoned row was not scored


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        MicroBatcher(lambda: None, max_batch=0)
