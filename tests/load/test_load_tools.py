"""The flame-graph tool's parsing and drawing, the build comparison's unpacking of a ref, and
the memory report's grouping of keys."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from load.compare import resolve, unpack
from load.flame import read_stacks, shares, svg

RAW = [
    "main (refreshd/cli.py:10);decide (refreshd/http/routes.py:5);commit (refreshd/store/redis.py:9) 6",
    "main (refreshd/cli.py:10);decide (refreshd/http/routes.py:7) 2",
    'process 12:"python -m refreshd";main (refreshd/cli.py:10);idle (asyncio/base_events.py:1) 2',
    "garbage line without a count",
    "_bootstrap (threading.py:1);_worker (/usr/lib/python3.11/concurrent/futures/thread.py:81) 40",
]


def test_collapsed_stacks_give_inclusive_and_self_shares_with_lines_merged() -> None:
    stacks = read_stacks(RAW)
    assert sum(stacks.values()) == 10
    incl, own = shares(stacks)
    assert incl["main (refreshd/cli.py)"] == pytest.approx(1.0)
    assert incl["decide (refreshd/http/routes.py)"] == pytest.approx(0.8)  # lines 5 and 7
    assert own["decide (refreshd/http/routes.py)"] == pytest.approx(0.2)
    assert own["commit (refreshd/store/redis.py)"] == pytest.approx(0.6)
    assert not any(name.startswith("process") for name in incl)


def test_the_svg_has_one_box_per_frame_with_its_share() -> None:
    picture = svg(read_stacks(RAW), "test")
    assert picture.startswith("<svg") and picture.endswith("</svg>")
    assert "<title>decide (refreshd/http/routes.py): 80.0% (8 samples)</title>" in picture
    assert picture.count("<rect") == 1 + 4  # background + main, decide, commit, idle


def test_a_ref_is_unpacked_without_touching_the_work_tree(tmp_path: Path) -> None:
    commit = resolve("HEAD")
    unpack(commit, tmp_path)
    tracked = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", commit], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "refreshd/__init__.py" in tracked
    assert all((tmp_path / name).exists() for name in tracked)
    with pytest.raises(SystemExit, match="not a commit"):
        resolve("no-such-ref-anywhere")
    status = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True)
    assert "refreshd-compare" not in status.stdout


def test_memory_groups_a_users_keys_apart_from_shared_ones() -> None:
    from load.memory import _owner, batch_owner, cache_bytes_per_user
    from refreshd.store.protocol import batch_key, directives_key, user_decisions_key, user_key

    uid = "dev-7:a.b"
    assert _owner(user_key(uid)) == ("state", uid)
    assert _owner(directives_key(uid)) == ("directives", uid)
    assert _owner(user_decisions_key(uid)) == ("decision index", uid)
    kind, rest = _owner(batch_key(uid, "batch:1")) or ("", "")
    assert kind == "batch marks" and batch_owner(rest, {uid, "dev-7"}) == uid
    assert _owner("log:decisions:{s03}") is None and _owner("cfg:rules") is None
    # The cache holds the blob and a little more for its entry.
    assert 1000 < cache_bytes_per_user([(b"x" * 1000, 1)] * 200) < 1600
