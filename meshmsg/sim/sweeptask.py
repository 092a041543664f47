"""One run of a sweep, as a value that crosses into a worker, and the worker's entry point.

Shared by the local sweep (:mod:`meshmsg.sim.sweep`) and the Dask one
(:mod:`meshmsg.sim.dasksweep`), which therefore need not import each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from meshmsg.sim.api import run_scenario

RUN_JSON = "run.json"
"""Written last in a run folder: a folder holding it is finished (resuming skips it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunTask:
    """One run of a sweep (picklable: it crosses into a spawned worker)."""

    scenario: str
    overrides: tuple[str, ...]
    out_dir: str
    agent: str | None
    point: str
    seed: int


def run_task(task: RunTask) -> dict[str, float]:
    """Run one task unless its folder is finished; return its stats (worker entry point)."""
    done = Path(task.out_dir) / RUN_JSON
    if not done.is_file():
        run_scenario(Path(task.scenario), Path(task.out_dir), overrides=task.overrides,
                     agent=task.agent)  # fmt: skip
    data = json.loads(done.read_text(encoding="utf-8"))
    stats: dict[str, float] = data["stats"]
    return stats
