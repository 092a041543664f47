"""Deterministic simulation testing: the soak's property over many seeds, replayable by seed.

Each seed builds one scenario (:func:`dst_scenario`): six real core Nodes on an office LAN (all
present, all linked, every pair a verified contact), messenger mode with lost TCP segments
(``loss_prob``) and corrupted frames (``corrupt_prob``), messages between random pairs, and a
fault schedule drawn from the seed: crashes with restarts from committed records, and partitions
into random groups. Faults stop at ``FAULTS_END_S``; traffic stops a little earlier; then the
network is whole for ``TAIL_S``. The property, the soak's (``tests/soak/``):

* every message the core accepted (``send_message`` returned: committed at once in the
  simulator) is delivered to its recipient's application, once the faults stop, within the tail;
* none is delivered twice (the report makes a second ``MessageReceived`` a violation, and the
  run is strict, so it raises);
* no invariant violation at all.

A failing seed replays exactly: same scenario, seed and code give the same event-log hash
(``test_a_seed_replays_exactly``), so ``pytest tests/sim/test_dst_faults.py -k "seed_<n>"``,
or ``meshmsg sim run`` on the ``scenario.toml`` written to the failing run's folder, shows the
same run, event for event. CI runs ``CI_SEEDS`` seeds; ``-m slow`` runs ``SLOW_SEEDS`` more.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from meshmsg.sim.api import RunResult, run_scenario
from meshmsg.sim.scenario import Scenario, scenario_from_dict

NODES = 6
TRAFFIC_END_S = 500.0
FAULTS_END_S = 600.0
TAIL_S = 300.0  # whole network, no faults: time for redials, syncs and receipts
CI_SEEDS = range(20)
SLOW_SEEDS = range(20, 120)


def fault_plan(seed: int) -> dict[str, Any]:
    """Crashes (each restarted) and partitions, drawn from the seed, all before FAULTS_END_S."""
    rng = random.Random(f"dst-faults:{seed}")
    crashes: list[dict[str, Any]] = []
    down: list[tuple[int, float, float]] = []  # a node down cannot crash again
    for _ in range(rng.randint(2, 6)):
        address, at = rng.randrange(NODES), round(rng.uniform(10.0, FAULTS_END_S - 60.0), 3)
        restart = round(rng.uniform(1.0, 50.0), 3)
        if any(a == address and at <= e + 1 and s <= at + restart + 1 for a, s, e in down):
            continue
        down.append((address, at, at + restart))
        crashes.append({"address": address, "at_s": at, "restart_after_s": restart})
    partitions = []
    t = rng.uniform(0.0, 100.0)
    while t < FAULTS_END_S - 30.0:
        end = min(t + rng.uniform(10.0, 120.0), FAULTS_END_S)
        nodes = list(range(NODES))
        rng.shuffle(nodes)
        cut = rng.randint(1, NODES - 1)
        partitions.append({"start_s": round(t, 3), "end_s": round(end, 3),
                           "groups": [sorted(nodes[:cut]), sorted(nodes[cut:])]})  # fmt: skip
        t = end + rng.uniform(5.0, 100.0)
    return {"crashes": crashes, "partitions": partitions}


def dst_scenario(seed: int, base: Path) -> Scenario:
    table: dict[str, object] = {
        "run": {"name": f"dst-{seed}", "seed": seed, "duration_s": FAULTS_END_S + TAIL_S,
                "mode": "messenger", "agent": "core", "strict": True},
        "nodes": {"count": NODES, "ttl_s": 86_400.0, "pre_pair": "all"},
        "routing": {"policy": "spray-and-wait", "copies": 4, "binary": True},
        "links": {"default_interface": "lan", "interfaces": {"lan": {
            "rate_bps": 12_500_000.0, "latency_s": 0.002, "loss_prob": 0.02,
            "retransmit_s": 0.2, "corrupt_prob": 0.002}}},
        "contacts": {"source": "presence"},
        "presence": {"always": f"0-{NODES - 1}", "interface": "lan"},
        "traffic": {"source": "generator", "interval_s": [2.0, 8.0], "size_bytes": [100, 3000],
                    "start_s": 1.0, "end_s": TRAFFIC_END_S},
        "faults": fault_plan(seed),
        "output": {"plots": False, "contact_log": False},
    }  # fmt: skip
    return scenario_from_dict(table, base_dir=base)


def messages(result: RunResult) -> list[dict[str, Any]]:
    path = result.out_dir / "messages.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def check_property(result: RunResult, seed: int) -> tuple[int, int]:
    """Assert the property; return (messages accepted, crashes)."""
    replay = f"replay: pytest {__file__}::test_no_loss_no_duplicates_after_faults[{seed}]"
    assert result.violations == (), f"seed {seed}: {result.violations[:3]} ({replay})"
    rows = messages(result)
    accepted = [m for m in rows if m["not_created"] is None]
    undelivered = [m["id"] for m in accepted if m["delivered_at"] is None]
    assert not undelivered, (
        f"seed {seed}: {len(undelivered)} of {len(accepted)} accepted messages never delivered, "
        f"e.g. {undelivered[:5]} ({replay})"
    )
    late = [m["id"] for m in accepted if m["delivered_at"] > FAULTS_END_S + TAIL_S]
    assert not late
    return len(accepted), result.extras.get("crashes", 0)


def run_seed(seed: int, tmp_path: Path) -> RunResult:
    return run_scenario(dst_scenario(seed, tmp_path), tmp_path / f"seed-{seed}")


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_no_loss_no_duplicates_after_faults(seed: int, tmp_path: Path) -> None:
    result = run_seed(seed, tmp_path)
    accepted, crashes = check_property(result, seed)
    # The run must have exercised something: traffic, and the faults it was given.
    assert accepted >= 40
    assert crashes == len(fault_plan(seed)["crashes"])


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_SEEDS)
def test_no_loss_no_duplicates_after_faults_many_seeds(seed: int, tmp_path: Path) -> None:
    check_property(run_seed(seed, tmp_path), seed)


def test_a_seed_replays_exactly(tmp_path: Path) -> None:
    """Same seed: the same event-log hash (every input, effect, event and frame digest); another
    seed: another run. So a failing seed is a reproduction, not a flake."""
    first = run_scenario(dst_scenario(3, tmp_path), tmp_path / "a")
    second = run_scenario(dst_scenario(3, tmp_path), tmp_path / "b")
    other = run_scenario(dst_scenario(4, tmp_path), tmp_path / "c")
    assert first.event_log_hash == second.event_log_hash
    assert first.stats == second.stats
    assert messages(first) == messages(second)
    assert other.event_log_hash != first.event_log_hash
