"""Simulator benchmarks: simulated seconds per wall second, wall time and peak memory.

    .venv/bin/python simulations/bench/bench.py            # all
    .venv/bin/python simulations/bench/bench.py reference  # 12 h reference replay only
    .venv/bin/python simulations/bench/bench.py rwp        # the 2,000-node hour (core, agent)
    .venv/bin/python simulations/bench/bench.py rwp10000   # 10,000 real Nodes for an hour (slow)
    .venv/bin/python simulations/bench/bench.py core       # 12 h reference, the real core
    .venv/bin/python simulations/bench/bench.py core epidemic prophet   # chosen policies

``core`` runs the production Node on the reference trace (real Noise, real B+ crypto) and prints
each run next to a limit measured in the same process: the bare Noise XX handshake (both sides,
through the core's adapter). ``handshake_floor`` is the simulated s per wall s a replay would
reach if each contact cost one handshake and nothing else; ``of_floor`` is the run's share of it.

Run from the project root. The reference replays use the ONE-rule reference agents
(``meshmsg.sim.agents``), so they measure the engine, the link model and the contact
generation, not the protocol. The 2,000-node hour runs twice: with the real protocol core
(``rwp2000.toml`` as shipped) and with the direct-delivery reference agent. Each of those runs
in a fresh process, so its peak RSS (``ru_maxrss``) is its own.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from meshmsg.bench.measure import noise_handshake_rate  # noqa: E402 - after the path is set
from meshmsg.sim.api import run_scenario  # noqa: E402
from meshmsg.sim.mobility import random_waypoint_contacts  # noqa: E402
from meshmsg.sim.scenario import load_scenario  # noqa: E402

REFERENCE = ROOT / "simulations" / "reference" / "one-reference.toml"
RWP = ROOT / "simulations" / "bench" / "rwp2000.toml"
RWP10K = ROOT / "simulations" / "bench" / "rwp10000.toml"


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


def handshake_s(rounds: int = 5) -> float:
    """Median seconds of one Noise XX handshake, both sides, static keys prepared as a Node's."""
    return statistics.median(1.0 / noise_handshake_rate(prepared=True) for _ in range(rounds))


def core_reference(policy: str) -> dict[str, object]:
    """The real core on the 12 h reference trace, next to the handshake floor."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        r = run_scenario(REFERENCE, Path(out), overrides=[
            f'routing.policy="{policy}"', "output.plots=false",
        ])  # fmt: skip
    total = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    contacts = r.extras["contacts"]
    floor = r.sim_s_per_wall_s * r.wall_s / (contacts * handshake_s())
    return {
        "run": f"reference 12 h, {policy}, core",
        "delivered": r.stats.delivered,
        "delivery_prob": round(r.stats.delivery_prob, 4),
        "contacts": contacts,
        "wall_s": round(r.wall_s, 1),
        "total_s": round(total, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "sim_s_per_wall_s": round(r.sim_s_per_wall_s),
        "handshake_floor": round(floor),
        "of_floor": round(r.sim_s_per_wall_s / floor, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
    }


def rwp_contacts_only() -> dict[str, object]:
    s = load_scenario(RWP)
    start = time.perf_counter()
    n = sum(1 for e in random_waypoint_contacts(s.mobility, count=s.nodes.count,
                                                duration_s=s.run.duration_s, seed=s.run.seed)
            if e.up)  # fmt: skip
    return {"run": "2,000-node RWP hour, contacts only", "contacts": n,
            "wall_s": round(time.perf_counter() - start, 2)}  # fmt: skip


def rwp_run(agent: str | None = None, scenario: Path = RWP) -> dict[str, object]:
    """The 2,000-node hour: the scenario's own agent (the real core) or a reference agent.

    ``wall_s`` is the engine's run (``run_scenario``'s own timing); ``total_s`` adds building
    the nodes (identities, pre-pairing) and writing the outputs; ``cpu_s`` is the process's
    CPU time for all of it, steadier than wall time on a shared machine.
    """
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        r = run_scenario(scenario, Path(out), agent=agent)
    total = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "run": f"{scenario.stem} hour, ONE mode, {agent or 'core'}",
        "contacts": r.extras["contacts"],
        "created": r.stats.created,
        "creation_failed": r.extras["creation_failed"],
        "delivered": r.stats.delivered,
        "relayed": r.stats.relayed,
        "wall_s": round(r.wall_s, 1),
        "total_s": round(total, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "sim_s_per_wall_s": round(r.sim_s_per_wall_s),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
    }


def rwp_core() -> dict[str, object]:
    return rwp_run()


def rwp_agent() -> dict[str, object]:
    return rwp_run("meshmsg.sim.agents:DirectFactory")


def rwp10000_core() -> dict[str, object]:
    return rwp_run(scenario=RWP10K)


def isolated(task: Callable[[], dict[str, object]]) -> dict[str, object]:
    """Run ``task`` in a fresh process: its peak RSS is then its own."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(task)


def main() -> None:
    which = sys.argv[1:] or ["reference", "relay", "rwp", "core"]
    results = []
    if "reference" in which:
        results.append(reference("direct", "meshmsg.sim.agents:DirectFactory"))
    if "relay" in which:
        results.append(reference("spray-and-wait", "meshmsg.sim.agents:RelayFactory"))
        results.append(reference("epidemic", "meshmsg.sim.agents:RelayFactory"))
    if "rwp" in which:
        results.append(rwp_contacts_only())
        results.append(isolated(rwp_core))
        results.append(isolated(rwp_agent))
    if "rwp10000" in which:
        results.append(isolated(rwp10000_core))
    if "core" in which:
        policies = [w for w in which if w not in ("core", "reference", "relay", "rwp", "rwp10000")]
        results.extend(
            isolated(functools.partial(core_reference, policy))
            for policy in policies or ["spray-and-wait", "epidemic"]
        )
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
