"""Rule and experiment books: reload only when the version moves, skip unreadable items."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from refreshd.core.rules import default_rules, rule_to_json
from refreshd.live.expbook import ExperimentBook
from refreshd.live.rulebook import RuleBook
from refreshd.store.redis import RedisStore


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    s = RedisStore(redis_url)
    yield s
    await s.close()


async def test_rules_reload_on_change_and_skip_a_bad_item(store: RedisStore) -> None:
    book = RuleBook()
    good = rule_to_json(next(iter(default_rules().values())))
    await store.put_config("rules", "good", msgspec.json.encode(good))
    await store.put_config("rules", "bad", b'{"pattern": "not a list"}')
    assert await book.refresh(store)
    assert list(book.rules) == ["good"] and set(book.ruleset.plans) == {"good"}
    assert not await book.refresh(store)  # nothing changed: no reload
    await store.put_config("rules", "bad", b"not json at all")
    assert await book.refresh(store) and list(book.rules) == ["good"]


async def test_experiments_reload_on_change_and_skip_a_bad_item(store: RedisStore) -> None:
    book = ExperimentBook()
    body = {
        "variants": [
            {"key": "control", "params": {"policy": "fixed"}},
            {"key": "t30", "params": {"policy": "intent", "threshold": 0.3}},
        ]
    }
    await store.put_config("experiments", "exp1", msgspec.json.encode(body))
    await store.put_config("experiments", "broken", b'{"variants": []}')
    assert await book.refresh(store)
    assert list(book.experiments) == ["exp1"]
    version = book.version
    assert not await book.refresh(store) and book.version == version
