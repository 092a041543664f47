"""A crash (kill -9) around a heal loses no mail: what a heal tells the peer waits for its commit,
and what was sealed in an epoch the peer never had is sealed again, receipts included.

Found by ``tests/net/test_kill9.py`` under load: an own message stayed RELAYED (the receiver
carried it as a relay, its tag unknown) or SENT (its delivered receipt unreadable) for ever.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshmsg.core import codec
from meshmsg.core.effects import Persist, RecordKind
from meshmsg.core.events import MessageReceived, MessageStatus, MessageStatusChanged
from meshmsg.core.node import Node
from tests.core.test_node import LossyMesh
from tests.helpers import Mesh


class CrashMesh(Mesh):
    """A Mesh whose ``uncommitted`` nodes never get their writes committed: everything they do
    reaches the wire (what is not held for a commit) but is lost at :meth:`stop`, as a node
    killed before its storage committed."""

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__(names)
        self.uncommitted: set[str] = set()

    def _carry_out(self, name: str, node: Node, effect: object) -> None:
        if isinstance(effect, Persist) and name in self.uncommitted:
            return
        super()._carry_out(name, node, effect)


def statuses(mesh: Mesh, name: str, message_id: bytes) -> list[MessageStatus]:
    return [e.status for e in mesh.of_type(name, MessageStatusChanged)
            if e.message_id == message_id]  # fmt: skip


def epoch(mesh: Mesh, name: str, of: str) -> int:
    channel = mesh.nodes[name].contacts.require(mesh.peer_id(of)).channel
    assert channel is not None
    return channel.epoch


def test_a_heal_is_confirmed_only_once_it_is_durable() -> None:
    """Alice heals at a meeting and is killed before the new epoch is committed. Her KeyConfirm
    must not have gone: it tells Bob she left the old epoch, and Bob trims it to the counts her
    share reported. Restarted in the old epoch, she seals the next counter in it."""
    mesh = CrashMesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    first = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "first", now=mesh.now)
    mesh.run()
    mesh.uncommitted.add("alice")
    mesh.connect("alice", "bob")  # heal, and "first" goes; none of alice's writes commit
    assert epoch(mesh, "alice", "bob") == epoch(mesh, "bob", "alice") == 1
    mesh.stop("alice")
    mesh.uncommitted.discard("alice")
    mesh.start("alice")
    assert epoch(mesh, "alice", "bob") == 0  # back in the epoch she had left
    second = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "second", now=mesh.now)
    mesh.run()
    mesh.connect("alice", "bob")
    mesh.advance(5)
    assert [r.body for r in mesh.of_type("bob", MessageReceived)] == ["first", "second"]
    for mid in (first, second):
        assert statuses(mesh, "alice", mid)[-1] is MessageStatus.DELIVERED
    assert len(mesh.nodes["bob"].store) == 0  # nothing carried as a relay for want of a tag


def test_receipts_sealed_in_an_epoch_the_peer_lost_in_a_crash_are_owed_again() -> None:
    """Bob healed and committed; Alice healed too but was killed first. While she is down, Bob
    seals his delivered receipt in the new epoch. Restarted in the old one, Alice cannot open
    it: at the next heal Bob abandons that epoch and must owe the receipt again, or her message
    stays SENT for ever (its copy was dropped when Bob took custody)."""
    mesh = CrashMesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "hello", now=mesh.now)
    mesh.run()
    mesh.uncommitted.add("alice")
    mesh.connect("alice", "bob")
    assert [r.message_id for r in mesh.of_type("bob", MessageReceived)] == [mid]
    mesh.stop("alice")
    mesh.uncommitted.discard("alice")
    mesh.advance(5)  # Bob's receipt batch, sealed in the epoch Alice lost
    assert len(mesh.nodes["bob"].store) == 1
    mesh.start("alice")
    assert epoch(mesh, "alice", "bob") < epoch(mesh, "bob", "alice")
    mesh.connect("alice", "bob")
    mesh.advance(5)
    assert statuses(mesh, "alice", mid)[-1] is MessageStatus.DELIVERED
    assert [r.message_id for r in mesh.of_type("bob", MessageReceived)] == [mid]  # once
    meta = [key for kind, key in mesh.persisted["bob"] if kind is RecordKind.META]
    assert not [key for key in meta if key.startswith(codec.RECEIPT_KEY)]  # none still owed
    # Sealed again in the epoch the heal agreed on: remembered until a heal shows it readable.
    now_in = epoch(mesh, "bob", "alice")
    assert meta == [codec.sealed_receipt_key(mesh.peer_id("alice"), now_in, 0, mid)]


def test_receipts_sealed_in_an_epoch_only_we_healed_into_are_owed_again() -> None:
    """The same without a crash: the link drops after Bob's heal, before Alice got his share."""
    mesh = LossyMesh(["alice", "bob"])
    mesh.befriend("alice", "bob")
    mesh.connect("alice", "bob")  # pair
    mid = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "hello", now=mesh.now)
    mesh.run()
    mesh.disconnect("alice", "bob")  # before Bob's receipt batch
    mesh.mute["bob"] = 1  # Bob's handshake reply goes out, then nothing: Alice never heals
    mesh.connect("alice", "bob")
    mesh.disconnect("alice", "bob")
    del mesh.mute["bob"]
    assert epoch(mesh, "alice", "bob") < epoch(mesh, "bob", "alice")
    mesh.advance(5)  # Bob seals the receipt in his lonely epoch
    mesh.connect("alice", "bob")
    mesh.advance(5)
    assert statuses(mesh, "alice", mid)[-1:] == [MessageStatus.DELIVERED]
