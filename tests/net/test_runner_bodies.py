"""A relay under the trio runner keeps carried bodies on disk and reads them back (#13).

Real Nodes over loopback TCP; the relay runs with ``StoreConfig.bodies_on_disk`` on a
``MemoryStorage``: the runner's commit queue reads the ENVELOPE record back (LoadEnvelope) when
the relay hands the copy to its recipient.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
import trio

from meshmsg.config import NodeConfig
from meshmsg.core.effects import RecordKind
from meshmsg.core.events import DropReason, EnvelopeAccepted, EnvelopeDropped, MessageReceived
from meshmsg.core.identity import ContactCard, Identity
from meshmsg.core.node import Node
from meshmsg.core.offlinepair import pair_offline
from meshmsg.net.persistence import MemoryStorage
from meshmsg.net.runner import open_node
from meshmsg.net.tcp import format_address
from meshmsg.sysrng import SystemRng
from tests.net.test_runner_nodes import LOCALHOST, first

CONFIG = NodeConfig()
ON_DISK = CONFIG.replace(store=dataclasses.replace(CONFIG.store, bodies_on_disk=True))


def _nodes() -> tuple[Node, Node, Node]:
    rng, now = SystemRng(), time.time()
    ids = [Identity.generate(rng) for _ in range(3)]
    alice, bob = (Node(identity=i, config=CONFIG, rng=rng, now=now) for i in ids[:2])
    relay = Node(identity=ids[2], config=ON_DISK, rng=rng, now=now)
    alice.add_contact(ContactCard(public=ids[1].public), verified=True, now=now, name="bob")
    bob.add_contact(ContactCard(public=ids[0].public), verified=True, now=now, name="alice")
    pair_offline(alice, bob, now=now)
    for node in (alice, bob):
        while node.next_effect() is not None:  # nothing durable is needed: fresh runners
            pass
    return alice, bob, relay


async def _carry(alice: Node, relay_port: int, relay_events: object, bob_id: bytes) -> None:
    async with open_node(alice, config=CONFIG.net, host=LOCALHOST) as ra:
        await ra.call(lambda n, now: n.send_message(bob_id, "carried on disk", now=now))
        await ra.peer_discovered(format_address(LOCALHOST, relay_port))
        accepted = await first(relay_events, EnvelopeAccepted)  # type: ignore[arg-type]
        assert isinstance(accepted, EnvelopeAccepted)
        assert not accepted.for_us


async def test_a_relay_hands_over_a_body_it_read_back_from_its_storage() -> None:
    alice, bob, relay = _nodes()
    storage = MemoryStorage()
    async with open_node(relay, config=ON_DISK.net, host=LOCALHOST, storage=storage) as rr:
        with rr.subscribe() as relay_events:
            await _carry(alice, rr.port, relay_events, bob.identity.peer_id)
            [item] = list(rr.node.store.items())
            assert item.envelope is None  # committed: on disk only
            assert (RecordKind.ENVELOPE, item.envelope_id) in storage.records
            async with open_node(bob, config=CONFIG.net, host=LOCALHOST) as rb:
                with rb.subscribe() as bob_events:
                    await rb.peer_discovered(format_address(LOCALHOST, rr.port))
                    received = await first(bob_events, MessageReceived)
            assert isinstance(received, MessageReceived)
            assert received.body == "carried on disk"  # opened and authenticated by bob


async def test_a_body_missing_from_storage_drops_that_item_and_closes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice, bob, relay = _nodes()
    storage = MemoryStorage()
    async with open_node(relay, config=ON_DISK.net, host=LOCALHOST, storage=storage) as rr:
        with rr.subscribe() as relay_events:
            await _carry(alice, rr.port, relay_events, bob.identity.peer_id)
            [item] = list(rr.node.store.items())
            del storage.records[(RecordKind.ENVELOPE, item.envelope_id)]  # the row is gone
            async with open_node(bob, config=CONFIG.net, host=LOCALHOST) as rb:
                await rb.peer_discovered(format_address(LOCALHOST, rr.port))
                dropped = await first(relay_events, EnvelopeDropped)
                assert isinstance(dropped, EnvelopeDropped)
                assert (dropped.envelope_id, dropped.reason) == (
                    item.envelope_id,
                    DropReason.UNREADABLE,
                )
                assert rr.statistics().links == 1  # the link to bob stays up
            assert item.envelope_id not in rr.node.store
            assert f"envelope {item.envelope_id.hex()}: its record is gone" in caplog.text
            with trio.fail_after(5):
                await rr.wait_durable()
