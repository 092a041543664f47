"""The real core in the simulator: a message crosses a chain of contacts, survives a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshmsg.sim.api import (
    external_sources,
    node_setups,
    pre_pairing,
    restarts_possible,
    run_scenario,
)
from meshmsg.sim.engine import Engine, EngineConfig
from meshmsg.sim.factories import load_factory
from meshmsg.sim.links import LinkParams
from meshmsg.sim.report import Recorder
from meshmsg.sim.scenario import Scenario, scenario_from_dict

CONTACTS = """\
10.0 CONN 0 1 up
20.0 CONN 0 1 down
30.0 CONN 1 2 up
40.0 CONN 1 2 down
50.0 CONN 2 3 up
60.0 CONN 2 3 down
"""


def chain(tmp_path: Path, mode: str, policy: str, **extra: object) -> Scenario:
    (tmp_path / "c.txt").write_text(CONTACTS)
    (tmp_path / "m.txt").write_text("1.0 C M1 n0 n3 500\n")
    table: dict[str, object] = {
        "run": {"name": "chain", "duration_s": 120.0, "mode": mode, "agent": "core"},
        "nodes": {"count": 4, "ttl_s": 3600.0},
        "routing": {"policy": policy},
        "contacts": {"source": "trace", "trace": "c.txt"},
        "traffic": {"source": "trace", "trace": "m.txt"},
        "output": {"plots": False},
        **extra,
    }
    return scenario_from_dict(table, base_dir=tmp_path)


@pytest.mark.parametrize(("mode", "policy"), [("messenger", "epidemic"), ("one", "spray-and-wait")])
def test_a_message_crosses_three_contacts(tmp_path: Path, mode: str, policy: str) -> None:
    result = run_scenario(chain(tmp_path, mode, policy), tmp_path / "out")
    s = result.stats
    assert (s.created, s.delivered, s.hopcount_avg) == (1, 1, 3.0)
    assert 50.0 <= s.latency_avg + 1.0 <= 60.0
    assert s.relayed >= 3
    assert result.violations == ()


def test_core_runs_are_deterministic(tmp_path: Path) -> None:
    first = run_scenario(chain(tmp_path, "messenger", "epidemic"), tmp_path / "a")
    second = run_scenario(chain(tmp_path, "messenger", "epidemic"), tmp_path / "b")
    assert first.event_log_hash == second.event_log_hash


def test_a_relay_that_crashes_keeps_committed_mail(tmp_path: Path) -> None:
    faults = {"faults": {"crashes": [{"address": 1, "at_s": 25.0, "restart_after_s": 3.0}]}}
    result = run_scenario(chain(tmp_path, "messenger", "epidemic", **faults), tmp_path / "out")
    assert result.extras["crashes"] == 1
    assert result.stats.delivered == 1


def test_without_restarts_the_engine_keeps_no_records_and_the_run_is_the_same(
    tmp_path: Path,
) -> None:
    s = chain(tmp_path, "one", "epidemic")
    assert not restarts_possible(s)
    runs = {}
    for keep in (True, False):
        config = EngineConfig(
            mode="one", duration_s=s.run.duration_s, seed=s.run.seed,
            interfaces={"default": LinkParams(rate_bps=250_000.0)},
        )  # fmt: skip
        engine = Engine(
            config, node_setups(s), load_factory("core"), external_sources(s),
            Recorder(sample_interval_s=60.0), pre_pair=pre_pairing(s), keep_records=keep,
        )  # fmt: skip
        runs[keep] = engine.run().event_log_hash
        held = sum(len(slot.records) for slot in engine._slots)  # white box: what is retained
        assert (held > 0) is keep
    assert runs[True] == runs[False]


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ({}, False),
        ({"crashes": [{"address": 1, "at_s": 5.0}]}, False),
        ({"crashes": [{"address": 1, "at_s": 5.0, "restart_after_s": 1.0}]}, True),
        ({"crash_rate_per_h": 0.5}, True),
    ],
)
def test_records_are_kept_when_a_node_can_restart(
    tmp_path: Path, faults: dict[str, object], expected: bool
) -> None:
    assert restarts_possible(chain(tmp_path, "one", "direct", faults=faults)) is expected


def test_spray_and_wait_keeps_its_copy_budget_over_simultaneous_links(tmp_path: Path) -> None:
    """Eight peers link to the source at once: it must still hand out only L - 1 copies.

    Before copies in flight were reserved, each link's sync saw all six copies and the source
    gave three to every peer (in an office LAN, Spray-and-Wait became Epidemic).
    """
    ups = "".join(f"10.0 CONN 0 {peer} up\n" for peer in range(1, 9))
    (tmp_path / "c.txt").write_text(ups)
    (tmp_path / "m.txt").write_text("1.0 C M1 n0 n9 500\n")  # n9 never shows up
    table: dict[str, object] = {
        "run": {"name": "budget", "duration_s": 60.0, "mode": "messenger", "agent": "core"},
        "nodes": {"count": 10, "ttl_s": 3600.0},
        "routing": {"policy": "spray-and-wait", "copies": 6, "binary": True},
        "contacts": {"source": "trace", "trace": "c.txt"},
        "traffic": {"source": "trace", "trace": "m.txt"},
        "output": {"plots": False},
    }
    result = run_scenario(scenario_from_dict(table, base_dir=tmp_path), tmp_path / "out")
    assert result.violations == ()
    assert result.stats.delivered == 0
    # 6 copies: the source keeps at least one, so at most 5 peers received one each.
    assert 1 <= result.stats.relayed <= 5
