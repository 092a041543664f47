"""A purge token of an earlier sealing still marks resealed mail delivered (#17, soak).

Mail waiting in more older epochs than the recipient is sure to keep is sealed again at a
meeting's heal (exchange/keys.py ``_reseal_beyond_retention``), and the earlier envelope leaves
the sender's store. A relay may still carry the earlier copy, and the recipient may open that
one first: its purge token then names a tag the sender no longer holds. Before the fix the token
marked nothing, the sender waited for the delivered receipt (30-300 s for relayed mail), and
its later copy travelled on until it expired.
"""

from __future__ import annotations

from meshmsg.config import MessageLimits
from meshmsg.core.conversations import Conversations, StoredMessage
from meshmsg.core.events import MessageReceived, MessageStatus, MessageStatusChanged
from tests.core.node_tools import prompt_returns
from tests.core.test_epoch_churn_mail import short_meeting
from tests.core.test_heal_race import HoldingMesh

KEEP = MessageLimits().max_epochs_retained - 2  # older epochs whose mail is not sealed again


def statuses(mesh: HoldingMesh, message_id: bytes) -> list[MessageStatus]:
    return [e.status for e in mesh.of_type("alice", MessageStatusChanged)
            if e.message_id == message_id]  # fmt: skip


def resealed_mail_carried_by_carol() -> tuple[HoldingMesh, bytes, bytes]:
    """alice's first message sealed in epoch 0, a copy handed to carol, then sealed again in a
    later epoch by short meetings with bob; returns the mesh, the message and its first envelope."""
    mesh = HoldingMesh(["alice", "bob", "carol"], config=prompt_returns())
    mesh.befriend("alice", "bob", pair=True)
    mesh.befriend("alice", "carol")
    mesh.befriend("bob", "carol")
    alice, bob = mesh.nodes["alice"], mesh.peer_id("bob")
    first = alice.send_message(bob, "sealed in epoch 0", now=mesh.now)
    mesh.connect("alice", "carol")  # carol takes a copy of it
    mesh.disconnect("alice", "carol")
    message = alice.conversations.get(first)
    assert message is not None
    assert message.envelope_id is not None
    earlier = message.envelope_id
    assert earlier in mesh.nodes["carol"].store, "carol should carry the first sealing"
    for i in range(KEEP + 1):
        short_meeting(mesh)  # each heals into a new epoch; bob receives nothing
        alice.send_message(bob, f"sealed in epoch {i + 1}", now=mesh.now)
    assert message.envelope_id != earlier, "the first message should have been sealed again"
    assert earlier not in alice.store
    return mesh, first, earlier


def test_the_token_of_the_earlier_copy_marks_resealed_mail_delivered() -> None:
    mesh, first, earlier = resealed_mail_carried_by_carol()
    assert earlier in mesh.nodes["carol"].store  # the copy bob will open
    alice = mesh.nodes["alice"]
    later = alice.conversations.get(first).envelope_id  # type: ignore[union-attr]
    mesh.connect("bob", "carol")  # bob opens the earlier copy; its token goes to carol
    assert [r.message_id for r in mesh.of_type("bob", MessageReceived)] == [first]
    mesh.disconnect("bob", "carol")
    assert MessageStatus.DELIVERED not in statuses(mesh, first)
    mesh.connect("alice", "carol")  # the token reaches alice; no time passes: no receipt yet
    assert MessageStatus.DELIVERED in statuses(mesh, first)
    assert later not in alice.store, "the later copy, already read, should stop travelling"


def test_a_token_for_a_tag_never_sealed_marks_nothing() -> None:
    """The table answers only for tags we sealed: a stranger's token is not a delivery."""
    mesh, first, earlier = resealed_mail_carried_by_carol()
    conversations = mesh.nodes["alice"].conversations
    assert conversations.by_superseded_tag(b"\x00" * 16) is None
    message = conversations.get(first)
    assert message is not None
    carried = mesh.nodes["carol"].store.get(earlier)
    assert carried is not None
    assert conversations.by_superseded_tag(carried.tag) is message
    # Delivered by other means, the earlier tag is forgotten (no token of it is awaited).
    conversations.advance(message, MessageStatus.DELIVERED, mesh.now)
    assert conversations.by_superseded_tag(carried.tag) is None


def test_a_message_delivered_while_it_waits_to_be_sealed_again_is_not_sealed_again() -> None:
    """The earlier copy's token can come while the message waits, unsealed, for the channel's
    budget: it is delivered, and nothing seals it a third time."""
    conversations = Conversations()
    waiting = StoredMessage(message_id=b"m" * 16, peer_id=b"p" * 16, outgoing=True, body="x",
                            sent_at=0.0, expiry_at=100.0, sealed=False)  # fmt: skip
    conversations.add(waiting)
    assert conversations.unsealed_for(b"p" * 16) == [waiting]
    assert conversations.advance(waiting, MessageStatus.DELIVERED, 1.0)
    assert conversations.unsealed_for(b"p" * 16) == []
