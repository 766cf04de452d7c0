"""RedisStore (on a real Valkey) and MemoryStore keep the same contract."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest

from refreshd import constants as C
from refreshd.core.messages import Directive
from refreshd.core.state import UserState
from refreshd.store.memory import MemoryStore
from refreshd.store.protocol import (
    LOG_DECISIONS,
    LOG_EVENTS,
    Commit,
    ConfigWrite,
    Store,
    live_directives,
)
from refreshd.store.redis import RedisStore

T0 = 1_800_000_000_000


@pytest.fixture(params=["redis", "memory", pytest.param("cluster", marks=pytest.mark.cluster)])
async def store(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Store]:
    s: Store
    if request.param == "redis":
        s = RedisStore(redis_url)
    elif request.param == "cluster":
        s = RedisStore(cluster_nodes=request.getfixturevalue("cluster_nodes"))
    else:
        s = MemoryStore()
    yield s
    await s.close()


def d(id: str, created: int = T0, ttl_ms: int = 60_000) -> Directive:
    return Directive(id=id, type="refresh", created_ts=created, expires_ts=created + ttl_ms)


def commit(version: int, now_ms: int = T0, **kw: object) -> Commit:
    state = UserState(version=version + 1, decisions=version + 1)
    return Commit(uid="u1", expected_version=version, state=state, now_ms=now_ms, **kw)  # type: ignore[arg-type]


async def test_new_user_has_version_zero_and_nothing_pending(store: Store) -> None:
    state, pending = await store.load_user("nobody", T0)
    assert state == UserState() and pending == []


async def test_commit_then_load_round_trips(store: Store) -> None:
    result = await store.commit(commit(0, decision_logs=[b'{"a":1}'], event_logs=[b"e1", b"e2"]))
    assert result.status == "ok"
    state, _ = await store.load_user("u1", T0)
    assert state.version == 1 and state.decisions == 1
    # A decision row is stored without its id and read back with it: the id names its place.
    (did,) = result.decision_ids
    assert await store.read_log(LOG_DECISIONS, 10) == [b'{"decision_id":"%s","a":1}' % did.encode()]
    assert await store.read_log(LOG_EVENTS, 10) == [b"e1", b"e2"]


async def test_a_decision_is_found_by_its_id_and_by_its_user(store: Store) -> None:
    ids = []
    for v in range(3):
        result = await store.commit(commit(v, now_ms=T0 + v, decision_logs=[b'{"n":%d}' % v]))
        ids += result.decision_ids
    assert len(set(ids)) == 3
    assert await store.get_decision(ids[1]) == b'{"decision_id":"%s","n":1}' % ids[1].encode()
    rows = await store.user_decisions("u1", 2)
    assert [msgspec.json.decode(r)["n"] for r in rows] == [2, 1]  # newest first
    assert await store.user_decisions("nobody", 5) == []
    for unknown in ("00-1-0", "99-1-0", "zz", "", "07-12-x", ids[0][:2] + "-1-0"):
        assert await store.get_decision(unknown) is None


async def test_a_user_keeps_the_newest_decision_ids_only(store: Store) -> None:
    n = C.USER_DECISIONS_KEPT + 5
    for v in range(n):
        await store.commit(commit(v, now_ms=T0 + v, decision_logs=[b'{"n":%d}' % v]))
    rows = await store.user_decisions("u1", 1000)
    assert [msgspec.json.decode(r)["n"] for r in rows] == list(range(n - 1, 4, -1))


async def test_stale_version_is_a_conflict_and_writes_nothing(store: Store) -> None:
    assert (await store.commit(commit(0))).status == "ok"
    result = await store.commit(commit(0, event_logs=[b"x"], new_directives=[d("a")]))
    assert result.status == "conflict" and result.directives == []
    assert await store.read_log(LOG_EVENTS, 10) == []
    assert (await store.load_user("u1", T0))[0].version == 1


async def test_known_batch_is_a_duplicate_and_writes_nothing(store: Store) -> None:
    assert (await store.commit(commit(0, batch_id="b1", event_logs=[b"x"]))).status == "ok"
    assert await store.has_batch("u1", "b1") and not await store.has_batch("u1", "b2")
    result = await store.commit(commit(1, batch_id="b1", event_logs=[b"y"]))
    assert result.status == "duplicate"
    assert await store.read_log(LOG_EVENTS, 10) == [b"x"]


async def test_directives_are_pending_until_acked_and_until_expiry(store: Store) -> None:
    await store.add_directive("u1", d("late", created=T0 + 5), ttl_s=60)
    # A directive added outside a commit bumps the user's version (so cached copies go stale).
    assert (await store.load_user("u1", T0))[0].version == 1
    assert (await store.commit(commit(0, new_directives=[d("early")]))).status == "conflict"
    result = await store.commit(commit(1, new_directives=[d("early"), d("short", ttl_ms=10)]))
    assert [x.id for x in result.directives] == ["early", "short", "late"]
    _, stored = await store.load_user("u1", T0 + 20)
    assert [x.id for x in live_directives(stored, T0 + 20)] == ["early", "late"]  # "short" expired
    result = await store.commit(commit(2, ack_ids=["early", "unknown"], now_ms=T0 + 20))
    assert [x.id for x in result.directives] == ["late"]


async def test_model_registry(store: Store) -> None:
    assert await store.current_model_version() is None and await store.list_models() == []
    meta = msgspec.json.encode({"version": "m1"})
    await store.put_model("m1", "tree text", meta)
    await store.put_model("m2", "tree 2", msgspec.json.encode({"version": "m2"}))
    assert await store.switch_model("m1", b"{}", expected=None)
    assert await store.current_model_version() == "m1"
    assert await store.get_model("m1") == ("tree text", meta)
    assert await store.get_model("nope") is None
    assert [msgspec.json.decode(m)["version"] for m in await store.list_models()] == ["m1", "m2"]


async def test_switch_model_records_the_change_only_from_the_expected_champion(
    store: Store,
) -> None:
    assert await store.model_history(10) == []
    assert await store.switch_model("m1", b"c1", expected="m0") is False  # nothing is current
    assert await store.current_model_version() is None and await store.model_history(10) == []
    assert await store.switch_model("m1", b"c1", expected=None) is True
    assert await store.switch_model("m2", b"c2", expected=None) is False  # m1 is current now
    assert await store.switch_model("m2", b"c2", expected="m1") is True
    assert await store.current_model_version() == "m2"
    assert await store.model_history(10) == [b"c2", b"c1"]  # newest first
    assert await store.model_history(1) == [b"c2"]


async def test_append_log_rows_read_back_across_shards(store: Store) -> None:
    rows = [(f"u{i}", f'{{"i":{i}}}'.encode()) for i in range(40)]
    await store.append_log("log:shadow:m1", rows[:20], maxlen=1000, ttl_s=60)
    await store.append_log("log:shadow:m1", rows[20:], maxlen=1000, ttl_s=60)
    await store.append_log("log:shadow:m1", [], maxlen=1000, ttl_s=60)
    got = await store.read_log("log:shadow:m1", 100)
    assert sorted(got) == sorted(blob for _, blob in rows)
    assert await store.read_log("log:shadow:m2", 100) == []


async def test_config_items_are_versioned(store: Store) -> None:
    assert await store.get_config("rules") == (0, {})
    v1 = (await store.put_config("rules", "r1", b"one")).version
    v2 = (await store.put_config("rules", "r2", b"two")).version
    assert v2 > v1 and await store.config_version("rules") == v2
    assert await store.delete_config("rules", "missing") is None
    deleted = await store.delete_config("rules", "r1")
    assert deleted is not None
    v3 = deleted.version
    assert v3 > v2
    assert await store.get_config("rules") == (v3, {"r2": b"two"})
    assert await store.get_config("fences") == (0, {})


async def test_a_write_with_history_keeps_the_newest_versions(store: Store) -> None:
    """Each write keeps its blob under its version; the one `history` writes back is dropped."""
    versions = [
        (await store.put_config("policy", "default", b"doc%d" % i, history=3)).version
        for i in range(5)
    ]
    assert versions == [1, 2, 3, 4, 5]
    kept = [await store.get_config_at("policy", v) for v in range(7)]
    assert kept == [None, None, None, b"doc2", b"doc3", b"doc4", None]
    failed = await store.put_config("policy", "default", b"late", expected=1, history=3)
    assert failed.status == "conflict" and await store.get_config_at("policy", 6) is None
    await store.put_config("rules", "r1", b"one")  # without history nothing is kept
    assert await store.get_config_at("rules", 1) is None


async def test_config_changes_since_a_version(store: Store) -> None:
    """A reader that saw version v reads only what changed after it, deletions as None."""
    await store.put_config("fences", "a", b"a1")
    await store.put_config("fences", "b", b"b1")
    seen, _ = await store.get_config("fences")
    assert await store.get_config_changes("fences", seen) == (seen, {})
    await store.put_config("fences", "c", b"c1")
    await store.put_config("fences", "a", b"a2")
    deleted = await store.delete_config("fences", "b")
    assert deleted is not None
    v = deleted.version
    assert await store.get_config_changes("fences", seen) == (
        v,
        {"a": b"a2", "b": None, "c": b"c1"},
    )
    # Put back after a delete: the newest change wins.
    v2 = (await store.put_config("fences", "b", b"b2")).version
    assert await store.get_config_changes("fences", v) == (v2, {"b": b"b2"})
    assert await store.get_config_changes("rules", 0) == (0, {})


async def test_config_items_carry_their_own_version(store: Store) -> None:
    """An item's version is the kind version that last wrote it; 0 while it does not exist."""
    assert await store.get_config_item("rules", "r1") is None
    a = await store.put_config("rules", "r1", b"one")
    b = await store.put_config("rules", "r2", b"two")
    assert (a.status, b.status) == ("ok", "ok") and b.version > a.version
    assert await store.get_config_item("rules", "r1") == (a.version, b"one")
    assert await store.get_config_items("rules") == (
        b.version,
        {"r1": (a.version, b"one"), "r2": (b.version, b"two")},
    )
    assert await store.get_config_items("fences") == (0, {})


async def test_config_writes_with_an_expected_version(store: Store) -> None:
    first = await store.put_config("rules", "r1", b"one", expected=0)  # create only
    assert first.status == "ok"
    again = await store.put_config("rules", "r1", b"other", expected=0)
    assert again == ConfigWrite("conflict", first.version)
    stale = await store.put_config("rules", "r1", b"other", expected=first.version + 5)
    assert stale == ConfigWrite("conflict", first.version)
    assert await store.get_config_item("rules", "r1") == (first.version, b"one")
    await store.put_config("rules", "r2", b"two")  # another item moves the kind, not r1
    second = await store.put_config("rules", "r1", b"uno", expected=first.version)
    assert second.status == "ok" and second.version > first.version
    assert await store.delete_config("rules", "r1", expected=first.version) == ConfigWrite(
        "conflict", second.version
    )
    deleted = await store.delete_config("rules", "r1", expected=second.version)
    assert deleted is not None and deleted.status == "ok"
    assert await store.delete_config("rules", "r1", expected=0) is None  # gone
    # Deleted, its version is 0 again: a create-only write succeeds.
    assert (await store.put_config("rules", "r1", b"new", expected=0)).status == "ok"


async def test_concurrent_writes_with_one_expected_version_let_one_win(store: Store) -> None:
    base = await store.put_config("rules", "r1", b"base")
    results = await asyncio.gather(
        *(store.put_config("rules", "r1", f"w{i}".encode(), base.version) for i in range(8))
    )
    winners = [i for i, r in enumerate(results) if r.status == "ok"]
    assert len(winners) == 1
    won = results[winners[0]]
    assert all(r == ConfigWrite("conflict", won.version) for r in results if r is not won)
    assert await store.get_config_item("rules", "r1") == (won.version, f"w{winners[0]}".encode())


async def test_due_users_come_back_once_when_due(store: Store) -> None:
    await store.mark_due("a", T0 + 100)
    await store.mark_due("b", T0 + 50)
    await store.mark_due("a", T0 + 10)  # an earlier deadline wins
    assert await store.due_users(T0, 10) == []
    assert await store.due_users(T0 + 60, 10) == ["a", "b"]
    assert await store.due_users(T0 + 1000, 10) == []


async def test_stat_increments_commit_with_the_state(store: Store) -> None:
    incs = [("exp:e:v:a", {"users": 1, "clicks.sum_x": 3}), ("exp:e:v:b", {"users": 1})]
    assert (await store.commit(commit(0, stat_incrs=incs))).status == "ok"
    assert (await store.commit(commit(0, stat_incrs=incs))).status == "conflict"  # not applied
    assert (
        await store.commit(commit(1, stat_incrs=[("exp:e:v:a", {"clicks.sum_x": -1})]))
    ).status == "ok"
    assert await store.read_stats(["exp:e:v:a", "exp:e:v:b", "exp:e:v:c"]) == [
        {"users": 1, "clicks.sum_x": 2},
        {"users": 1},
        {},
    ]


async def test_locks_are_exclusive_until_released_by_their_owner(store: Store) -> None:
    assert await store.try_lock("train", "a", 60)
    assert not await store.try_lock("train", "b", 60)
    await store.release_lock("train", "b")  # not the owner: no effect
    assert not await store.try_lock("train", "b", 60)
    await store.release_lock("train", "a")
    assert await store.try_lock("train", "b", 60)
