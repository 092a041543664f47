"""Our trace of the ONE's default scenario (simulations/one-default/): what the README promises.

The figures the ONE reported on it are in simulations/one-default/README.md; this checks that the
files are the run described there, that the scenario replaying them loads, and that the core and
the reference agents replay it with the figures in docs/simulator.md (all but a 2 h window slow).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from meshmsg.sim.api import run_scenario
from meshmsg.sim.report import MessageStats
from meshmsg.sim.scenario import load_scenario
from meshmsg.sim.traces import read_contacts, read_messages

FOLDER = Path(__file__).resolve().parents[2] / "simulations" / "one-default"
RECORDED_2H = (242, 67, 31, 36, 3, 31)  # created, started, relayed, aborted, dropped, delivered
RECORDED_2H_LATENCY = 2114.47


def test_the_default_scenario_trace_has_the_ones_contacts_and_messages() -> None:
    contacts = list(read_contacts(FOLDER / "data" / "contacts.txt.gz"))
    ups = [c for c in contacts if c.up]
    assert len(ups) == 30_877  # the ONE's default run (research note §4.1)
    assert {c.interface for c in contacts} == {"btInterface", "highspeedInterface"}
    assert {(c.a, c.b) for c in contacts if c.interface == "highspeedInterface"} == {(120, 121)}
    # every link that goes down went up before, on the same interface
    open_links: Counter[tuple[int, int, str | None]] = Counter()
    for c in contacts:
        key = (c.a, c.b, c.interface)
        open_links[key] += 1 if c.up else -1
        assert open_links[key] in (0, 1)
    messages = list(read_messages(FOLDER / "data" / "messages.txt.gz"))
    assert len(messages) == 1_463
    assert all(500_000 <= m.size <= 1_000_000 for m in messages)
    assert {m.source for m in messages} | {m.destination for m in messages} <= set(range(126))
    assert messages[0].message_id == "M1"
    assert messages[-1].time <= 43_200.0


def test_the_default_scenario_loads_with_the_ones_settings() -> None:
    s = load_scenario(FOLDER / "one-default.toml")
    assert (s.run.mode, s.run.duration_s) == ("one", 43_200.0)
    assert (s.nodes.count, s.nodes.ttl_s, s.nodes.buffer_bytes) == (126, 18_000.0, 5_000_000)
    assert s.links.interfaces["highspeedInterface"].rate_bps == 10_000_000.0
    assert s.links.interfaces["btInterface"].rate_bps == 250_000.0


def replay(tmp_path: Path, agent: str, policy: str, hours: float = 12.0) -> MessageStats:
    overrides = [
        f'run.agent="{agent}"', f'routing.policy="{policy}"', f"run.duration_s={hours * 3600}",
        "output.plots=false", "output.contact_log=false",
    ]  # fmt: skip
    return run_scenario(FOLDER / "one-default.toml", tmp_path, overrides=overrides).stats


def counts(s: MessageStats) -> tuple[int, ...]:
    return (s.created, s.started, s.relayed, s.aborted, s.dropped, s.delivered)


def test_the_core_replays_the_default_scenarios_first_hours_as_recorded(tmp_path: Path) -> None:
    # Direct with the real core on the first 2 h of the trace (messages of 500 kB-1 MB with a
    # declared size, 5 MB buffers): the figures recorded on 2026-12-07 (docs/simulator.md).
    s = replay(tmp_path, "core", "direct", hours=2.0)
    assert counts(s) == RECORDED_2H
    assert s.latency_avg == pytest.approx(RECORDED_2H_LATENCY, abs=0.05)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("policy", "the_one", "recorded"),
    [
        ("direct", 0.3233, 0.3240),
        ("spray-and-wait", 0.4436, 0.4463),
        ("epidemic", 0.2734, 0.2761),
    ],
)
def test_the_core_on_the_default_scenario_is_within_002_of_the_one(
    tmp_path: Path, policy: str, the_one: float, recorded: float | None
) -> None:
    # recorded: what this replay gave on 2026-12-07 (None: not yet measured with this code)
    s = replay(tmp_path, "core", policy)
    assert s.created == 1_463
    if recorded is not None:
        assert s.delivery_prob == pytest.approx(recorded, abs=1e-4)
    assert s.delivery_prob == pytest.approx(the_one, abs=0.02)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("agent", "policy", "the_one", "recorded"),
    [
        ("meshmsg.sim.agents:DirectFactory", "direct", 0.3233, 0.3233),
        ("meshmsg.sim.agents:RelayFactory", "spray-and-wait", 0.4436, 0.4532),
        ("meshmsg.sim.agents:RelayFactory", "epidemic", 0.2734, 0.2748),
    ],
)
def test_the_reference_agents_on_the_default_scenario_are_within_002_of_the_one(
    tmp_path: Path, agent: str, policy: str, the_one: float, recorded: float
) -> None:
    # the_one: its files replay of this trace (Epidemic's made 2026-12-07 with the ONE at
    # c973bfb, README.md); recorded: the agent's replay on 2026-12-07 (docs/simulator.md)
    s = replay(tmp_path, agent, policy)
    assert s.delivery_prob == pytest.approx(recorded, abs=1e-4)
    assert s.delivery_prob == pytest.approx(the_one, abs=0.02)
