"""The architecture rule, enforced: core is sans-IO, sim never touches net or trio."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "meshmsg"

CORE_FORBIDDEN = {
    "trio", "zeroconf", "socket", "asyncio", "threading", "time", "random", "sqlite3",
    "os", "io", "pathlib", "shutil", "tempfile", "subprocess", "selectors", "multiprocessing",
    "secrets", "datetime", "meshmsg.net", "meshmsg.sim", "meshmsg.sysrng", "hypercorn",
    "starlette", "click", "rich",
}  # fmt: skip
# Builtins that reach the file system, the clock or the process.
CORE_FORBIDDEN_CALLS = {"open", "input", "print", "exec", "eval", "__import__", "breakpoint"}
SIM_FORBIDDEN = {"trio", "meshmsg.net", "zeroconf", "socket", "asyncio", "sqlite3", "hypercorn"}


def imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def violations(path: Path, forbidden: set[str]) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = [
        m for m in imported_modules(tree)
        if any(m == f or m.startswith(f + ".") for f in forbidden)
    ]  # fmt: skip
    return sorted(bad)


def python_files(sub: str) -> list[Path]:
    files = sorted((PACKAGE / sub).rglob("*.py"))
    assert files, f"no python files under meshmsg/{sub}"
    return files


@pytest.mark.parametrize("path", python_files("core"), ids=lambda p: p.name)
def test_core_is_sans_io(path: Path) -> None:
    assert violations(path, CORE_FORBIDDEN) == []


@pytest.mark.parametrize("path", python_files("core"), ids=lambda p: p.name)
def test_core_calls_no_io_builtins(path: Path) -> None:
    tree = ast.parse(path.read_text())
    calls = {
        n.func.id for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }  # fmt: skip
    assert calls & CORE_FORBIDDEN_CALLS == set()


@pytest.mark.parametrize("path", python_files("sim"), ids=lambda p: p.name)
def test_sim_never_imports_net_or_trio(path: Path) -> None:
    assert violations(path, SIM_FORBIDDEN) == []


def test_the_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom trio import sleep\nimport os.path\n")
    assert violations(bad, CORE_FORBIDDEN) == ["os.path", "time", "trio"]
