"""The simulator at scale, for ``meshmsg bench``: 10,000 real Nodes for an hour of random waypoint.

``simulations/bench/rwp10000.toml`` (issue #16 item 6: at most 8 GiB). A full run takes tens of
minutes on two cores, so the row runs only when ``MESHMSG_BENCH_LONG=1``; ``--quick`` runs the
same scenario shrunk to :data:`QUICK_NODES` nodes for :data:`QUICK_DURATION_S` in a smaller
world, to exercise the code path. The row has a process of its own (``fresh_process``), so the
peak RSS is this run's.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

from meshmsg.bench.runner import PROJECT_ROOT, Blocked, Context, Figures, Status

SCENARIO: Final = PROJECT_ROOT / "simulations" / "bench" / "rwp10000.toml"
LONG_ENV: Final = "MESHMSG_BENCH_LONG"
QUICK_NODES: Final = 100
QUICK_DURATION_S: Final = 120.0
QUICK_WORLD_M: Final = 300.0  # a square small enough that 100 walkers meet in two minutes


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def scale_blocked(ctx: Context) -> Blocked | None:
    if not SCENARIO.is_file():
        return Blocked(Status.SKIPPED, f"needs a source checkout ({SCENARIO.name})")
    if not ctx.quick and os.environ.get(LONG_ENV) != "1":
        return Blocked(
            Status.SKIPPED,
            f"long row (tens of minutes on 2 cores): set {LONG_ENV}=1, or run "
            "simulations/bench/bench.py rwp10000",
        )
    return None


def rwp10000(ctx: Context) -> Figures:
    """Peak RSS, wall and CPU seconds of the 10,000-node hour with the real core."""
    from meshmsg.sim.api import run_scenario

    overrides = ["output.plots=false", "output.contact_log=false"]
    if ctx.quick:
        overrides += [
            f"nodes.count={QUICK_NODES}",
            f"run.duration_s={QUICK_DURATION_S}",
            f"mobility.world_m=[{QUICK_WORLD_M}, {QUICK_WORLD_M}]",
        ]
    cpu_before, started = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="meshmsg-bench-scale-") as out:
        result = run_scenario(SCENARIO, Path(out), overrides=overrides)
    return {
        "peak_rss_bytes": float(peak_rss_bytes()),
        "wall_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu_before,
        "engine_sim_s_per_wall_s": result.sim_s_per_wall_s,
        "nodes": float(QUICK_NODES if ctx.quick else 10_000),
        "contacts": float(result.extras["contacts"]),
        "delivered": float(result.stats.delivered),
    }
