"""Browser fixtures: headless Chromium from the system, driven by Playwright's Python package.

Playwright's own browser download is not used: tests point it at the system's Chromium
(Debian's `chromium`; `make test` installs it when it can). Without one they skip, saying what
to install. Accessibility is checked with axe-core from the npm registry when it can be had
(cached under ~/.cache/refreshd), else by a hand-written check of labels and landmarks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
INSTALL_HINT = (
    "no Chromium for the console's browser tests: install the system package "
    "(Debian/Ubuntu: apt-get install chromium; Fedora: dnf install chromium) "
    "or set REFRESHD_CHROMIUM to a Chromium binary"
)
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "console"
AXE_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "refreshd" / "axe"


def chromium_path() -> str | None:
    given = os.environ.get("REFRESHD_CHROMIUM")
    if given:
        return given
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    path = chromium_path()
    if path is None:
        pytest.skip(INSTALL_HINT)
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


def _fetch_axe() -> Path | None:
    """axe.min.js from the npm registry (`npm pack axe-core`), cached; None if unavailable."""
    target = AXE_CACHE / "axe.min.js"
    if target.exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        return None
    AXE_CACHE.mkdir(parents=True, exist_ok=True)
    try:
        out = subprocess.run(
            [npm, "pack", "axe-core@4", "--silent"], cwd=AXE_CACHE, capture_output=True,
            text=True, timeout=60, check=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        with tarfile.open(AXE_CACHE / out) as tar:
            member = tar.extractfile("package/axe.min.js")
            assert member is not None
            target.write_bytes(member.read())
    except (subprocess.SubprocessError, OSError, KeyError, IndexError, AssertionError):
        return None
    return target


@pytest.fixture(scope="session")
def axe_source() -> str | None:
    path = _fetch_axe()
    return path.read_text() if path else None
