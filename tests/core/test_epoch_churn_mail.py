"""Own mail sealed in an epoch the recipient has since let go of is sealed again (#17).

Every meeting heals the channel into a new epoch, and a recipient keeps the receive keys of
``max_epochs_retained`` (4) epochs. Meetings that heal but end before the transfer (a flaky
link; in CI: a receiver killed -9 within a second of every restart, tests/net/test_kill9.py)
left mail sealed before them in an epoch the recipient had dropped: it took custody, found the
keys gone ("its key period has expired") and the sender showed DELIVERED for 66 lost messages.
"""

from __future__ import annotations

from meshmsg.config import MessageLimits
from meshmsg.core.events import ContactHealed, MessageReceived, UndecryptableMessage
from tests.core.test_heal_race import HoldingMesh

RETAINED = MessageLimits().max_epochs_retained


def short_meeting(mesh: HoldingMesh) -> None:
    """A meeting that heals (both key shares cross) and ends before any mail moves."""
    healed = len(mesh.of_type("bob", ContactHealed))
    mesh.hold_after("alice", frames_through=3)  # handshake 1 and 3, then Hello + KeyExchange
    mesh.connect("alice", "bob")
    assert len(mesh.of_type("bob", ContactHealed)) == healed + 1, "the meeting should heal"
    mesh.held.clear()  # what alice sent after her share dies with the link
    mesh.disconnect("alice", "bob")


def test_mail_of_more_epochs_than_the_recipient_keeps_arrives_whole() -> None:
    """A message sealed in each epoch, none delivered: more epochs with mail pending than the
    recipient retains. Before the fix the oldest ones arrived as "its key period has expired"."""
    mesh = HoldingMesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    alice, bob = mesh.nodes["alice"], mesh.peer_id("bob")
    sent = []
    for i in range(RETAINED + 2):
        sent.append(alice.send_message(bob, f"sealed in epoch {i}", now=mesh.now))
        short_meeting(mesh)
        assert mesh.of_type("bob", MessageReceived) == []
    mesh.connect("alice", "bob")
    mesh.run()
    assert mesh.of_type("bob", UndecryptableMessage) == []
    assert sorted(r.message_id for r in mesh.of_type("bob", MessageReceived)) == sorted(sent)
