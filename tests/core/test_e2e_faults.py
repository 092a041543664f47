"""Faults around key exchanges at the Node level (issue 11): unparseable shares, wrong clocks."""

from __future__ import annotations

from meshmsg.core.events import LinkClosed
from meshmsg.core.records import KeyExchange
from tests.core.node_tools import AttackMesh, events_of, own_envelopes


def paired_mesh(names: list[str]) -> AttackMesh:
    """alice and bob paired at a real meeting (not offline), plus the other named nodes."""
    mesh = AttackMesh(names)
    mesh.befriend("alice", "bob")
    mesh.connect("alice", "bob")
    mesh.disconnect("alice", "bob")
    return mesh


# --------------------------------------------------------------- unparseable key exchange


def test_an_unparseable_key_share_does_not_stop_sealing_for_the_contact() -> None:
    """Issue 11, finding 5: a share of version 2 (a newer client) closed the link with
    ``contact.exchanging`` still set, so nothing was sealed to that contact until restart."""
    mesh = paired_mesh(["alice", "bob"])
    newer_bob = mesh.inject("alice", mesh.identities["bob"])  # alice starts an exchange
    contact = mesh.nodes["alice"].contacts.get(mesh.peer_id("bob"))
    assert contact is not None
    assert contact.exchanging
    newer_bob.send([KeyExchange(share=bytes([2]) + bytes(89))])
    assert not newer_bob.up  # a strict parser still closes the link ...
    assert events_of(mesh, "alice", LinkClosed)
    assert not contact.exchanging  # ... but the exchange ended with it
    mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "still sealed", now=mesh.now)
    mesh.run()
    assert len(own_envelopes(mesh.nodes["alice"])) == 1
