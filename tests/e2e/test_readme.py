"""The curl examples, run against a real `refreshd serve`, print what the docs say.

The README shows the first examples; docs/api.md's walkthrough continues the same session (a
replayed batch, the cooldown after a pull), so the two console blocks run in that order.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# Each file's first console block, run in this order against one service.
SOURCES = (README, ROOT / "docs" / "api.md")


def examples() -> list[tuple[str, str]]:
    """Return (shell command, expected output) pairs from the console blocks of SOURCES."""
    pairs: list[tuple[str, str]] = []
    for source in SOURCES:
        pairs.extend(_pairs(source.read_text().split("```console\n", 1)[1].split("```", 1)[0]))
    return pairs


def _pairs(block: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        assert lines[i].startswith("$ "), lines[i]
        command = lines[i][2:]
        while command.endswith("\\"):
            i += 1
            command = command[:-1] + lines[i].strip()
        pairs.append((command, lines[i + 1]))
        i += 2
    return pairs


def pattern(expected: str) -> re.Pattern[str]:
    """Turn an expected output with … elisions into a regex."""
    return re.compile(".*?".join(re.escape(part) for part in expected.split("…")) + r"\s*$", re.S)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    data = tmp_path_factory.mktemp("readme")
    proc = subprocess.Popen(
        [sys.executable, "-m", "refreshd", "serve", "--port", str(port), "--data-dir", str(data)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120  # includes training the bootstrap model
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "refreshd did not start"
            time.sleep(0.2)
    yield port
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README examples use curl")
def test_readme_examples(service: int) -> None:
    pairs = examples()
    assert len(pairs) >= 6
    for command, expected in pairs:
        command = command.replace("localhost:8080", f"127.0.0.1:{service}")
        out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert pattern(expected).match(out.stdout), (
            f"{command}\n got: {out.stdout}\nwant: {expected}"
        )
