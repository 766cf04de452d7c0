"""One log line when the store stops answering and one when it answers again, not one per call.

The config poll (every `REFRESHD_CONFIG_POLL_S`, 1 s by default) reports each of its rounds
here; requests that fail in between answer 503 or fall back and are counted in /metrics, but
never log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from refreshd.settings import Settings

log = logging.getLogger(__name__)


def describe_store(settings: Settings, url: str | None = None) -> str:
    """Name the store the settings point at (passwords left out), for log lines."""
    if settings.redis_cluster:
        return "Redis Cluster " + ",".join(settings.redis_cluster)
    url = url or settings.redis_url
    if url is None:
        return f"embedded Valkey in {settings.data_dir / 'valkey'}"
    return redact(url)


def redact(url: str) -> str:
    """Return `url` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***" if parts.username else ":***"
    host = parts.hostname or ""
    netloc = f"{user}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    text = str(cause)
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


class StoreHealth:
    """Whether the store answered last time; logs only the transitions."""

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.up: bool | None = None  # None: not asked yet
        self._clock = clock
        self._down_since = 0.0

    def ok(self) -> None:
        """The store answered."""
        if self.up is None:
            log.info("store connected: %s", self.name)
        elif not self.up:
            log.info(
                "store reachable again after %.1f s: %s",
                self._clock() - self._down_since,
                self.name,
            )
        self.up = True

    def failed(self, exc: BaseException) -> None:
        """The store did not answer (or timed out)."""
        if self.up is not False:
            self._down_since = self._clock()
            log.warning(
                "store unreachable%s (%s): writes answer 503 and decisions fall back until it "
                "answers: %s",
                " at start-up" if self.up is None else "",
                _cause(exc),
                self.name,
            )
        self.up = False
