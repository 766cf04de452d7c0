"""Per-key asyncio locks: serialise one user's requests inside a worker.

Compare-and-set in the store keeps workers correct; this lock keeps a burst of one
user's requests in one worker from retrying against each other.

Nearly every hold is uncontended (one user rarely has two requests in flight), so a hold of a
free key costs a dict insert and nothing else: no `asyncio.Lock`, no generator-based context
manager (together ~2.5 % of a worker's CPU under wrk). Waiters queue in arrival order and the
key is handed from one holder to the next.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from types import TracebackType


class KeyedLock:
    """A lock per key: held while in `_held`, with the futures of who waits for it, FIFO."""

    def __init__(self) -> None:
        self._held: dict[str, collections.deque[asyncio.Future[None]]] = {}

    def hold(self, key: str) -> _Hold:
        """`async with locks.hold(key):` runs its body while no one else holds `key`."""
        return _Hold(self, key)

    def _release(self, key: str) -> None:
        waiters = self._held[key]
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # handed over: the key stays held
                return
        del self._held[key]

    def __len__(self) -> int:
        return len(self._held)


class _Hold:
    __slots__ = ("_key", "_owner")

    def __init__(self, owner: KeyedLock, key: str) -> None:
        self._owner, self._key = owner, key

    async def __aenter__(self) -> None:
        held = self._owner._held
        waiters = held.get(self._key)
        if waiters is None:
            held[self._key] = collections.deque()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._owner._release(self._key)  # handed over as it was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    waiters.remove(fut)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._owner._release(self._key)
