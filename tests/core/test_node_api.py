"""The Node's application commands and driver inputs at their edges (errors, blocks, restore)."""

from __future__ import annotations

import pytest

from meshmsg.config import MessageLimits, NodeConfig
from meshmsg.core import codec
from meshmsg.core.effects import Dial, RecordKind, StoredRecord
from meshmsg.core.events import (
    LinkClosed,
    MessageReceived,
    MessageStatus,
    MessageStatusChanged,
)
from meshmsg.core.identity import ContactCard, Identity
from meshmsg.core.node import Node
from meshmsg.errors import CloseReason, InvalidMessage, LocalProtocolError, StorageError
from meshmsg.sim.rng import SeededRng
from tests.helpers import T0, Mesh


def statuses(mesh: Mesh, name: str, message_id: bytes) -> list[MessageStatus]:
    return [e.status for e in mesh.of_type(name, MessageStatusChanged)
            if e.message_id == message_id]  # fmt: skip


def test_read_receipt_moves_the_timeline_to_read() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    mesh.connect("alice", "bob")
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "read me", now=mesh.now)
    mesh.run()
    mesh.nodes["bob"].mark_read(mesh.peer_id("alice"), [mid], now=mesh.now)
    mesh.advance(5)
    assert statuses(mesh, "alice", mid)[-2:] == [MessageStatus.DELIVERED, MessageStatus.READ]


def test_unreachable_mail_expires_visibly() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "late", now=mesh.now, ttl_s=60)
    mesh.advance(61)
    assert statuses(mesh, "alice", mid)[-1] is MessageStatus.EXPIRED
    assert (RecordKind.ENVELOPE, mid) not in mesh.persisted["alice"]


def test_blocking_a_contact_closes_its_link_and_refuses_the_next() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob")
    mesh.connect("alice", "bob")
    mesh.nodes["alice"].set_blocked(mesh.peer_id("bob"), True, now=mesh.now)
    mesh.run()
    assert any(e.reason is CloseReason.PEER_BLOCKED for e in mesh.of_type("alice", LinkClosed))
    assert not mesh.linked("alice", "bob")
    mesh.connect("alice", "bob")
    assert not mesh.linked("alice", "bob")
    mesh.nodes["alice"].set_blocked(mesh.peer_id("bob"), False, now=mesh.now)
    mesh.connect("alice", "bob")
    assert mesh.linked("alice", "bob")


def test_verify_and_remove_are_persisted() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob", verified=False, pair=True)
    alice = mesh.nodes["alice"]
    bob_id = mesh.peer_id("bob")
    contact = alice.contacts.get(bob_id)
    assert contact is not None
    assert not contact.verified
    alice.set_verified(bob_id, True, now=mesh.now)
    mesh.run()
    mesh.stop("alice")
    restored = mesh.start("alice").contacts.get(bob_id)
    assert restored is not None
    assert restored.verified
    assert restored.paired
    mesh.nodes["alice"].remove_contact(bob_id, now=mesh.now)
    mesh.run()
    assert (RecordKind.CONTACT, bob_id) not in mesh.persisted["alice"]
    assert (RecordKind.CHANNEL, bob_id) not in mesh.persisted["alice"]
    with pytest.raises(LocalProtocolError, match="unknown contact"):
        mesh.nodes["alice"].send_message(bob_id, "gone", now=mesh.now)


def test_command_errors() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    alice = mesh.nodes["alice"]
    with pytest.raises(LocalProtocolError, match="our own"):
        alice.add_contact(ContactCard(public=alice.identity.public), verified=True, now=mesh.now)
    with pytest.raises(InvalidMessage, match="body over"):
        alice.send_message(mesh.peer_id("bob"), "x" * 40_000, now=mesh.now)
    with pytest.raises(LocalProtocolError, match="ttl"):
        alice.send_message(mesh.peer_id("bob"), "x", now=mesh.now, ttl_s=0)
    with pytest.raises(LocalProtocolError, match="unknown link"):
        alice.receive_data(99, b"x", now=mesh.now)
    alice.link_opened(7, initiator=True, now=mesh.now)
    with pytest.raises(LocalProtocolError, match="already open"):
        alice.link_opened(7, initiator=True, now=mesh.now)
    alice.link_lost(7, now=mesh.now)
    alice.link_lost(7, now=mesh.now)  # idempotent


def test_peer_discovered_dials_once_per_address() -> None:
    identity = Identity.generate(SeededRng(3, "id"))
    node = Node(identity=identity, config=NodeConfig(), rng=SeededRng(3, "n"), now=T0)
    node.peer_discovered("10.0.0.2:7400", now=T0)
    assert node.next_effect() == Dial(address="10.0.0.2:7400")
    node.link_opened(1, initiator=True, now=T0, address="10.0.0.2:7400")
    while node.next_effect() is not None:
        pass
    node.peer_discovered("10.0.0.2:7400", now=T0)
    assert node.next_effect() is None


def test_damaged_persisted_records_fail_loudly() -> None:
    identity = Identity.generate(SeededRng(4, "id"))
    for kind in (RecordKind.CONTACT, RecordKind.ENVELOPE, RecordKind.MESSAGE, RecordKind.TOMBSTONE):
        bad = [StoredRecord(kind=kind, key=b"k" * 16, value=b"\xff\x00")]
        with pytest.raises(StorageError):
            Node(identity=identity, config=NodeConfig(), rng=SeededRng(4, "n"), now=T0,
                 records=bad)  # fmt: skip
    wrong_type = codec.router_record(None, {})
    swapped = StoredRecord(kind=RecordKind.CONTACT, key=b"k" * 16, value=wrong_type.value)
    with pytest.raises(StorageError, match="another type"):
        Node(identity=identity, config=NodeConfig(), rng=SeededRng(4, "n"), now=T0,
             records=[swapped])  # fmt: skip


def test_prophet_state_survives_a_restart() -> None:
    from meshmsg.config import RoutingConfig

    mesh = Mesh(["a", "b", "c"], config=NodeConfig(routing=RoutingConfig(policy="prophet")))
    mesh.connect("a", "b")
    mesh.connect("b", "c")
    before = mesh.nodes["b"].router.table(mesh.now)
    assert len(before) == 2
    mesh.stop("b")
    assert mesh.start("b").router.table(mesh.now) == before


def test_small_tag_window_still_delivers_a_backlog_in_order() -> None:
    config = NodeConfig(message=MessageLimits(tag_window=4))
    mesh = Mesh(["alice", "bob"], config=config)
    mesh.befriend("alice", "bob", pair=True)
    sent = [mesh.nodes["alice"].send_message(mesh.peer_id("bob"), f"m{i}", now=mesh.now)
            for i in range(12)]  # fmt: skip
    mesh.connect("alice", "bob")
    mesh.advance(10)
    got = [e.message_id for e in mesh.of_type("bob", MessageReceived)]
    assert sorted(got) == sorted(sent)
    assert len(got) == len(set(got))
