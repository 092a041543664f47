"""The core's modules import each other without cycles, counting TYPE_CHECKING-only imports.

A cycle (node -> codec -> node, as there was) means two modules are one in disguise: neither can
be read, tested or replaced alone. Every import statement counts, wherever it stands.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "meshmsg" / "core"


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, modules: set[str]) -> set[str]:
    """The ``modules`` a source imports, anywhere in it (``from pkg import mod``: ``pkg.mod``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                found.add(target if target in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found & modules


def core_imports() -> dict[str, set[str]]:
    """Module -> the core modules it imports."""
    paths = {module_name(p): p for p in CORE.rglob("*.py")}
    return {
        name: imports_of(p.read_text(encoding="utf-8"), set(paths)) for name, p in paths.items()
    }


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        for target in sorted(graph.get(name, ())):
            cycle = visit(target, [*path, name])
            if cycle is not None:
                return cycle
        done.add(name)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle is not None:
            return cycle
    return None


def test_the_core_has_no_import_cycle() -> None:
    graph = core_imports()
    assert "meshmsg.core.codec" in graph["meshmsg.core.node"]  # the graph is really read
    assert find_cycle(graph) is None


def test_a_deliberate_cycle_is_found() -> None:
    graph = core_imports()
    graph["meshmsg.core.codec"].add("meshmsg.core.node")  # codec imports node again
    cycle = find_cycle(graph)
    assert cycle is not None
    assert "meshmsg.core.codec" in cycle
    assert "meshmsg.core.node" in cycle
    assert cycle[0] == cycle[-1]


def test_type_checking_imports_count() -> None:
    source = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from meshmsg.core import node\n"
    )
    assert imports_of(source, set(core_imports())) == {"meshmsg.core.node"}
