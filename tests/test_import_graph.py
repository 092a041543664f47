"""No import cycles anywhere in ``meshmsg/``: between modules, and between packages.

Every import counts, wherever it stands: at the top, inside a function (a lazy import is still
a dependency), under ``if TYPE_CHECKING:`` (a type-only cycle still ties two modules together),
and a string that names a ``meshmsg`` module (``importlib.import_module("meshmsg.x")`` or a lazy
command table) counts as an import of that module.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "meshmsg"
# A string naming a module of the package: "meshmsg.sim.corehost" or "meshmsg.sim.corehost:attr".
MODULE_STRING = re.compile(r"^(meshmsg(?:\.[A-Za-z_]\w*)+)(?::\w+)?$")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules_of(root: Path) -> dict[str, Path]:
    return {module_name(root, p): p for p in sorted(root.rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` is or lies in (``a.b.attr`` → ``a.b``)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _absolute(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = here.split(".")
    drop = node.level - 1 if is_package else node.level
    base = base[: len(base) - drop]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(here: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module of ``known`` that the module at ``path`` imports, by any of the means above."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, here, path.name == "__init__.py")
            names.append(base)
            # ``from pkg import sub`` imports the submodule ``pkg.sub`` when there is one.
            names += [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = MODULE_STRING.match(node.value)
            if match:
                names.append(match.group(1))
    found = {_resolve(n, known) for n in names}
    return {m for m in found if m is not None and m != here}


def import_graph(root: Path) -> dict[str, set[str]]:
    known = modules_of(root)
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is the import chain's length: small
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def package_graph(graph: dict[str, set[str]], root: str = "meshmsg") -> dict[str, set[str]]:
    """Collapse modules to the package's first level (``meshmsg.app``, ``meshmsg.config`` ...)."""

    def top(name: str) -> str:
        return ".".join(name.split(".")[:2]) if name != root else root

    collapsed: dict[str, set[str]] = {}
    for source, targets in graph.items():
        edges = collapsed.setdefault(top(source), set())
        edges.update(top(t) for t in targets if top(t) not in (top(source), root))
    return collapsed


def _write(root: Path, files: Iterable[tuple[str, str]]) -> None:
    for rel, text in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_no_module_imports_itself_back() -> None:
    assert cycles(import_graph(PACKAGE)) == []


def test_no_package_imports_itself_back() -> None:
    assert cycles(package_graph(import_graph(PACKAGE))) == []


def test_the_layers_point_one_way() -> None:
    packages = package_graph(import_graph(PACKAGE))
    assert packages["meshmsg.core"] <= {"meshmsg.config", "meshmsg.errors"}
    assert "meshmsg.app" not in packages["meshmsg.net"] | packages["meshmsg.sim"]
    assert "meshmsg.bench" not in packages["meshmsg.net"] | packages["meshmsg.core"]


def test_the_graph_sees_the_imports_that_matter() -> None:
    graph = import_graph(PACKAGE)
    assert "meshmsg.core.node" in graph["meshmsg.app.mesh"]
    assert "meshmsg.app.api" in graph["meshmsg.app.daemon"]
    # The CLI's lazy command table names its modules as strings: still edges.
    assert "meshmsg.bench.suite" in graph["meshmsg.app.cli"]


def test_a_deliberate_cycle_is_caught_whatever_hides_it(tmp_path: Path) -> None:
    root = tmp_path / "meshmsg"
    _write(root, [
        ("__init__.py", ""),
        ("core/__init__.py", ""),
        ("core/a.py", "from meshmsg.core import b\n"),
        # A type-only import still closes the loop.
        ("core/b.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from meshmsg.core.a import A\n"),
        # A lazy import inside a function, and a relative one.
        ("net/__init__.py", ""),
        ("net/c.py", "def f():\n    from .d import g\n"),
        ("net/d.py", "from meshmsg.net import c\n"),
        # An importlib string, the way a plugin loader hides it.
        ("sim/__init__.py", ""),
        ("sim/e.py", "import importlib\nM = importlib.import_module('meshmsg.sim.f')\n"),
        ("sim/f.py", "from meshmsg.sim.e import M\n"),
        # Packages: app needs net, and net reaches back into app.
        ("app/__init__.py", ""),
        ("app/g.py", "import meshmsg.net.h\n"),
        ("net/h.py", "X = 'meshmsg.app.i:run'\n"),
        ("app/i.py", ""),
    ])  # fmt: skip
    graph = import_graph(root)
    assert cycles(graph) == [
        ["meshmsg.core.a", "meshmsg.core.b"],
        ["meshmsg.net.c", "meshmsg.net.d"],
        ["meshmsg.sim.e", "meshmsg.sim.f"],
    ]
    assert cycles(package_graph(graph)) == [["meshmsg.app", "meshmsg.net"]]
