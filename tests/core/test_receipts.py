"""Receipts at the node, off the happy path: switched off, owed to a contact removed meanwhile,
read marks for mail that is not this peer's, and a channel out of counters (they stay owed,
durably, and leave at the next period)."""

from __future__ import annotations

import dataclasses

from meshmsg.config import MessageLimits, NodeConfig
from meshmsg.core import codec
from meshmsg.core.effects import RecordKind
from meshmsg.core.events import MessageReceived, MessageStatus, MessageStatusChanged
from tests.helpers import Mesh


def _owed(mesh: Mesh, name: str) -> list[bytes]:
    return [
        key
        for kind, key in mesh.persisted[name]
        if kind is RecordKind.META and key.startswith(codec.RECEIPT_KEY)
    ]


def _statuses(mesh: Mesh, name: str, message_id: bytes) -> list[MessageStatus]:
    changes = mesh.of_type(name, MessageStatusChanged)
    return [e.status for e in changes if e.message_id == message_id]


def _config(**message: object) -> NodeConfig:
    return NodeConfig(message=dataclasses.replace(MessageLimits(), **message))  # type: ignore[arg-type]


def test_with_receipts_off_nothing_is_owed_even_across_a_restart() -> None:
    """Failed before the fix: the delivered receipt's META record was written although
    receipts were off, and a restart queued it again, so the sender saw DELIVERED."""
    quiet = _config(send_receipts=False)
    mesh = Mesh(["alice", "bob"], configs={"bob": quiet})
    mesh.befriend("alice", "bob", pair=True)
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "hi", now=mesh.now)
    mesh.connect("alice", "bob")
    assert [e.body for e in mesh.of_type("bob", MessageReceived)] == ["hi"]
    mesh.nodes["bob"].mark_read(mesh.peer_id("alice"), [mid], now=mesh.now)
    mesh.run()
    assert _owed(mesh, "bob") == []
    mesh.stop("bob")
    mesh.start("bob")
    mesh.connect("alice", "bob")
    mesh.advance(10)
    assert MessageStatus.DELIVERED not in _statuses(mesh, "alice", mid)
    assert MessageStatus.READ not in _statuses(mesh, "alice", mid)


def test_receipts_owed_before_they_were_switched_off_are_deleted_not_sent() -> None:
    """Bob owed a delivered receipt when he stopped; he restarts with receipts off: it is not
    sent, and its record is deleted (failed before: restoring owed receipts ignored the flag)."""
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "hi", now=mesh.now)
    mesh.connect("alice", "bob")
    assert [e.body for e in mesh.of_type("bob", MessageReceived)] == ["hi"]
    mesh.stop("bob")  # before the 2 s receipt batch: the receipt is owed on disk
    assert len(_owed(mesh, "bob")) == 1
    mesh.configs["bob"] = _config(send_receipts=False)
    mesh.start("bob")
    mesh.run()
    assert _owed(mesh, "bob") == []
    mesh.connect("alice", "bob")
    mesh.advance(10)
    assert MessageStatus.DELIVERED not in _statuses(mesh, "alice", mid)


def test_with_receipts_off_first_contact_mail_owes_nothing_either() -> None:
    quiet = _config(send_receipts=False)
    mesh = Mesh(["alice", "bob"], configs={"bob": quiet})
    mesh.befriend("alice", "bob", pair=False)  # never met: alice writes by first contact
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "first", now=mesh.now)
    mesh.run()
    mesh.connect("alice", "bob")
    assert "first" in [e.body for e in mesh.of_type("bob", MessageReceived)]
    assert _owed(mesh, "bob") == []
    mesh.stop("bob")
    mesh.start("bob")
    mesh.advance(10)
    assert MessageStatus.DELIVERED not in _statuses(mesh, "alice", mid)


def test_read_marks_only_count_for_this_peer_s_incoming_mail() -> None:
    mesh = Mesh(["alice", "bob", "carol"])
    mesh.befriend("alice", "bob", pair=True)
    mesh.befriend("carol", "bob", pair=True)
    from_alice = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "a", now=mesh.now)
    own = mesh.nodes["bob"].send_message(mesh.peer_id("alice"), "b", now=mesh.now)
    mesh.connect("alice", "bob")
    mesh.advance(10)  # delivered receipts go
    bob = mesh.nodes["bob"]
    # carol did not send from_alice; own is outgoing; an unknown id is nobody's
    bob.mark_read(mesh.peer_id("carol"), [from_alice], now=mesh.now)
    bob.mark_read(mesh.peer_id("alice"), [own, b"?" * 16], now=mesh.now)
    mesh.run()
    assert _owed(mesh, "bob") == []
    mesh.advance(10)
    assert MessageStatus.READ not in _statuses(mesh, "alice", from_alice)
    bob.mark_read(mesh.peer_id("alice"), [from_alice], now=mesh.now)
    mesh.advance(10)
    assert MessageStatus.READ in _statuses(mesh, "alice", from_alice)


def test_receipts_owed_to_a_contact_removed_meanwhile_are_forgotten() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "hi", now=mesh.now)
    la, _ = mesh.connect("alice", "bob")  # bob's receipt waits receipt_delay_s to batch
    assert len(_owed(mesh, "bob")) == 1
    mesh.disconnect("alice", "bob")
    mesh.nodes["bob"].remove_contact(mesh.peer_id("alice"), now=mesh.now)
    mesh.advance(10)
    assert _owed(mesh, "bob") == []
    assert la  # the link existed: the receipt was owed on a real delivery


def test_receipts_wait_durably_for_counters_and_leave_at_the_next_period() -> None:
    """bob spent his period's counters towards alice and they do not meet (no live renewal):
    his receipt for her mail, which a relay brought, stays owed on disk until the period
    ends, then goes through the relay."""
    tight = _config(max_messages_per_period=2)
    mesh = Mesh(["alice", "bob", "carol"], config=tight)
    mesh.befriend("alice", "bob", pair=True)
    bob = mesh.nodes["bob"]
    for body in ("one", "two"):
        bob.send_message(mesh.peer_id("alice"), body, now=mesh.now)
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "yours", now=mesh.now)
    mesh.run()
    meet = [("alice", "carol"), ("carol", "bob")]
    for a, b in meet:
        mesh.connect(a, b)
        mesh.advance(10)
        mesh.disconnect(a, b)
    assert [e.body for e in mesh.of_type("bob", MessageReceived)] == ["yours"]
    assert len(_owed(mesh, "bob")) == 1  # no counter left: the receipt stays owed on disk
    mesh.stop("bob")  # and survives a restart
    mesh.start("bob")
    mesh.advance(tight.message.period_s)
    for a, b in [("bob", "carol"), ("carol", "alice")]:
        mesh.connect(a, b)
        mesh.advance(10)
        mesh.disconnect(a, b)
    assert _owed(mesh, "bob") == []
    assert MessageStatus.DELIVERED in _statuses(mesh, "alice", mid)
