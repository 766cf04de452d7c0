"""The geofences a worker answers fixes with: an H3 index kept in step with the store."""

from __future__ import annotations

import asyncio
import logging

import msgspec

from geo import FenceIndex, GeometryError, parse_feature
from geo.fence import Fence
from refreshd.store import Store

log = logging.getLogger(__name__)
KIND = "fences"
# Parsing a fence (projection, buffers, H3 cover) costs milliseconds; more than this many
# changed fences are parsed off the event loop.
INLINE_PARSE_MAX = 20


def _parse_all(items: dict[str, bytes]) -> dict[str, Fence | None]:
    out: dict[str, Fence | None] = {}
    for fence_id, blob in items.items():
        try:
            out[fence_id] = parse_feature(fence_id, msgspec.json.decode(blob))
        except (GeometryError, msgspec.DecodeError) as exc:  # stored by an older version?
            log.error("skipping stored fence %s: %s", fence_id, exc)
            out[fence_id] = None
    return out


class FenceBook:
    """This worker's fence index; `refresh` applies only the fences that changed."""

    def __init__(self) -> None:
        self.version = -1
        self.index = FenceIndex()
        self._blobs: dict[str, bytes] = {}

    async def refresh(self, store: Store) -> bool:
        """Bring the index up to the stored fences if their version changed."""
        if await store.config_version(KIND) == self.version:
            return False
        version, items = await store.get_config(KIND)
        changed = {fid: b for fid, b in items.items() if self._blobs.get(fid) != b}
        removed = [fid for fid in self._blobs if fid not in items]
        if len(changed) > INLINE_PARSE_MAX:
            parsed = await asyncio.to_thread(_parse_all, changed)
        else:
            parsed = _parse_all(changed)
        for fid in removed:
            self.index.remove(fid)
            del self._blobs[fid]
        for fid, fence in parsed.items():
            if fence is None:
                self.index.remove(fid)
            else:
                self.index.upsert(fence)
            self._blobs[fid] = changed[fid]
        self.version = version
        if changed or removed:
            log.info("geofences v%d: %d changed, %d removed", version, len(changed), len(removed))
        return True
