"""Locust version of the realistic mix, for teams that already run Locust.

    pip install locust
    locust -f load/locustfile.py --host http://127.0.0.1:8080 --users 200 --spawn-rate 50

Each simulated user sends the same mix as `python -m load` (70 % decide, 20 % events batches,
10 % location fixes over 10 000 device ids). Locust is a closed-model tool: a slow server slows
the users down, so read its latency percentiles with that in mind (the open-model generator in
`load/openloop.py` does not have that bias). Point it only at a service on this machine.
"""

from __future__ import annotations

import itertools
from typing import Any

from locust import HttpUser, between, task

from load.mix import Mix
from load.openloop import check_loopback

_counter = itertools.count()


class Device(HttpUser):
    """One simulated device posting decide / events / location requests."""

    wait_time = between(0.05, 0.5)

    def on_start(self) -> None:
        check_loopback(self.host or "")
        self.mix = Mix(seed=next(_counter))

    @task
    def contact(self) -> None:
        method, path, body = self.mix.request(next(_counter))
        headers = {"Content-Type": "application/json"}
        kwargs: dict[str, Any] = {"data": body, "headers": headers, "name": path}
        with self.client.request(method, path, catch_response=True, **kwargs) as resp:
            if resp.status_code >= 500 or resp.status_code in (400, 415, 422):
                resp.failure(f"{resp.status_code}: {resp.text[:200]}")
