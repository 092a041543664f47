"""Large messages in ONE mode (issue #16 item 1): the ONE's whole-message semantics.

A message over the core's text body declares its size (meshmsg/sim/onesize.py): it is one
transfer of that many bytes at the link rate, cut whole when the contact ends, and occupies that
many bytes of a buffer that drops the oldest message not being sent. The real core and the
ONE-rule agents must both do so; docs/simulator.md, "Large messages in ONE mode".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meshmsg.config import StoreConfig
from meshmsg.core.store import RelayStore, StoreItem, Tier
from meshmsg.errors import LocalProtocolError
from meshmsg.sim.api import run_scenario
from meshmsg.sim.corehost import CoreFactory
from meshmsg.sim.host import NodeSetup
from meshmsg.sim.rng import SeededRng
from meshmsg.sim.scenario import Scenario, scenario_from_dict

AGENTS = ["core", "meshmsg.sim.agents:DirectFactory", "meshmsg.sim.agents:RelayFactory"]
SIZE = 600_000  # 2.4 s at 250 kB/s


def scenario(tmp_path: Path, agent: str, contacts: str, messages: str, buffer: int) -> Scenario:
    (tmp_path / "c.txt").write_text(contacts)
    (tmp_path / "m.txt").write_text(messages)
    table: dict[str, object] = {
        "run": {"name": "large", "duration_s": 100.0, "mode": "one", "agent": agent},
        "nodes": {"count": 2, "ttl_s": 3600.0, "buffer_bytes": buffer},
        "routing": {"policy": "direct", "drop_after_delivery": False},
        "links": {"interfaces": {"bt": {"rate_bps": 250_000.0}}, "default_interface": "bt"},
        "contacts": {"source": "trace", "trace": "c.txt"},
        "traffic": {"source": "trace", "trace": "m.txt"},
        "output": {"plots": False},
    }
    return scenario_from_dict(table, base_dir=tmp_path)


@pytest.mark.parametrize("agent", AGENTS)
def test_a_large_message_is_one_transfer_of_its_size_cut_whole(tmp_path: Path, agent: str) -> None:
    # 2 s of contact is too short for 2.4 s of transfer: aborted, nothing kept; the next one
    # carries all of it again.
    contacts = "10.0 CONN 0 1 up\n12.0 CONN 0 1 down\n20.0 CONN 0 1 up\n30.0 CONN 0 1 down\n"
    run = run_scenario(
        scenario(tmp_path, agent, contacts, f"1.0 C M1 n0 n1 {SIZE}\n", 5_000_000), tmp_path / "o"
    )
    s = run.stats
    assert (s.created, s.delivered, s.aborted, s.relayed) == (1, 1, 1, 1)
    assert 20.0 + 2.4 <= 1.0 + s.latency_avg <= 20.0 + 2.4 + 0.2  # link time, plus a step
    assert run.failures == ()


@pytest.mark.parametrize("agent", AGENTS)
def test_a_full_buffer_drops_its_oldest_message(tmp_path: Path, agent: str) -> None:
    # Three 600 kB messages in a 1.5 MB buffer: the third drops the first.
    messages = "".join(f"{t}.0 C M{t} n0 n1 {SIZE}\n" for t in (1, 2, 3))
    contacts = "10.0 CONN 0 1 up\n60.0 CONN 0 1 down\n"
    s = run_scenario(scenario(tmp_path, agent, contacts, messages, 1_500_000), tmp_path / "o").stats
    assert (s.created, s.delivered, s.dropped) == (3, 2, 1)


def store_item(n: int, *, one_size: int) -> StoreItem:
    return StoreItem(
        envelope_id=bytes([n]) * 16, envelope=b"e" * 4096, tag=bytes([n]) * 16,
        expiry_at=1e9, copies=1, hops=0, tier=Tier.VERIFIED, source=None, received_at=float(n),
        one_size=one_size,
    )  # fmt: skip


def test_the_one_mode_store_counts_declared_sizes_and_spares_what_is_being_sent() -> None:
    store = RelayStore(StoreConfig(max_store_bytes=2_000_000), one_mode=True)
    for n in (1, 2, 3):
        assert store.admit(store_item(n, one_size=600_000), now=0.0).evicted == ()
    assert store.total_bytes == 1_800_000
    store.get(bytes([1]) * 16).sending = 1  # type: ignore[union-attr]
    # room for 900 kB (200 kB free): not the oldest (being sent) but the next two, in order
    assert store.make_room(900_000) == [bytes([2]) * 16, bytes([3]) * 16]
    assert store.total_bytes == 600_000
    assert store.make_room(3_000_000) == []  # larger than the buffer: nothing to gain


def test_a_declared_size_needs_a_one_mode_node() -> None:
    setups = [
        NodeSetup(address=a, name=f"n{a}", buffer_bytes=10**7, ttl_s=3600.0, one_mode=False)
        for a in (0, 1)
    ]
    factory = CoreFactory()
    factory.prepare(setups, seed=1, pre_pair=True)
    node = factory.build(setups[0], rng=SeededRng(1, "node:0"), now=0.0, records={})
    with pytest.raises(LocalProtocolError, match="ONE-mode"):
        node.send_message(factory.identity(1), "M1:", now=0.0, one_size=SIZE)
