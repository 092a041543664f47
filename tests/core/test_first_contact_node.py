"""Issue #12 in the node: first contact through a relay, healing at the first meeting, message
requests and their quotas, pairing on a live link, and one-sided contacts that do not loop."""

from __future__ import annotations

from meshmsg.config import FirstContactConfig, NodeConfig
from meshmsg.core.events import (
    ContactPaired,
    LinkClosed,
    MessageReceived,
    MessageRequested,
    MessageStatus,
    MessageStatusChanged,
    RequestDropped,
)
from meshmsg.core.exchange.firstseal import FIRST_CONTACT_EPOCH
from meshmsg.core.firstcontact import seal_first_contact
from meshmsg.core.identity import ContactCard
from meshmsg.core.records import TextMessage
from meshmsg.core.wire import encode_records
from meshmsg.sim.rng import SeededRng
from tests.core.node_tools import AttackMesh
from tests.helpers import Mesh


def add(mesh: Mesh, who: str, whom: str) -> None:
    card = ContactCard(public=mesh.identities[whom].public, name=whom)
    mesh.nodes[who].add_contact(card, verified=False, now=mesh.now)
    mesh.run()


def statuses(mesh: Mesh, name: str, message_id: bytes) -> list[MessageStatus]:
    changes = mesh.of_type(name, MessageStatusChanged)
    return [e.status for e in changes if e.message_id == message_id]


def test_first_contact_through_a_relay_is_read_delivered_then_heals_at_the_first_meeting() -> None:
    mesh = Mesh(["alice", "bob", "carol"])
    add(mesh, "alice", "carol")
    add(mesh, "carol", "alice")  # codes exchanged by radio; never online together
    alice = mesh.nodes["alice"]
    mid = alice.send_message(mesh.peer_id("carol"), "water at the school", now=mesh.now)
    mesh.run()
    message = alice.conversations.get(mid)
    assert message is not None
    assert message.sealed
    assert message.epoch == FIRST_CONTACT_EPOCH  # first contact, not waiting for a meeting

    mesh.connect("alice", "bob")  # only relay bob is up with alice
    assert MessageStatus.RELAYED in statuses(mesh, "alice", mid)
    mesh.disconnect("alice", "bob")
    assert mesh.of_type("bob", MessageReceived) == []  # the relay cannot read or claim it

    mesh.connect("bob", "carol")
    [received] = mesh.of_type("carol", MessageReceived)
    assert received.body == "water at the school"
    assert received.peer_id == mesh.peer_id("alice")
    # carol's delivered receipt goes back by first contact, to bob: bob delivered the mail, so
    # the receipt waits a random delay and then the hold (bob is carol's only peer, issue #11)
    limits = mesh.configs["carol"].message
    mesh.advance(limits.receipt_relayed_delay_max_s + limits.receipt_hold_s + 1)
    mesh.disconnect("bob", "carol")

    mesh.connect("alice", "bob")  # alice back later
    assert MessageStatus.DELIVERED in statuses(mesh, "alice", mid)
    mesh.disconnect("alice", "bob")

    mesh.connect("alice", "carol")  # they meet: the first-contact channel heals into B+
    assert [e.peer_id for e in mesh.of_type("alice", ContactPaired)] == [mesh.peer_id("carol")]
    assert [e.peer_id for e in mesh.of_type("carol", ContactPaired)] == [mesh.peer_id("alice")]
    later = alice.send_message(mesh.peer_id("carol"), "met you", now=mesh.now)
    mesh.run()
    after = alice.conversations.get(later)
    assert after is not None
    assert after.epoch != FIRST_CONTACT_EPOCH
    assert [e.body for e in mesh.of_type("carol", MessageReceived)][-1] == "met you"


def test_a_stranger_is_a_request_accept_makes_a_conversation_and_delivers() -> None:
    mesh = Mesh(["alice", "bob", "carol"])
    add(mesh, "alice", "carol")  # only alice holds a code
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("carol"), "hello, it's alice", now=mesh.now)
    mesh.run()
    mesh.connect("alice", "bob")
    mesh.connect("bob", "carol")
    carol = mesh.nodes["carol"]
    [request] = mesh.of_type("carol", MessageRequested)
    assert request.body == "hello, it's alice"
    assert mesh.of_type("carol", MessageReceived) == []  # shown apart, not in the inbox
    assert carol.contacts.get(mesh.peer_id("alice")) is None
    mesh.advance(5)
    assert MessageStatus.DELIVERED not in statuses(mesh, "alice", mid)  # not accepted yet

    carol.accept_request(mesh.peer_id("alice"), now=mesh.now)
    mesh.advance(5)  # the delivered receipt leaves once accepted
    assert carol.contacts.get(mesh.peer_id("alice")) is not None
    assert len(carol.requests) == 0
    assert MessageStatus.DELIVERED in statuses(mesh, "alice", mid)


def test_a_blocked_stranger_is_dropped_on_arrival_and_restarts_remember() -> None:
    mesh = Mesh(["dave", "bob", "carol"])
    add(mesh, "dave", "carol")
    mesh.nodes["dave"].send_message(mesh.peer_id("carol"), "buy now", now=mesh.now)
    mesh.connect("dave", "bob")
    mesh.connect("bob", "carol")
    assert len(mesh.of_type("carol", MessageRequested)) == 1
    mesh.nodes["carol"].decline_request(mesh.peer_id("dave"), block=True, now=mesh.now)
    mesh.run()
    mesh.stop("carol")
    mesh.start("carol")
    assert mesh.nodes["carol"].conversations.with_peer(mesh.peer_id("dave")) == []
    mesh.nodes["dave"].send_message(mesh.peer_id("carol"), "buy now!!", now=mesh.now)
    mesh.run()
    mesh.connect("bob", "carol")
    assert len(mesh.of_type("carol", MessageRequested)) == 1  # no new request
    # bob kept its copy of the first request when carol claimed it (a claim may be a decoy,
    # core/exchange/claims.py), so after the restart it may come once more: dropped again.
    dropped = [e.reason for e in mesh.of_type("carol", RequestDropped)]
    assert dropped
    assert set(dropped) == {"blocked"}
    assert mesh.nodes["carol"].conversations.with_peer(mesh.peer_id("dave")) == []


def test_a_request_flood_from_1000_strangers_keeps_the_quota_and_contacts_mail_flows() -> None:
    limits = FirstContactConfig()
    mesh = AttackMesh(["alice", "carol"])
    mesh.befriend("alice", "carol", pair=True)
    carol = mesh.nodes["carol"]
    flood_rng = SeededRng(9, "flood")
    envelopes = []
    for i in range(1_000):
        stranger = mesh.stranger(f"flood{i}")
        inner = encode_records([TextMessage(message_id=i.to_bytes(16, "big"), sent_at=0,
                                            body="spam " * 40)])  # fmt: skip
        envelopes.append(seal_first_contact(
            sender=stranger, recipient=mesh.identities["carol"].public, inner=inner,
            now=mesh.now, ttl_s=3600, rng=flood_rng,
            limits=carol.config.message, slots=limits.tag_slots,
        ).envelope)  # fmt: skip
    flooder = mesh.inject("carol", mesh.stranger("relay"))
    flooder.transfer(envelopes, batch=40)  # 40 KB per receive: under the link buffer
    accepted, refused = flooder.custody()
    assert len(accepted) == 1_000  # all taken off the relay's hands ...
    assert not refused
    assert len(carol.requests) == limits.max_requests  # ... but only 64 kept
    assert carol.requests.dropped == 1_000 - limits.max_requests
    kept = [r for r in mesh.persisted["carol"] if r[1].startswith(b"request:")]
    assert len(kept) == limits.max_requests
    assert len(mesh.of_type("carol", MessageRequested)) == limits.max_requests
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("carol"), "still here", now=mesh.now)
    mesh.connect("alice", "carol")
    assert [e.message_id for e in mesh.of_type("carol", MessageReceived)] == [mid]


def test_adding_a_contact_while_linked_pairs_on_that_link_and_delivers() -> None:
    mesh = Mesh(["alice", "carol"])
    mesh.connect("alice", "carol")  # linked as strangers (static peers, say)
    add(mesh, "alice", "carol")
    add(mesh, "carol", "alice")
    assert len(mesh.of_type("alice", ContactPaired)) == 1
    assert len(mesh.of_type("carol", ContactPaired)) == 1
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("carol"), "hi", now=mesh.now)
    mesh.run()
    assert [e.message_id for e in mesh.of_type("carol", MessageReceived)] == [mid]
    assert mesh.of_type("alice", LinkClosed) == []


def test_a_one_sided_contact_keeps_one_link_and_says_it_has_not_accepted() -> None:
    mesh = Mesh(["alice", "carol"])
    add(mesh, "alice", "carol")
    mesh.connect("alice", "carol")
    attempts = 1
    for _ in range(60):  # 60 s: a driver redials whenever the link drops
        mesh.advance(1)
        if not mesh.linked("alice", "carol"):
            attempts += 1
            mesh.connect("alice", "carol")
    assert attempts == 1
    assert mesh.of_type("alice", LinkClosed) == []
    alice = mesh.nodes["alice"]
    assert alice.awaiting_acceptance(mesh.peer_id("carol"), now=mesh.now)
    mid = alice.send_message(mesh.peer_id("carol"), "are you there?", now=mesh.now)
    mesh.run()
    assert [e.body for e in mesh.of_type("carol", MessageRequested)] == ["are you there?"]
    mesh.nodes["carol"].accept_request(mesh.peer_id("alice"), now=mesh.now)
    mesh.advance(5)
    assert len(mesh.of_type("carol", ContactPaired)) == 1  # paired on the same link
    assert not alice.awaiting_acceptance(mesh.peer_id("carol"), now=mesh.now)
    assert MessageStatus.DELIVERED in statuses(mesh, "alice", mid)


def test_config_default_slots_are_documented_values() -> None:
    assert NodeConfig().first_contact.tag_slots == 16


def test_two_links_both_ways_still_pair_once_and_deliver() -> None:
    """Static peers on both sides: each dials the other. Of the two links only the one the
    lower peer id opened survives, so a key exchange never runs on two links at once (which
    could leave the two sides with different keys)."""
    for seed in range(6):
        mesh = Mesh(["alice", "carol"], seed=seed)
        mesh.connect("alice", "carol")
        mesh.connect("carol", "alice")
        assert sum(1 for (x, _), _ in mesh.links.items() if x == "alice") == 1
        add(mesh, "alice", "carol")
        add(mesh, "carol", "alice")
        mid = mesh.nodes["alice"].send_message(mesh.peer_id("carol"), "once", now=mesh.now)
        mesh.run()
        mesh.advance(5)
        assert [e.message_id for e in mesh.of_type("carol", MessageReceived)] == [mid], seed
        later = mesh.nodes["carol"].send_message(mesh.peer_id("alice"), "back", now=mesh.now)
        mesh.run()
        assert [e.message_id for e in mesh.of_type("alice", MessageReceived)] == [later], seed
