"""Our trace of the ONE's default scenario (simulations/one-default/): what the README promises.

The figures the ONE reported on it are in simulations/one-default/README.md; this checks that the
files are the run described there and that the scenario replaying them loads.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from meshmsg.sim.scenario import load_scenario
from meshmsg.sim.traces import read_contacts, read_messages

FOLDER = Path(__file__).resolve().parents[2] / "simulations" / "one-default"


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
