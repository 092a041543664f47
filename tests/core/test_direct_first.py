"""Own mail whose recipient is linked goes to the recipient only (core/exchange/directfirst.py).

A link stalled before its sync holds nothing back: tests/core/test_heal_race.py routes mail
around one. Without the rule, Spray-and-Wait sprayed half the copy budget onto every other
linked peer although the recipient was on the next link: three or four relay transfers and
commits per message on a LAN (the five-node load test ran at 30 messages/s, 51 with it).
"""

from __future__ import annotations

import dataclasses

from meshmsg.config import NodeConfig
from meshmsg.core.events import EnvelopeAccepted, MessageReceived
from tests.helpers import Mesh


def carried(mesh: Mesh, name: str) -> list[bytes]:
    """Envelopes ``name`` took custody of as a relay."""
    return [e.envelope_id for e in mesh.of_type(name, EnvelopeAccepted) if not e.for_us]


def linked_three(config: NodeConfig | None = None) -> Mesh:
    mesh = Mesh(["alice", "bob", "carol", "dave"], config=config)
    mesh.befriend("alice", "bob", pair=True)
    for peer in ("bob", "carol", "dave"):
        mesh.connect("alice", peer)
    mesh.run()
    return mesh


def test_no_relay_gets_a_copy_while_the_recipient_is_linked() -> None:
    mesh = linked_three()
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "for bob only", now=mesh.now)
    mesh.run()
    assert [r.message_id for r in mesh.of_type("bob", MessageReceived)] == [mid]
    assert carried(mesh, "carol") == []
    assert carried(mesh, "dave") == []


def test_without_direct_first_the_relays_get_copies() -> None:
    """The control: the same meeting with the rule off sprays as the ONE does."""
    config = NodeConfig()
    config = dataclasses.replace(
        config, routing=dataclasses.replace(config.routing, direct_first=False)
    )
    mesh = linked_three(config)
    mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "sprayed", now=mesh.now)
    mesh.run()
    assert carried(mesh, "carol") or carried(mesh, "dave")


def test_when_the_recipients_link_ends_first_the_relays_get_it() -> None:
    """The offer to bob is lost with his link: the copy then goes out on the other links."""
    mesh = linked_three()
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "bob left", now=mesh.now)
    mesh.disconnect("alice", "bob")  # before the offer reached him
    mesh.run()
    assert mesh.of_type("bob", MessageReceived) == []
    relayed = carried(mesh, "carol") + carried(mesh, "dave")
    assert len(relayed) >= 1
    mesh.connect("carol", "bob")
    mesh.connect("dave", "bob")
    mesh.run()
    assert [r.message_id for r in mesh.of_type("bob", MessageReceived)] == [mid]
