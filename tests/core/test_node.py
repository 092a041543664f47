"""Node end to end, in memory and virtual time: pairing, delivery, relays, receipts, restarts."""

from __future__ import annotations

import pytest

from meshmsg.config import MessageLimits, NodeConfig, RoutingConfig, StoreConfig
from meshmsg.core import codec
from meshmsg.core.effects import RecordKind, Transmit
from meshmsg.core.events import (
    ContactHealed,
    ContactPaired,
    DropReason,
    EnvelopeAccepted,
    EnvelopeDropped,
    LinkClosed,
    MessageReceived,
    MessageStatus,
    MessageStatusChanged,
    PeerConnected,
)
from meshmsg.core.node import Node
from meshmsg.errors import CloseReason, LocalProtocolError
from tests.core.node_tools import backlog_delivered, prompt_returns
from tests.helpers import Mesh


class LossyMesh(Mesh):
    """A Mesh where ``mute[name]`` transmissions of a node still go out, then none."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(names)
        self.mute: dict[str, int] = {}

    def _carry_out(self, name: str, node: Node, effect: object) -> None:
        if isinstance(effect, Transmit) and name in self.mute:
            if self.mute[name] <= 0:
                return
            self.mute[name] -= 1
        super()._carry_out(name, node, effect)


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
    mesh = Mesh(["alice", "relay", "bob"], config=prompt_returns())
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


def test_a_direct_delivery_is_never_labelled_relayed() -> None:
    """Custody taken by the recipient itself is no relay: the sender's message goes from
    QUEUED straight to DELIVERED (the receipt), while the copy leaves as DELIVERED."""
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    mesh.connect("alice", "bob")
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "straight to you", now=mesh.now)
    mesh.run()
    assert [r.message_id for r in mesh.of_type("bob", MessageReceived)] == [mid]
    drops = [(e.envelope_id, e.reason) for e in mesh.of_type("alice", EnvelopeDropped)]
    assert [reason for _, reason in drops] == [DropReason.DELIVERED]  # bob took custody
    assert statuses(mesh, "alice", mid) == []  # ... and that alone is not "relayed"
    mesh.advance(5)  # bob's delivered receipt is sealed and sent on the same link
    assert statuses(mesh, "alice", mid) == [MessageStatus.DELIVERED]


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
    assert statuses(mesh, "alice", mid) == []  # bob's own custody is no relay; no receipt yet
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
    meta = [key for kind, key in mesh.persisted["bob"] if kind is RecordKind.META]
    assert not [key for key in meta if key.startswith(codec.RECEIPT_KEY)]  # all sent
    # ... and remembered as sealed (in bob's current epoch) until a heal shows them readable
    assert meta
    assert all(k.startswith(codec.SEALED_RECEIPT_KEY) and k.endswith(mid) for k in meta)


# ------------------------------------------------------- backlogs, bounds, one-sided heals


def test_a_backlog_past_the_tag_window_and_its_receipts_complete_in_one_meeting() -> None:
    # The recipient recognises only 64 counters ahead; direct routing declines the rest
    # until the recipient took what it recognised. Receipts name at most 64 ids per record.
    mesh, sent = backlog_delivered(NodeConfig(routing=RoutingConfig(policy="direct")))
    assert sorted(r.message_id for r in mesh.of_type("bob", MessageReceived)) == sorted(sent)
    assert all(statuses(mesh, "alice", m)[-1] is MessageStatus.DELIVERED for m in sent)
    assert len(mesh.nodes["alice"].store) == 0


def test_more_offers_than_one_record_holds_keep_the_link_up() -> None:
    config = NodeConfig(routing=RoutingConfig(policy="epidemic"))
    mesh = Mesh(["alice", "carol", "relay", "bob"], config=config)
    mesh.befriend("alice", "bob", pair=True)
    mesh.befriend("carol", "bob", pair=True)
    mesh.stop("bob")
    for sender in ("alice", "carol"):  # 1,200 envelopes: two Offer records (1,024 entries max)
        for i in range(600):
            mesh.nodes[sender].send_message(mesh.peer_id("bob"), f"{sender}{i}", now=mesh.now)
        mesh.connect(sender, "relay")
        mesh.disconnect(sender, "relay")
    mesh.start("bob")
    mesh.connect("relay", "bob")
    assert len(mesh.of_type("bob", MessageReceived)) == 1_200
    assert all(e.reason is CloseReason.LINK_LOST for e in mesh.of_type("relay", LinkClosed))
    assert mesh.linked("relay", "bob")


def test_tokens_learnt_at_a_meeting_clear_the_copies_of_everyone_met_right_now() -> None:
    mesh = Mesh(["alice", "relay", "bob"], config=prompt_returns())
    mesh.befriend("alice", "bob", pair=True)
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "hi", now=mesh.now)
    mesh.connect("alice", "relay")  # alice keeps 3 copies, the relay holds 3
    mesh.connect("relay", "bob")  # bob opens the relay's copy while alice is still linked
    assert len(mesh.nodes["relay"].store) == 0
    assert len(mesh.nodes["alice"].store) == 0  # the token came on through the relay
    assert statuses(mesh, "alice", mid)[-1] is MessageStatus.DELIVERED


def test_a_full_tombstone_table_keeps_set_records_and_table_in_step() -> None:
    config = NodeConfig(message=MessageLimits(dedup_entries=4))
    mesh = Mesh(["alice", "bob"], config=config)
    mesh.befriend("alice", "bob", pair=True)
    for i in range(10):
        mesh.nodes["alice"].send_message(mesh.peer_id("bob"), f"m{i}", now=mesh.now)
    mesh.connect("alice", "bob")
    mesh.stop("bob")
    mesh.start("bob")
    for name in ("alice", "bob"):
        node = mesh.nodes[name]
        stones = {s.item_id for s in node.tombstones}
        assert len(stones) <= 4
        assert set(node.items) == stones | {item.envelope_id for item in node.store.items()}
        stored = [k for k, _ in mesh.persisted[name] if k is RecordKind.TOMBSTONE]
        assert len(stored) == len(stones)


def test_mail_sealed_in_an_epoch_the_peer_never_had_is_sealed_again_at_once() -> None:
    mesh = LossyMesh(["x", "y"])
    mesh.befriend("x", "y")
    mesh.connect("x", "y")  # pair
    mesh.disconnect("x", "y")
    mesh.mute["x"] = 1  # x sends its handshake message, then nothing: y never gets x's share
    mesh.connect("y", "x")
    mesh.disconnect("x", "y")
    del mesh.mute["x"]
    channel_x = mesh.nodes["x"].contacts.require(mesh.peer_id("y")).channel
    channel_y = mesh.nodes["y"].contacts.require(mesh.peer_id("x")).channel
    assert channel_x is not None
    assert channel_y is not None
    assert channel_x.epoch > channel_y.epoch  # x healed alone
    mesh.nodes["x"].send_message(mesh.peer_id("y"), "in x's lonely epoch", now=mesh.now)
    mesh.run()
    mesh.stop("x")  # the unsealed mark must survive a crash too
    mesh.start("x")
    mesh.connect("x", "y")
    assert [r.body for r in mesh.of_type("y", MessageReceived)] == ["in x's lonely epoch"]


def test_at_the_per_period_cap_sealing_waits_for_the_next_period() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    mesh.stop("bob")
    cap = mesh.configs["alice"].message.max_messages_per_period
    sent = [mesh.nodes["alice"].send_message(mesh.peer_id("bob"), f"m{i}", now=mesh.now)
            for i in range(cap + 20)]  # fmt: skip
    mesh.run()
    assert len(mesh.nodes["alice"].store) == cap
    period = mesh.configs["alice"].message.period_s
    mesh.advance((mesh.now // period + 1) * period - mesh.now + 1)
    assert len(mesh.nodes["alice"].store) == cap + 20
    mesh.start("bob")
    mesh.connect("alice", "bob")
    assert len(mesh.of_type("bob", MessageReceived)) == len(sent)


def test_a_full_outbox_refuses_a_send_without_leaving_half_a_message() -> None:
    mesh = Mesh(["alice", "bob"], config=NodeConfig(store=StoreConfig(max_store_envelopes=5)))
    mesh.befriend("alice", "bob", pair=True)
    mesh.stop("bob")
    sent = [mesh.nodes["alice"].send_message(mesh.peer_id("bob"), f"m{i}", now=mesh.now)
            for i in range(5)]  # fmt: skip
    with pytest.raises(LocalProtocolError, match="outbox full"):
        mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "one too many", now=mesh.now)
    assert len(mesh.nodes["alice"].conversations) == 5
    mesh.start("bob")
    mesh.connect("alice", "bob")
    mesh.advance(5)
    assert sorted(r.message_id for r in mesh.of_type("bob", MessageReceived)) == sorted(sent)
    assert all(statuses(mesh, "alice", m)[-1] is MessageStatus.DELIVERED for m in sent)


def test_mail_for_a_contact_never_met_expires_on_time() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob")  # never paired: the message is never sealed
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "too late", now=mesh.now, ttl_s=600)
    mesh.advance(601)
    assert statuses(mesh, "alice", mid) == [MessageStatus.EXPIRED]
    mesh.stop("alice")
    mesh.start("alice")
    mesh.connect("alice", "bob")  # pairing does not seal an expired message
    assert mesh.of_type("bob", MessageReceived) == []


def test_mail_waiting_for_room_in_a_full_outbox_goes_once_room_frees() -> None:
    mesh = Mesh(["alice", "carol"], config=NodeConfig(store=StoreConfig(max_store_envelopes=12)))
    mesh.befriend("alice", "carol")  # not paired: carol's messages wait unsealed
    sent = [mesh.nodes["carol"].send_message(mesh.peer_id("alice"), f"m{i}", now=mesh.now)
            for i in range(25)]  # fmt: skip
    mesh.connect("alice", "carol")  # pairing seals 12; the rest find the outbox full
    mesh.advance(3)  # deliveries free room: the rest are sealed and go at the same meeting
    assert sorted(r.message_id for r in mesh.of_type("alice", MessageReceived)) == sorted(sent)
