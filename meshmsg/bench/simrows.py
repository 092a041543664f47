"""The simulator rows of ``meshmsg bench``: the real core on the reference replay, next to the
ONE on the same replay (:mod:`meshmsg.bench.theone`, when installed) or the engine alone, and the
10,000-node memory figure (:mod:`meshmsg.bench.simscale`)."""

from __future__ import annotations

import hashlib
import importlib.util
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from meshmsg.bench.runner import REFERENCE_SCENARIO, SIM_WINDOW_S, Blocked, Context, Figures, Status
from meshmsg.bench.units import plain, seconds, speedup, whole_seconds

# ------------------------------------------------------------------------------- simulator

SIM_QUICK_NODES: Final = 20


def _quick_scenario(policy: str) -> Any:
    """The ``--quick`` stand-in for the reference trace: 20 random-waypoint walkers for half an
    hour, same link model, buffers, TTL and routing settings (pre-pairing 190 pairs is fast)."""
    from meshmsg.sim.scenario import scenario_from_dict

    table = {
        "run": {"name": "bench-quick", "seed": 1, "duration_s": SIM_WINDOW_S, "mode": "one"},
        "nodes": {"count": SIM_QUICK_NODES, "buffer_bytes": 5_000_000, "ttl_s": 18_000.0,
                  "pre_pair": True},
        "routing": {"policy": policy, "copies": 6, "binary": True,
                    "drop_after_delivery": False},
        "links": {"default_interface": "bt", "interfaces": {"bt": {"rate_bps": 250_000.0}}},
        "contacts": {"source": "rwp"},
        "mobility": {"world_m": [400.0, 300.0], "speed_mps": [0.5, 1.5],
                     "pause_s": [0.0, 120.0], "range_m": 10.0, "interface": "bt",
                     "scan_interval_s": 1.0},
        "traffic": {"source": "generator", "interval_s": [5.0, 15.0],
                    "size_bytes": [1_000, 2_000]},
        "output": {"plots": False, "contact_log": False},
    }  # fmt: skip
    return scenario_from_dict(table, base_dir=Path.cwd())


class NullNode:
    """A node that does nothing: the engine replays the trace with no protocol attached."""

    def peer_discovered(self, address: str, *, now: float) -> None:
        return None  # the simulator has no discovery: links come from the contact trace

    def link_opened(
        self, link: int, *, initiator: bool, now: float, address: str | None = None
    ) -> None:
        return None

    def receive_data(self, link: int, data: bytes, *, now: float) -> None:
        return None

    def link_lost(self, link: int, *, now: float) -> None:
        return None

    def handle_timer(self, *, now: float) -> None:
        return None

    def storage_committed(self, token: int, *, now: float) -> None:
        return None

    def send_message(
        self, peer_id: bytes, body: str, *, now: float, ttl_s: float | None = None
    ) -> bytes:
        return hashlib.blake2b(body.encode(), digest_size=16).digest()

    def next_effect(self) -> None:
        return None

    def next_event(self) -> None:
        return None

    def next_deadline(self) -> None:
        return None


class NullFactory:
    """Builds :class:`NullNode` (implements ``meshmsg.sim.host.NodeFactory``)."""

    def prepare(self, setups: Sequence[Any], *, seed: int, pre_pair: bool) -> None:
        return None

    def identity(self, address: int) -> bytes:
        return address.to_bytes(16, "big")

    def build(self, setup: Any, *, rng: Any, now: float, records: Mapping[Any, bytes]) -> NullNode:
        return NullNode()


def sim_blocked(ctx: Context) -> Blocked | None:
    if not ctx.quick:
        if not REFERENCE_SCENARIO.is_file():
            return Blocked(Status.SKIPPED, f"needs a source checkout ({REFERENCE_SCENARIO.name})")
        if not (ctx.sim_reference / "small_contacts.txt.gz").is_file():
            return Blocked(Status.SKIPPED, f"reference trace not found in {ctx.sim_reference}")
    if importlib.util.find_spec("meshmsg.sim.corehost") is None:
        return Blocked(
            Status.PENDING,
            "the real Node is not wired into the simulator yet (meshmsg/sim/corehost.py); "
            "the limit is measured",
        )
    return None


def _sim_run(ctx: Context, policy: str, agent: Any) -> tuple[float, float]:
    """Simulated s per wall s of the engine (``run_scenario``'s own timing, which leaves out
    building the nodes), and the seconds spent outside the engine (node setup, output)."""
    from meshmsg.sim.api import run_scenario

    with tempfile.TemporaryDirectory(prefix="meshmsg-bench-sim-") as out:
        started = time.perf_counter()
        if ctx.quick:
            result = run_scenario(_quick_scenario(policy), Path(out), agent=agent)
        else:
            trace = ctx.sim_reference
            overrides = [
                f'routing.policy="{policy}"',
                "output.plots=false",
                "output.contact_log=false",
                f"run.duration_s={ctx.sim_duration_s}",
                f'contacts.trace="{trace / "small_contacts.txt.gz"}"',
                f'traffic.trace="{trace / "small_messages.txt"}"',
            ]
            result = run_scenario(REFERENCE_SCENARIO, Path(out), overrides=overrides, agent=agent)
        elapsed = time.perf_counter() - started
    return result.sim_s_per_wall_s, elapsed - result.wall_s


def _the_one(ctx: Context, policy: str) -> Figures:
    """The ONE replaying the same trace (full runs, when ``MESHMSG_THE_ONE`` names a build)."""
    from meshmsg.bench.theone import run_the_one, the_one_dir

    one_dir = the_one_dir()
    if ctx.quick or one_dir is None:
        return {}
    with tempfile.TemporaryDirectory(prefix="meshmsg-bench-one-") as work:
        one = run_the_one(one_dir, ctx.sim_reference / "small_contacts.txt.gz",
                          ctx.sim_reference / "small_messages.txt", policy,
                          ctx.sim_duration_s, Path(work))  # fmt: skip
    return {
        "one_sim_s_per_wall_s": ctx.sim_duration_s / one["loop_s"],
        "one_process_s": one["process_s"],
        "one_cpu_s": one["cpu_s"],
    }


def _sim(ctx: Context, policy: str) -> Figures:
    """Our engine with the real core, next to the ONE on the same replay when it is installed
    (``MESHMSG_THE_ONE``), else next to the engine alone; ``vs_the_one`` is our speed over the
    ONE's (1 = as fast), present only when the ONE ran."""
    bare, _ = _sim_run(ctx, policy, NullFactory())
    figures = {
        "bare_sim_s_per_wall_s": bare,
        "sim_window_s": SIM_WINDOW_S if ctx.quick else ctx.sim_duration_s,
        "nodes": float(SIM_QUICK_NODES if ctx.quick else 126),
        **_the_one(ctx, policy),
    }
    figures["limit_sim_s_per_wall_s"] = figures.get("one_sim_s_per_wall_s", bare)
    if sim_blocked(ctx) is None:
        started = time.process_time()
        figures["sim_s_per_wall_s"], figures["setup_s"] = _sim_run(ctx, policy, "core")
        figures["cpu_s"] = time.process_time() - started
        if "one_sim_s_per_wall_s" in figures:
            figures["vs_the_one"] = figures["sim_s_per_wall_s"] / figures["one_sim_s_per_wall_s"]
    return figures


def sim_spray_and_wait(ctx: Context) -> Figures:
    return _sim(ctx, "spray-and-wait")


def sim_epidemic(ctx: Context) -> Figures:
    return _sim(ctx, "epidemic")


SIM_LIMIT_TITLE: Final = (
    "the ONE replaying the same trace, its loop (MESHMSG_THE_ONE); else our engine alone, "
    "no protocol"
)
SIM_DETAILS: Final = (
    ("sim_window_s", "simulated:", whole_seconds),
    ("nodes", "nodes:", plain),
    ("setup_s", "node setup (pre-pairing):", seconds),
    ("cpu_s", "CPU:", seconds),
    ("one_process_s", "the ONE, whole process:", seconds),
    ("one_cpu_s", "its CPU:", seconds),
    ("bare_sim_s_per_wall_s", "engine alone:", speedup),
)
