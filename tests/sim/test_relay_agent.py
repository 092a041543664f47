"""The ONE-rule relay agent (meshmsg/sim/agents/relay.py): binary Spray-and-Wait's copy split.

The split decides how deep the tree of copy holders grows, and so the hop count of the first
copy to reach the destination (docs/simulator.md, "Hop counts").
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from meshmsg.core.effects import Transmit
from meshmsg.errors import ConfigError
from meshmsg.sim.agents import RelayFactory, RelayNode, ident
from meshmsg.sim.engine import Engine, EngineConfig
from meshmsg.sim.host import NodeSetup, SimulatedNode
from meshmsg.sim.links import LinkParams
from meshmsg.sim.report import Recorder
from meshmsg.sim.traces import ContactEvent, MessageEvent
from tests.sim.helpers import RATE, down, up

SNW = {"policy": "spray-and-wait", "copies": 6, "binary": True}


def _setup(address: int) -> NodeSetup:
    return NodeSetup(
        address=address, name=f"n{address}", buffer_bytes=10**6, ttl_s=3600.0, one_mode=True,
        routing=SNW,
    )  # fmt: skip


def _frames(node: RelayNode) -> list[bytes]:
    out = []
    while (effect := node.next_effect()) is not None:
        if isinstance(effect, Transmit):
            out.append(effect.data)
    return out


def _spray_once(node: RelayNode, link: int, peer: int) -> int:
    """Open ``link`` to ``peer`` (who holds nothing), let it accept the offer, ack the envelope;
    return the copies the envelope handed over."""
    node.link_opened(link, initiator=True, now=1.0)
    hello = json.dumps({"from": peer, "have": []}).encode()
    node.receive_data(link, b"H" + hello, now=1.0)
    offers = [f.rpartition(b" ")[0] for f in _frames(node) if f[:1] == b"O"]
    assert offers == [b"OM1 4"]  # the id and the size the receiver makes room for (+ priority)
    node.receive_data(link, b"YM1", now=1.0)
    (envelope,) = (f for f in _frames(node) if f[:1] == b"M")
    header = json.loads(envelope[1 : envelope.index(b"}") + 1])
    node.receive_data(link, b"KM1", now=1.1)
    node.link_lost(link, now=1.2)
    return int(header["copies"])


def test_binary_spraying_hands_floor_and_keeps_ceil() -> None:
    node = RelayNode(_setup(0), 0.0, "spray-and-wait", 6)
    node.send_message(ident(9), "M1:x", now=0.0)
    handed, kept = [], []
    for link, peer in ((1, 1), (2, 2), (3, 3)):
        handed.append(_spray_once(node, link, peer))
        kept.append(node.buffer["M1"]["copies"])
    # 6 -> hand 3 keep 3 -> hand 1 keep 2 -> hand 1 keep 1 (the ONE 1.6.0 release: 3/3, 2/1, -)
    assert (handed, kept) == ([3, 1, 1], [3, 2, 1])


def test_a_relay_with_three_copies_keeps_two_so_the_chain_stays_short() -> None:
    # 0 creates M1 for 9 (6 copies). 0 meets 1 (1 gets 3); 1 meets 2 and 2 meets 3, then 3 meets
    # the destination; 1 meets it last. With the floor split 2 gets a single copy and cannot
    # spray to 3, so the first delivery is 1's, 2 hops. Handing ceil(n/2) would give 2 two
    # copies, 3 one, and a 4-hop delivery at t=40.
    contacts = [
        up(10.0, 0, 1), down(11.0, 0, 1), up(20.0, 1, 2), down(21.0, 1, 2),
        up(30.0, 2, 3), down(31.0, 2, 3), up(40.0, 3, 9), down(41.0, 3, 9),
        up(50.0, 1, 9), down(51.0, 1, 9),
    ]  # fmt: skip
    created = [MessageEvent(time=1.0, message_id="M1", source=0, destination=9, size=1000)]
    config = EngineConfig(
        mode="one", duration_s=60.0, seed=7, interfaces={"bt": LinkParams(rate_bps=RATE)},
        default_interface="bt",
    )  # fmt: skip
    recorder = Recorder(sample_interval_s=1.0)
    engine = Engine(config, [_setup(i) for i in range(10)], RelayFactory(), [contacts, created],
                    recorder)  # fmt: skip
    recorder.on_violation(engine.violation)
    assert engine.run().violations == ()
    record = recorder.records["M1"]
    assert [(f, t) for _, f, t in record.hops] == [(0, 1), (1, 2), (1, 9)]
    assert record.hopcount == 2
    assert record.delivered_at is not None
    assert 50.0 <= record.delivered_at < 51.0


def test_relay_factory_refuses_a_policy_it_has_no_rules_for() -> None:
    setup = dataclasses.replace(_setup(0), routing={"policy": "prophet"})
    with pytest.raises(ConfigError, match=r"routing.policy = 'prophet' needs the core"):
        RelayFactory().prepare([setup], seed=1, pre_pair=False)
    RelayFactory().prepare([_setup(0)], seed=1, pre_pair=False)  # spray-and-wait is modelled


class _Keeping(RelayFactory):
    """RelayFactory that keeps the nodes it builds, to look at their buffers after a run."""

    def __init__(self) -> None:
        self.nodes: dict[int, RelayNode] = {}

    def build(self, setup: NodeSetup, **kwargs: Any) -> SimulatedNode:
        node = super().build(setup, **kwargs)
        assert isinstance(node, RelayNode)
        self.nodes[setup.address] = node
        return node


def _run(contacts: list[ContactEvent], created: list[MessageEvent], factory: RelayFactory,
         duration: float = 60.0) -> Recorder:  # fmt: skip
    config = EngineConfig(
        mode="one", duration_s=duration, seed=7, interfaces={"bt": LinkParams(rate_bps=RATE)},
        default_interface="bt",
    )  # fmt: skip
    recorder = Recorder(sample_interval_s=1.0)
    engine = Engine(config, [_setup(i) for i in range(10)], factory, [contacts, created], recorder)
    recorder.on_violation(engine.violation)
    assert engine.run().violations == ()
    return recorder


def test_a_sender_sprays_one_transfer_at_a_time_so_copies_are_conserved() -> None:
    # 0 meets 1 and 2 at once with M1 (6 copies, 500 kB: 2 s a transfer). The ONE sends to one
    # peer (hand 3, keep 3), then to the other (hand 1, keep 2): 6 copies in all. Offering on
    # both links at once let both accept while 0 still had 6, each got 3: 8 copies.
    contacts = [up(10.0, 0, 1), up(10.0, 0, 2), down(30.0, 0, 1), down(30.0, 0, 2)]
    created = [MessageEvent(time=1.0, message_id="M1", source=0, destination=9, size=500_000)]
    factory = _Keeping()
    _run(contacts, created, factory)
    copies = {a: int(str(n.buffer["M1"]["copies"])) for a, n in factory.nodes.items()
              if "M1" in n.buffer}  # fmt: skip
    assert sorted(copies.values()) == [1, 2, 3]
    assert copies[0] == 2


def test_the_sender_picks_its_next_transfer_before_a_peer_that_waited() -> None:
    # 0 sends M0 and M1 (300 kB, 1.2 s each) to 1 from t=10; 2 comes up to 1 at 10.5 with M2
    # and is refused (TRY_LATER_BUSY) while 1 receives. When the first transfer ends, the ONE's
    # 0 finalises it and starts its second in the same update, before 2 can try again: 1's
    # second arrival is from 0. Letting 2's transfer wait for 1's slot made it 2's.
    contacts = [up(10.0, 0, 1), up(10.5, 1, 2), down(40.0, 0, 1), down(40.0, 1, 2)]
    created = [
        MessageEvent(time=1.0, message_id="M0", source=0, destination=9, size=300_000),
        MessageEvent(time=1.0, message_id="M1", source=0, destination=9, size=300_000),
        MessageEvent(time=1.0, message_id="M2", source=2, destination=9, size=300_000),
    ]
    recorder = _run(contacts, created, _Keeping())
    into_1 = sorted((t, f) for r in recorder.records.values() for t, f, to in r.hops if to == 1)
    assert [f for _, f in into_1] == [0, 0, 2]
    assert 11.2 <= into_1[1][0] < 12.7


@pytest.mark.parametrize("seed", range(1, 9))
def test_mail_for_a_peer_goes_before_spraying_to_it_on_both_sides(seed: int) -> None:
    # 0 holds M0 for 9 (copies to spray), 1 holds M1 for 0; their contact fits one 300 kB
    # transfer (1.2 s). Whichever of the two the ONE updates first, M1 goes: 0 has no mail for
    # 1, so it asks 1 for mail for 0 (requestDeliverableMessages) before it sprays. Both
    # offering at once and settling by a coin toss sprayed M0 instead for some seeds.
    contacts = [up(10.0, 0, 1), down(11.5, 0, 1)]
    created = [
        MessageEvent(time=1.0, message_id="M0", source=0, destination=9, size=300_000),
        MessageEvent(time=1.0, message_id="M1", source=1, destination=0, size=300_000),
    ]
    config = EngineConfig(
        mode="one", duration_s=20.0, seed=seed, interfaces={"bt": LinkParams(rate_bps=RATE)},
        default_interface="bt",
    )  # fmt: skip
    recorder = Recorder(sample_interval_s=1.0)
    engine = Engine(config, [_setup(i) for i in range(10)], RelayFactory(), [contacts, created],
                    recorder)  # fmt: skip
    assert engine.run().violations == ()
    assert recorder.records["M1"].delivered_at is not None
    assert recorder.records["M0"].hops == []


def test_a_peer_that_dropped_a_message_is_offered_it_again() -> None:
    # The ONE remembers nothing of what a peer holds: it offers and the peer refuses what it
    # has. A peer that drops a message for room says so (D), so the hello's list does not keep
    # the message from being offered again while the contact lasts.
    node = RelayNode(_setup(0), 0.0, "spray-and-wait", 6)
    node.send_message(ident(9), "M1:x", now=0.0)
    node.link_opened(1, initiator=True, now=1.0)
    node.receive_data(1, b"H" + json.dumps({"from": 1, "have": ["M1"]}).encode(), now=1.0)
    assert not [f for f in _frames(node) if f[:1] == b"O"]
    node.receive_data(1, b"DM1", now=2.0)
    assert [f[:3] for f in _frames(node) if f[:1] == b"O"] == [b"OM1"]
