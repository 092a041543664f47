"""Node end to end, in memory and virtual time: pairing, delivery, relays, receipts, restarts."""

from __future__ import annotations

from meshmsg.config import NodeConfig, RoutingConfig
from meshmsg.core.effects import RecordKind
from meshmsg.core.events import (
    ContactHealed,
    ContactPaired,
    EnvelopeAccepted,
    MessageReceived,
    MessageStatus,
    MessageStatusChanged,
    PeerConnected,
)
from tests.helpers import Mesh


def statuses(mesh: Mesh, name: str, message_id: bytes) -> list[MessageStatus]:
    return [e.status for e in mesh.of_type(name, MessageStatusChanged)
            if e.message_id == message_id]  # fmt: skip


def test_first_meeting_pairs_and_delivers_queued_mail() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob")
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "hello bob", now=mesh.now)
    mesh.connect("alice", "bob")
    assert len(mesh.of_type("alice", ContactPaired)) == 1
    assert len(mesh.of_type("bob", ContactPaired)) == 1
    received = mesh.of_type("bob", MessageReceived)
    assert [(r.body, r.message_id, r.peer_id) for r in received] == [
        ("hello bob", mid, mesh.peer_id("alice"))
    ]
    mesh.advance(5)  # receipts are batched for receipt_delay_s
    assert statuses(mesh, "alice", mid)[-1] is MessageStatus.DELIVERED


def test_each_later_meeting_heals() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob")
    mesh.connect("alice", "bob")
    mesh.disconnect("alice", "bob")
    mesh.connect("alice", "bob")
    assert len(mesh.of_type("alice", ContactHealed)) == 1
    mid = mesh.nodes["bob"].send_message(mesh.peer_id("alice"), "after heal", now=mesh.now)
    mesh.run()
    assert [r.message_id for r in mesh.of_type("alice", MessageReceived)] == [mid]


def test_relay_carries_mail_for_an_offline_recipient_and_the_receipt_back() -> None:
    mesh = Mesh(["alice", "relay", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    mesh.stop("bob")
    body = "meet at the north gate at 14:00"
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), body, now=mesh.now)
    mesh.connect("alice", "relay")
    assert MessageStatus.RELAYED in statuses(mesh, "alice", mid)
    mesh.disconnect("alice", "relay")
    mesh.advance(60)
    mesh.start("bob")
    mesh.connect("relay", "bob")
    assert [r.body for r in mesh.of_type("bob", MessageReceived)] == [body]
    mesh.advance(5)  # the delivered receipt is sealed and handed to the relay
    mesh.disconnect("relay", "bob")
    mesh.connect("alice", "relay")
    assert statuses(mesh, "alice", mid)[-1] is MessageStatus.DELIVERED
    # The relay only ever saw opaque envelopes: no body, and nothing naming the recipient or
    # the sender's identity (it knows only which neighbour handed it the copy).
    hidden = [body.encode(), mesh.peer_id("bob"),
              mesh.identities["alice"].public.identity_key,
              mesh.identities["bob"].public.identity_key]  # fmt: skip
    relay_records = mesh.persisted["relay"]
    assert {kind for kind, _ in relay_records} <= {RecordKind.ENVELOPE, RecordKind.TOMBSTONE}
    assert mesh.of_type("relay", EnvelopeAccepted)
    for value in relay_records.values():
        assert not any(secret in value for secret in hidden)
    for event in mesh.events["relay"]:
        assert body not in repr(event)


def test_strangers_connect_but_pair_nothing() -> None:
    mesh = Mesh(["alice", "carol"])
    mesh.connect("alice", "carol")
    connected = mesh.of_type("alice", PeerConnected)
    assert len(connected) == 1
    assert not connected[0].is_contact
    assert mesh.of_type("alice", ContactPaired) == []


def test_restart_keeps_contacts_keys_and_history() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob")
    mesh.connect("alice", "bob")
    first = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "one", now=mesh.now)
    mesh.run()
    mesh.stop("alice")
    mesh.stop("bob")
    mesh.start("alice")
    mesh.start("bob")
    second = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "two", now=mesh.now)
    mesh.connect("alice", "bob")
    got = [r.message_id for r in mesh.of_type("bob", MessageReceived)]
    assert got == [first, second]
    history = mesh.nodes["alice"].conversations.with_peer(mesh.peer_id("bob"))
    assert [m.body for m in history] == ["one", "two"]


def test_epidemic_and_direct_policies_deliver_over_one_hop() -> None:
    for policy in ("epidemic", "direct", "prophet"):
        config = NodeConfig(routing=RoutingConfig(policy=policy))
        mesh = Mesh(["a", "b"], config=config)
        mesh.befriend("a", "b", pair=True)
        mesh.nodes["a"].send_message(mesh.peer_id("b"), policy, now=mesh.now)
        mesh.connect("a", "b")
        assert [r.body for r in mesh.of_type("b", MessageReceived)] == [policy]


def test_receipts_owed_survive_a_crash_before_their_batch_is_sealed() -> None:
    """Receipts wait receipt_delay_s to be batched; a crash in that window must not lose them,
    or the sender, which dropped its copy at custody, shows RELAYED forever."""
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob")
    mesh.connect("alice", "bob")
    alice, bob = mesh.peer_id("alice"), mesh.peer_id("bob")
    mid = mesh.nodes["alice"].send_message(bob, "just before the crash", now=mesh.now)
    mesh.run()
    assert [r.message_id for r in mesh.of_type("bob", MessageReceived)] == [mid]
    assert statuses(mesh, "alice", mid) == [MessageStatus.RELAYED]  # custody, no receipt yet
    mesh.stop("bob")  # within receipt_delay_s: the delivered receipt was only owed
    mesh.start("bob")
    mesh.connect("alice", "bob")
    mesh.advance(5)
    assert statuses(mesh, "alice", mid)[-1] is MessageStatus.DELIVERED
    mesh.nodes["bob"].mark_read(alice, [mid], now=mesh.now)
    mesh.run()  # committed, not yet sealed
    mesh.stop("bob")  # the read receipt too
    mesh.start("bob")
    mesh.connect("alice", "bob")
    mesh.advance(5)
    assert statuses(mesh, "alice", mid)[-1] is MessageStatus.READ
    assert not any(kind is RecordKind.META for kind, _ in mesh.persisted["bob"])  # all sent
