"""First-contact mail at the node, the paths the happy tests skip: a pending request and its
quota survive a restart, declining and unblocking (and their refusals), and envelopes that are
forged, replayed, unreadable, from ourselves, from a blocked contact or carry a receipt."""

from __future__ import annotations

import dataclasses

import pytest

from meshmsg.config import FirstContactConfig, NodeConfig
from meshmsg.core.envelope import envelope_id
from meshmsg.core.events import MessageReceived, MessageRequested, RequestDropped
from meshmsg.core.firstcontact import seal_first_contact
from meshmsg.core.identity import ContactCard, Identity
from meshmsg.core.records import Receipt, TextMessage
from meshmsg.core.requests import Admission, RequestBook, restore_record
from meshmsg.core.wire import Record, encode_records
from meshmsg.errors import LocalProtocolError
from meshmsg.sim.rng import SeededRng
from tests.core.node_tools import AttackMesh
from tests.helpers import Mesh


def _sealed(mesh: Mesh, sender: Identity, to: str, inner: bytes, seed: int = 1) -> bytes:
    node = mesh.nodes[to]
    return seal_first_contact(
        sender=sender, recipient=mesh.identities[to].public, inner=inner, now=mesh.now,
        ttl_s=3600, rng=SeededRng(seed, "first"), limits=node.config.message,
        slots=node.config.first_contact.tag_slots,
    ).envelope  # fmt: skip


def _text(n: int, body: str = "hello") -> bytes:
    return encode_records([TextMessage(message_id=bytes([n]) * 16, sent_at=0, body=body)])


def _requested(mesh: Mesh, name: str) -> list[str]:
    return [e.body for e in mesh.of_type(name, MessageRequested)]


def test_a_pending_request_and_its_quota_survive_a_restart() -> None:
    config = NodeConfig(first_contact=dataclasses.replace(FirstContactConfig(),
                                                          max_request_messages=2))  # fmt: skip
    mesh = AttackMesh(["carol"], config=config)
    stranger = mesh.stranger("alice")
    relay = mesh.inject("carol", mesh.stranger("relay"))
    relay.transfer([_sealed(mesh, stranger, "carol", _text(1, "first"), seed=1)])
    relay.close()
    mesh.stop("carol")
    carol = mesh.start("carol")
    request = carol.requests.get(stranger.public.peer_id)
    assert request is not None
    assert request.message_ids == [bytes([1]) * 16]
    assert request.body_bytes == len("first")
    relay = mesh.inject("carol", mesh.stranger("relay2"))
    relay.transfer([_sealed(mesh, stranger, "carol", _text(n, f"more {n}"), seed=n)
                    for n in (2, 3)])  # fmt: skip
    assert _requested(mesh, "carol") == ["first", "more 2"]  # the restored one still counts
    assert [e.reason for e in mesh.of_type("carol", RequestDropped)] == [
        "this sender's request is full"
    ]
    contact = carol.accept_request(stranger.public.peer_id, now=mesh.now)
    mesh.run()
    bodies = [m.body for m in carol.conversations.with_peer(contact.peer_id)]
    assert sorted(bodies) == ["first", "more 2"]


def test_declining_without_blocking_forgets_the_request_and_unblocking_is_durable() -> None:
    mesh = AttackMesh(["carol"])
    stranger = mesh.stranger("dave")
    peer = stranger.public.peer_id
    relay = mesh.inject("carol", mesh.stranger("relay"))
    relay.transfer([_sealed(mesh, stranger, "carol", _text(1))])
    carol = mesh.nodes["carol"]
    with pytest.raises(LocalProtocolError, match="is not blocked"):
        carol.unblock_sender(peer, now=mesh.now)
    carol.decline_request(peer, block=False, now=mesh.now)
    mesh.run()
    assert carol.requests.get(peer) is None
    assert carol.conversations.with_peer(peer) == []
    with pytest.raises(LocalProtocolError, match="no request from"):
        carol.decline_request(peer, block=False, now=mesh.now)
    carol.decline_request(peer, block=True, now=mesh.now)  # blocking needs no request
    carol.unblock_sender(peer, now=mesh.now)
    mesh.run()
    relay.close()
    mesh.stop("carol")
    carol = mesh.start("carol")
    assert carol.requests.get(peer) is None  # the decline was written
    assert not carol.requests.is_blocked(peer)  # and so was the unblock
    assert carol.conversations.with_peer(peer) == []
    relay = mesh.inject("carol", mesh.stranger("relay2"))
    relay.transfer([_sealed(mesh, stranger, "carol", _text(2, "again"), seed=2)])
    assert _requested(mesh, "carol") == ["hello", "again"]  # a later message: a new request


def test_forged_replayed_unreadable_and_self_sent_envelopes_show_nothing() -> None:
    mesh = AttackMesh(["carol"])
    stranger = mesh.stranger("erin")
    good = _sealed(mesh, stranger, "carol", _text(1, "once"))
    forged = good[:-1] + bytes([good[-1] ^ 1])  # a recognised tag, a broken MAC
    unreadable = _sealed(mesh, stranger, "carol", b"\xff\xfe not records", seed=2)
    from_self = _sealed(mesh, mesh.identities["carol"], "carol", _text(3, "me"), seed=3)
    receipt: list[Record] = [Receipt(status=0, message_ids=(b"r" * 16,))]
    only_receipt = _sealed(mesh, stranger, "carol", encode_records(receipt), seed=4)
    relay = mesh.inject("carol", mesh.stranger("relay"))
    relay.transfer([forged])
    _, refused = relay.custody()
    assert refused == {envelope_id(forged)}
    relay.transfer([good, unreadable, from_self, only_receipt])
    relay.transfer([good])  # the same envelope again, after it was opened
    accepted, _ = relay.custody()
    assert {envelope_id(e) for e in (good, unreadable, from_self, only_receipt)} <= accepted
    assert _requested(mesh, "carol") == ["once"]
    carol = mesh.nodes["carol"]
    request = carol.requests.get(stranger.public.peer_id)
    assert request is not None
    assert request.message_ids == [bytes([1]) * 16]
    assert carol.requests.get(mesh.identities["carol"].public.peer_id) is None


def test_first_contact_mail_from_a_blocked_contact_is_dropped() -> None:
    mesh = AttackMesh(["carol"])
    friend = mesh.stranger("frank")
    carol = mesh.nodes["carol"]
    carol.add_contact(ContactCard(public=friend.public, name="frank"), verified=True, now=mesh.now)
    relay = mesh.inject("carol", mesh.stranger("relay"))
    relay.transfer([_sealed(mesh, friend, "carol", _text(1, "hi carol"), seed=1)])
    assert [e.body for e in mesh.of_type("carol", MessageReceived)] == ["hi carol"]
    carol.set_blocked(friend.public.peer_id, True, now=mesh.now)
    mesh.run()
    relay = mesh.inject("carol", mesh.stranger("relay2"))
    relay.transfer([_sealed(mesh, friend, "carol", _text(2, "let me in"), seed=2)])
    assert [e.body for e in mesh.of_type("carol", MessageReceived)] == ["hi carol"]
    assert [e.reason for e in mesh.of_type("carol", RequestDropped)] == ["blocked"]
    assert _requested(mesh, "carol") == []


def test_mail_from_a_fast_clock_carried_early_opens_when_our_period_reaches_it() -> None:
    """A sender two periods ahead (beyond the F periods we accept) gets its envelope carried
    by us as a relay; when our period moves on, our new tags recognise it and it opens."""
    mesh = AttackMesh(["carol"])
    stranger = mesh.stranger("gina")
    period = mesh.nodes["carol"].config.message.period_s
    ahead = seal_first_contact(
        sender=stranger, recipient=mesh.identities["carol"].public, inner=_text(1, "early"),
        now=mesh.now + 2 * period, ttl_s=3600, rng=SeededRng(1, "ahead"),
        limits=mesh.nodes["carol"].config.message,
        slots=mesh.nodes["carol"].config.first_contact.tag_slots,
    ).envelope  # fmt: skip
    relay = mesh.inject("carol", mesh.stranger("relay"))
    relay.transfer([ahead])
    relay.close()
    carol = mesh.nodes["carol"]
    assert envelope_id(ahead) in carol.store  # carried, not recognised yet
    assert _requested(mesh, "carol") == []
    mesh.advance(2 * period)
    assert _requested(mesh, "carol") == ["early"]
    assert envelope_id(ahead) not in carol.store  # ours: no longer carried for others


def test_request_records_of_other_kinds_are_left_to_the_caller() -> None:
    book = RequestBook(FirstContactConfig())
    assert restore_record(book, b"org:xyz", b"") is False
    assert book.restore_message(b"p" * 16, b"m" * 16, 10) is False  # no request to count it in
    assert len(book) == 0
    assert book.admit(Identity.generate(SeededRng(1, "x")).public, 10) is Admission.ACCEPTED
