"""Simulator benchmarks: simulated seconds per wall second, wall time and peak memory.

    .venv/bin/python simulations/bench/bench.py            # all
    .venv/bin/python simulations/bench/bench.py reference  # 12 h reference replay only

Run from the project root (the test agents live in tests/). Until the core Node is wired in
(meshmsg/sim/corehost.py), the runs use test agents, so they measure the engine, the link model
and the contact generation, not the protocol.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from meshmsg.sim.api import run_scenario  # noqa: E402 - after the path is set
from meshmsg.sim.mobility import random_waypoint_contacts  # noqa: E402
from meshmsg.sim.scenario import load_scenario  # noqa: E402

REFERENCE = ROOT / "simulations" / "reference" / "one-reference.toml"
RWP = ROOT / "simulations" / "bench" / "rwp2000.toml"


def reference(policy: str, agent: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as out:
        r = run_scenario(REFERENCE, Path(out), overrides=[
            f'run.agent="{agent}"', f'routing.policy="{policy}"', "output.plots=false",
        ])  # fmt: skip
    return {
        "run": f"reference 12 h, {policy}, {agent}",
        "delivered": r.stats.delivered,
        "delivery_prob": round(r.stats.delivery_prob, 4),
        "wall_s": round(r.wall_s, 2),
        "sim_s_per_wall_s": round(r.sim_s_per_wall_s),
    }


def rwp_contacts_only() -> dict[str, object]:
    s = load_scenario(RWP)
    start = time.perf_counter()
    n = sum(1 for e in random_waypoint_contacts(s.mobility, count=s.nodes.count,
                                                duration_s=s.run.duration_s, seed=s.run.seed)
            if e.up)  # fmt: skip
    return {"run": "2,000-node RWP hour, contacts only", "contacts": n,
            "wall_s": round(time.perf_counter() - start, 2)}  # fmt: skip


def rwp_run() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as out:
        r = run_scenario(RWP, Path(out), agent="tests.sim.fakes:DirectFactory")
    return {
        "run": "2,000-node RWP hour, ONE mode, direct-delivery agent",
        "contacts": r.extras["contacts"],
        "wall_s": round(r.wall_s, 2),
        "sim_s_per_wall_s": round(r.sim_s_per_wall_s),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    which = sys.argv[1:] or ["reference", "relay", "rwp"]
    results = []
    if "reference" in which:
        results.append(reference("direct", "tests.sim.fakes:DirectFactory"))
    if "relay" in which:
        results.append(reference("spray-and-wait", "tests.sim.fakes:RelayFactory"))
        results.append(reference("epidemic", "tests.sim.fakes:RelayFactory"))
    if "rwp" in which:
        results.append(rwp_contacts_only())
        results.append(rwp_run())
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
