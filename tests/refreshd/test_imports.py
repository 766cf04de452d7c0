"""Light modules stay light: the JSON codec must not pull in the model or geometry stacks."""

from __future__ import annotations

import ast
import subprocess
import sys

HEAVY = ("lightgbm", "shapely", "scipy")


def loaded_after(statement: str) -> list[str]:
    """Return which of HEAVY a fresh interpreter has loaded after running `statement`."""
    code = f"{statement}, sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    names: list[str] = ast.literal_eval(out.stdout.strip())
    return names


def test_codec_imports_no_heavy_package() -> None:
    assert loaded_after("import refreshd.http.codec") == []


def test_http_package_is_import_free() -> None:
    assert loaded_after("import refreshd.http") == []
