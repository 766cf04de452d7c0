"""The event rules a worker matches with: loaded from the store, refreshed when they change."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import msgspec

from refreshd.core.rules import Rule, RuleError, RuleSet, default_rules, parse_rule, rule_to_json
from refreshd.live.configbook import reload_if_changed
from refreshd.store.protocol import Store

log = logging.getLogger(__name__)
KIND = "rules"


def load_rules_file(path: Path) -> dict[str, Rule]:
    """Read a rules file: a JSON object of rule id → rule; raise RuleError naming the problem."""
    try:
        raw: Any = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RuleError(f"cannot read rules file {path}: {exc}", field=None) from None
    if not isinstance(raw, dict):
        raise RuleError(f"rules file {path} must hold a JSON object of id → rule", field=None)
    return {rid: parse_rule(rid, body) for rid, body in raw.items()}


class RuleBook:
    """The current compiled rule set of this worker and the store version it came from."""

    def __init__(self) -> None:
        self.version = -1
        self.rules: dict[str, Rule] = {}
        self.ruleset = RuleSet({})

    async def seed(self, store: Store, extra: dict[str, Rule]) -> None:
        """Install the built-in rules on a fresh store, and the rules file's rules always."""
        if await store.config_version(KIND) == 0:
            for rid, rule in default_rules().items():
                await store.put_config(KIND, rid, msgspec.json.encode(rule_to_json(rule)))
        for rid, rule in extra.items():
            await store.put_config(KIND, rid, msgspec.json.encode(rule_to_json(rule)))
        await self.refresh(store)

    async def refresh(self, store: Store) -> bool:
        """Reload the rules if their version changed; return whether it did."""
        loaded = await reload_if_changed(
            store, KIND, self.version, _parse, (RuleError, msgspec.DecodeError)
        )
        if loaded is None:
            return False
        self.version, self.rules = loaded
        self.ruleset = RuleSet(self.rules)
        log.info("event rules v%d: %d rules", self.version, len(self.rules))
        return True


def _parse(rule_id: str, blob: bytes) -> Rule:
    return parse_rule(rule_id, msgspec.json.decode(blob))
