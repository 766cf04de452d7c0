"""The policy document a worker decides with: loaded from the store, refreshed when it changes."""

from __future__ import annotations

import logging

from refreshd.core.errors import MalformedJSON
from refreshd.core.policy import DEFAULT_POLICY, PolicyDoc, PolicyError, parse_policy
from refreshd.live.configbook import reload_if_changed
from refreshd.store.protocol import Store

log = logging.getLogger(__name__)
KIND = "policy"
ITEM = "default"  # the kind's one item


def _parse(item_id: str, blob: bytes) -> PolicyDoc:
    return parse_policy(blob)


class PolicyBook:
    """This worker's policy document and the store version it came from.

    `doc` is `default` (the settings' ladder) until a document is stored (or when the stored
    one no longer parses: logged and skipped, as other configuration). The kind holds one
    item, so the kind's version is that item's version: 0 while none was written.
    """

    def __init__(self, default: PolicyDoc = DEFAULT_POLICY) -> None:
        self.version = -1
        self.default = default
        self.doc: PolicyDoc = default

    async def refresh(self, store: Store) -> bool:
        """Reload the document if its version changed; return whether it did."""
        loaded = await reload_if_changed(
            store, KIND, self.version, _parse, (PolicyError, MalformedJSON)
        )
        if loaded is None:
            return False
        self.version, items = loaded
        self.doc = items.get(ITEM, self.default)
        log.info("policy v%d: %d nodes, mode %s", self.version, len(self.doc.nodes), self.doc.mode)
        return True
