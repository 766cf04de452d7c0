"""A few seconds of open-model load at a tiny rate: every request answered, none failed."""

from __future__ import annotations

import pytest

from load.mix import Mix
from load.openloop import check_loopback, run_open
from tests.support import MakeClient


async def test_smoke_load_answers_every_request(make_client: MakeClient) -> None:
    client = await make_client()
    base = str(client.make_url("")).rstrip("/")
    result = await run_open(base, Mix(users=50, seed=3).request, rate=40, duration_s=2.0)
    assert result.sent == 80
    assert result.errors == 0 and result.dropped == 0, result.summary()
    assert result.ok == 80 and result.hist.get_total_count() == 80
    assert set(result.statuses) <= {200}


@pytest.mark.parametrize("url", ["http://10.0.0.1:80", "http://example.com", "http://192.168.1.2"])
def test_refuses_non_loopback_targets(url: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        check_loopback(url)


def test_accepts_loopback_targets() -> None:
    for url in ("http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9"):
        check_loopback(url)
