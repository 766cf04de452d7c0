"""Every link and path reference in the docs resolves inside the repository.

A clone is all a reader has: a relative link must name an existing file (and heading), a path
or module named in the text must exist, and nothing may point outside the repository except
localhost URLs in examples.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")])
README_MAX_LINES = 220

# Top-level entries a path may start with: packages and the repository's own folders and files
# (not .venv or var, which a developer's checkout may hold but a clone does not).
PACKAGES = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
TOP = PACKAGES | {"tests", "docs", ".ci"} | {p.name for p in ROOT.iterdir() if p.is_file()}

INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s()\[\]\"'`<>]+", re.I)
FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.M)
# A word that starts like a repository path: "geo/zones.py", "tests/fuzz/", "./Makefile".
PATH_WORD = re.compile(
    r"(?<![\w./-])(?:\./)?((?:" + "|".join(map(re.escape, sorted(TOP))) + r")(?:/[\w.*<>{}-]*)*)"
)
PLACEHOLDER = re.compile(r"[<>{}*…]")
TEST_ID = re.compile(r"\b(tests/[\w/.-]+\.py)::(\w+)")
DOTTED = re.compile(r"^([a-z_][a-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*)+)$")


def slug(heading: str) -> str:
    """Return the anchor GitHub gives a heading."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    seen: dict[str, int] = {}
    out: set[str] = set()
    for heading in HEADING.findall(text):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(text: str) -> list[str]:
    prose = FENCE.sub("", text)
    prose = CODE_SPAN.sub("", prose)
    return INLINE_LINK.findall(prose) + REF_LINK.findall(prose)


def check_target(doc: Path, target: str) -> str | None:
    """Return what is wrong with one link target, or None."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
        if re.match(r"^https?://(localhost|127\.0\.0\.1)(:\d+)?(/|$)", target):
            return None
        return "links outside the repository"
    where, _, fragment = target.partition("#")
    path = (doc.parent / where).resolve() if where else doc
    if not path.is_relative_to(ROOT):
        return "points outside the repository"
    if not path.exists():
        return "names no file in the repository"
    if fragment and path.suffix == ".md" and fragment not in anchors(path):
        return f"names no heading #{fragment} in {path.relative_to(ROOT)}"
    return None


@functools.cache
def file_names() -> frozenset[str]:
    """Return the names of the files in the repository's own folders (not .venv or var)."""
    folders = [ROOT / name for name in TOP if (ROOT / name).is_dir()]
    return frozenset(p.name for folder in folders for p in folder.rglob("*") if p.is_file())


def path_exists(word: str) -> bool:
    word = word.removeprefix("./")
    return (ROOT / word).exists()


def module_exists(dotted: str) -> bool:
    """Whether `pkg.mod.attr` names a module of this repository (and the attribute in it)."""
    parts = dotted.split(".")
    base = ROOT / parts[0]
    i = 1
    while i < len(parts) and ((base / parts[i]).is_dir() or (base / f"{parts[i]}.py").is_file()):
        base = base / parts[i]
        i += 1
    if i == len(parts):
        return True
    source = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    if i == 1 and not source.is_file():
        return False
    return re.search(rf"\b{re.escape(parts[i])}\b", source.read_text()) is not None


def path_problems(doc: Path) -> list[str]:
    text = doc.read_text()
    problems: list[str] = []
    words = PATH_WORD.findall(text)
    for word in words:
        word = word.rstrip(".")
        if PLACEHOLDER.search(word) or word in TOP:
            continue
        if not path_exists(word):
            problems.append(f"{doc.name}: path {word!r} does not exist")
    for file, name in TEST_ID.findall(text):
        path = ROOT / file
        if path.is_file() and not re.search(rf"^\s*(async )?def {name}\b", path.read_text(), re.M):
            problems.append(f"{doc.name}: {file} has no test {name!r}")
    for _, span in CODE_SPAN.findall(FENCE.sub("", text)):
        span = span.strip()
        token = re.split(r"::|\[", span, maxsplit=1)[0]
        if " " in token or PLACEHOLDER.search(token):
            continue
        m = DOTTED.match(token)
        if re.fullmatch(r"[\w.-]+\.py", token) and token not in file_names():
            problems.append(f"{doc.name}: file {token!r} is nowhere in the repository")
        elif m and m.group(1) in PACKAGES and not module_exists(token):
            problems.append(f"{doc.name}: module path {token!r} does not resolve")
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve_inside_the_repository(doc: Path) -> None:
    text = doc.read_text()
    problems = [
        f"{doc.name}: link {target!r} {why}"
        for target in links(text)
        if (why := check_target(doc, target)) is not None
    ]
    for url in URL.findall(text):
        if not re.match(r"^https?://(localhost|127\.0\.0\.1)(:\d+)?(/|$)", url):
            problems.append(f"{doc.name}: URL {url!r} is not a localhost example")
    if "../shared" in text:
        problems.append(f"{doc.name}: mentions ../shared, which is outside the repository")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_path_references_exist(doc: Path) -> None:
    problems = path_problems(doc)
    assert not problems, "\n".join(problems)


def test_docs_exist() -> None:
    names = {p.name for p in (ROOT / "docs").glob("*.md")}
    expected = {"design.md", "api.md", "configuration.md", "operations.md", "simulator.md",
                "performance.md"}  # fmt: skip
    assert expected <= names


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_checker_catches_broken_references(tmp_path: Path) -> None:
    """The checks above fail on what they are meant to catch (so a pass means something)."""
    doc = ROOT / "docs" / "api.md"
    assert check_target(doc, "../shared/DESIGN.md") is not None
    assert check_target(doc, "nowhere.md") is not None
    assert check_target(doc, "design.md#no-such-heading") is not None
    assert check_target(doc, "https://example.com/") is not None
    assert check_target(doc, "http://127.0.0.1:8080/healthz") is None
    assert check_target(doc, "design.md#the-decision") is None
    assert not path_exists("refreshd/core/no_such_module.py")
    assert not module_exists("refreshd.core.no_such_module")
    assert not module_exists("intent.features.no_such_function")
    assert module_exists("intent.features.compute")
    bad = tmp_path / "bad.md"
    bad.write_text(
        "See `refreshd/core/no_such_module.py`, `no_such_file.py`, `geo.no_such_module` and\n"
        "tests/e2e/no_such_test.py; `load/results/<time>.json` is a placeholder;\n"
        "`tests/e2e/test_links.py::test_no_such_test`.\n"
    )
    problems = path_problems(bad)
    assert len(problems) == 5, problems
