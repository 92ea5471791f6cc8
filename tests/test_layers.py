"""The structure drawn from imports (../shared/STYLE.md): index/ never imports bot/, and no two
modules import each other, directly or round a longer loop. Imports inside functions and under
TYPE_CHECKING count too: a lazy import is still a dependency a reader has to keep in mind."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "index")
PENDING_CYCLES: set[frozenset[str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The first-party modules `path` imports (`from bot import x` names bot.x when x is one)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


@cache  # parsed once for the three tests
def import_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for pkg in PACKAGES for path in (ROOT / pkg).glob("*.py")}
    known = set(files)
    return {
        name: imported_modules(path, known) - {name, name.split(".")[0]}
        for name, path in files.items()
    }


def test_index_never_imports_bot() -> None:
    offenders = {
        name: sorted(target for target in targets if target.split(".")[0] == "bot")
        for name, targets in import_graph().items()
        if name.startswith("index")
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles: list[list[str]] = []
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph.get(name, ())):
            if state.get(target) == "open":
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert [cycle for cycle in cycles if frozenset(cycle) not in PENDING_CYCLES] == []


def test_the_graph_sees_imports() -> None:
    # Guards the two tests above against passing because the walk found nothing.
    graph = import_graph()
    assert "index.article" in graph["index.chunk"]
    assert "bot.settings" in graph["bot.core"]
