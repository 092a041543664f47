"""Optional native build of the sans-IO core with mypyc (docs/performance.md, "mypyc").

The project is configured in ``pyproject.toml``; this file only adds the compiled core when asked:

    pip install 'setuptools>=77'                                  # reads pyproject's license field
    MESHMSG_MYPYC=1 python .ci/mypyc_setup.py build_ext --inplace  # from the project root;
                                                                   # needs mypy and a C compiler

It lives in .ci/ (the project's top level holds only pyproject.toml, README.md and the
project's folders) and runs from the project root, where setuptools finds pyproject.toml.

Without ``MESHMSG_MYPYC=1`` nothing is compiled and the pure-Python core is used (CI, wheels).
The compiled modules are the same sources, so results are identical (the simulator's event-log
hash included); deleting the ``meshmsg/core/**/*.so`` files goes back to pure Python.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

# Modules that stay interpreted, because mypyc (2.4) cannot compile them as written: a generic base
# class under a slots dataclass (wirespec.py), dataclass fields built by a helper (records.py), a
# weak reference to a native class (reconcile.py) and a runtime-checkable Protocol (driver.py).
INTERPRETED = {"wirespec.py", "records.py", "reconcile.py", "driver.py"}


def compiled_modules() -> list[str]:
    core = Path(__file__).resolve().parents[1] / "meshmsg" / "core"
    return sorted(
        str(p.relative_to(core.parent.parent))
        for p in core.rglob("*.py")
        if p.name not in INTERPRETED
    )


ext_modules = []
if os.environ.get("MESHMSG_MYPYC") == "1":
    from mypyc.build import mypycify

    ext_modules = mypycify(compiled_modules(), opt_level=os.environ.get("MYPYC_OPT_LEVEL", "3"))

setup(ext_modules=ext_modules)
