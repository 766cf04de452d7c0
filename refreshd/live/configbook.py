"""Reload one kind of stored configuration when its version key moves (rules, experiments).

Each worker keeps a parsed copy of every configuration item and polls the kind's version key
(one small store call); only when it changed are the items read and parsed again. An item that
no longer parses (written by an older version of refreshd) is logged and skipped, so one bad
item never takes the others down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from refreshd.store.protocol import Store

__all__ = ["reload_if_changed"]

log = logging.getLogger(__name__)
T = TypeVar("T")


async def reload_if_changed(
    store: Store,
    kind: str,
    version: int,
    parse: Callable[[str, bytes], T],
    errors: tuple[type[Exception], ...],
) -> tuple[int, dict[str, T]] | None:
    """Return (new version, id → parsed item) if `kind` changed since `version`, else None."""
    if await store.config_version(kind) == version:
        return None
    new_version, items = await store.get_config(kind)
    parsed: dict[str, T] = {}
    for item_id, blob in sorted(items.items()):
        try:
            parsed[item_id] = parse(item_id, blob)
        except errors as exc:
            log.error("skipping stored %s item %s: %s", kind, item_id, exc)
    return new_version, parsed
