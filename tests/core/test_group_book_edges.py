"""The group book's edges: finding a group by name or id prefix, the limits on groups and
members, one bad operation among good ones, a chain that outruns the ADD of its sender,
receipts that do not count, and receipts switched off."""

from __future__ import annotations

import dataclasses

import pytest

from meshmsg.config import GroupLimits, MessageLimits, NodeConfig
from meshmsg.core.envelope import parse_envelope
from meshmsg.core.groups.book import RECEIPT_DELIVERED, RECEIPT_READ, GroupBook
from meshmsg.core.groups.ops import OpKind
from meshmsg.core.groups.records import GroupKey, GroupOps, GroupReceipt
from meshmsg.core.identity import peer_id_of
from meshmsg.errors import GroupError
from meshmsg.sim.rng import SeededRng
from tests.core.test_group_book import T0, TTL, Mesh


def test_groups_are_found_by_unique_name_or_an_id_prefix_of_eight_or_more() -> None:
    mesh = Mesh.of("alice", "bob")
    alice = mesh.books["alice"]
    first, _ = alice.create("ops", [], T0)
    second, _ = alice.create("ops", [], T0)
    with pytest.raises(GroupError, match="several groups are named 'ops'"):
        alice.find("ops")
    for entry in (first, second):
        assert alice.find(entry.group.id.hex()[:8]) is entry
        assert alice.find(entry.group.id) is entry
    with pytest.raises(GroupError, match="no group"):
        alice.find(first.group.id.hex()[:7])  # too short to be taken as an id
    with pytest.raises(GroupError, match="no group"):
        alice.find(b"\x00" * 32)


def test_the_limits_on_groups_and_members_refuse_with_the_setting_named() -> None:
    limits = dataclasses.replace(GroupLimits(), max_groups=1, max_members=2)
    mesh = Mesh.of("alice", "bob", "carol")
    alice = GroupBook(mesh.books["alice"].identity, NodeConfig(groups=limits), SeededRng(1, "a"))
    publics = [mesh.books[n].identity.public for n in ("bob", "carol")]
    with pytest.raises(GroupError, match="at most 2 members"):
        alice.create("big", publics, T0)
    entry, out = alice.create("pair", [publics[0]], T0)
    assert len(entry.group.state.members) == 2
    assert [o.peer_id for o in out] == [peer_id_of(publics[0].identity_key)]
    with pytest.raises(GroupError, match=r"at most 1 groups per node \(groups.max_groups\)"):
        alice.create("another", [], T0)


def test_listing_ourselves_among_the_members_adds_nobody_twice() -> None:
    mesh = Mesh.of("alice", "bob")
    alice, bob = mesh.books["alice"], mesh.books["bob"]
    entry, out = alice.create("x", [alice.identity.public, bob.identity.public], T0)
    assert entry.group.state.members.keys() == {alice.me, bob.me}
    assert [o.peer_id for o in out] == [peer_id_of(bob.me)]


def test_one_bad_operation_does_not_spoil_the_others() -> None:
    mesh = Mesh.of("alice", "bob")
    alice, bob = mesh.books["alice"], mesh.books["bob"]
    _, out = alice.create("x", [bob.identity.public], T0)
    [record] = [r for o in out for r in o.records if isinstance(r, GroupOps)]
    spoiled = dataclasses.replace(record, ops=(b"\x00garbage", *record.ops))
    changed, _ = bob.on_ops(alice.me, spoiled, T0)
    assert changed
    assert bob.find("x").group.state.members == alice.find("x").group.state.members


def test_a_chain_that_outruns_the_add_of_its_sender_waits_and_then_opens_mail() -> None:
    mesh = Mesh.of("alice", "bob", "dave")
    alice, bob, dave = (mesh.books[n] for n in ("alice", "bob", "dave"))
    entry, out = alice.create("x", [bob.identity.public], T0)
    mesh.post("alice", out)
    mesh.online.discard("bob")  # bob misses the ADD of dave for now
    mesh.post("alice", alice.change(entry, OpKind.ADD, T0, target=dave.identity.public))
    sealed = dave.seal_text(dave.find("x"), "dave here", T0, TTL)
    [to_bob] = [o for o in sealed.shares if o.peer_id == peer_id_of(bob.me)]
    [key] = to_bob.records
    assert isinstance(key, GroupKey)
    assert bob.on_key(dave.me, key, T0) is False  # not a member in bob's view: it waits
    assert bob.on_key(bob.me, key, T0) is False  # our own chain is never taken from others
    envelope = parse_envelope(sealed.envelope)
    assert bob.lookup(envelope.tag) is None
    mesh.online.add("bob")
    mesh.pump()  # the ADD arrives: the waiting chain is admitted
    found = bob.lookup(envelope.tag)
    assert found is not None
    message, _ = bob.open(found[0], envelope, found[1], T0)
    assert message is not None
    assert message.body == "dave here"


def test_receipts_that_do_not_count_change_nothing() -> None:
    mesh = Mesh.of("alice", "bob", "carol")
    alice, bob, carol = (mesh.books[n] for n in ("alice", "bob", "carol"))
    entry, out = alice.create("x", [bob.identity.public], T0)
    mesh.post("alice", out)
    mesh.send("alice", "x", "m")
    mesh.send("bob", "x", "from bob")
    (mine,) = [m for m in entry.messages.values() if m.outgoing]
    (theirs,) = [m for m in entry.messages.values() if not m.outgoing]
    gid = entry.group.id

    def receipt(status: int, *ids: bytes, group: bytes = gid) -> GroupReceipt:
        return GroupReceipt(group=group, status=status, message_ids=ids)

    assert alice.on_receipt(bob.me, receipt(RECEIPT_READ, mine.message_id, group=b"g" * 32)) == []
    assert alice.on_receipt(carol.me, receipt(RECEIPT_READ, mine.message_id)) == []  # no recipient
    assert alice.on_receipt(bob.me, receipt(RECEIPT_READ, theirs.message_id, b"?" * 16)) == []
    assert mine.delivered == {bob.me}  # from the delivery earlier
    assert alice.on_receipt(bob.me, receipt(RECEIPT_DELIVERED, mine.message_id)) == []  # again
    assert alice.on_receipt(bob.me, receipt(RECEIPT_READ, mine.message_id)) == [mine]
    assert mine.read == {bob.me}
    assert alice.mark_read(entry, [mine.message_id]) == []  # our own message: no receipt
    [out_receipt] = alice.mark_read(entry, [theirs.message_id])
    assert out_receipt.peer_id == peer_id_of(bob.me)


def test_with_receipts_off_a_group_member_sends_none() -> None:
    quiet = NodeConfig(message=dataclasses.replace(MessageLimits(), send_receipts=False))
    mesh = Mesh.of("alice", "bob")
    bob_identity = mesh.books["bob"].identity
    mesh.books["bob"] = GroupBook(bob_identity, quiet, SeededRng(2, "bob"))
    alice, bob = mesh.books["alice"], mesh.books["bob"]
    entry, out = alice.create("x", [bob.identity.public], T0)
    mesh.post("alice", out)
    mesh.send("alice", "x", "m")
    assert mesh.inbox["bob"] == ["m"]
    (message,) = entry.messages.values()
    assert message.delivered == set()  # no delivered receipt came back
    assert bob.mark_read(bob.find("x"), [message.message_id]) == []
