"""No import cycles inside meshmsg/sim, counting TYPE_CHECKING imports and importlib strings.

``sim/host`` once reached ``sim/corehost`` through ``importlib.import_module("meshmsg.sim.
corehost")`` while corehost imported host: a cycle that no import statement showed. The seam
now only defines types and ``sim/factories`` imports the core adapter directly.
"""

from __future__ import annotations

import ast
from pathlib import Path

SIM = Path(__file__).resolve().parents[2] / "meshmsg" / "sim"


def module_names(root: Path, package: str) -> dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join((package, *parts))] = path
    return out


def referenced(tree: ast.AST) -> set[str]:
    """Module names an AST imports (anywhere, TYPE_CHECKING included) or names in a string."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value.partition(":")[0])  # "pkg.mod" or "pkg.mod:attr"
    return names


def find_cycle(root: Path, package: str) -> list[str] | None:
    """One import cycle among the package's modules (as a path a -> ... -> a), or None."""
    modules = module_names(root, package)
    graph = {
        name: sorted(referenced(ast.parse(path.read_text())) & modules.keys() - {name})
        for name, path in modules.items()
    }
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        for target in graph[name]:
            cycle = visit(target, [*path, name])
            if cycle:
                return cycle
        done.add(name)
        return None

    for name in graph:
        cycle = visit(name, [])
        if cycle:
            return cycle
    return None


def test_meshmsg_sim_has_no_import_cycle() -> None:
    assert find_cycle(SIM, "meshmsg.sim") is None


def test_the_checker_sees_a_cycle_hidden_in_an_importlib_string(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "host.py").write_text(
        "import importlib\ndef load():\n    return importlib.import_module('pkg.corehost')\n"
    )
    (tmp_path / "corehost.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.host import load\n"
    )
    assert find_cycle(tmp_path, "pkg") == ["pkg.corehost", "pkg.host", "pkg.corehost"]
