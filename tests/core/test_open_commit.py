"""Mail we carried and then found to be ours is deleted only with its opening, in one Persist.

An envelope we took custody of as a relay (its tag not yet known to us) turns out to be ours
when our tags change: we open it from our store and let the stored copy go. The driver commits
Persists in order but may cut a group commit anywhere between two of them, and a kill -9 can
land at that cut: had the delete been its own Persist ahead of the opening's, the envelope would
be gone from the disk while the opening never was written (#17, seed 3407782030 of the soak).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from meshmsg.config import NodeConfig
from meshmsg.core.driver import apply_persist
from meshmsg.core.effects import Persist, RecordKind
from meshmsg.core.envelope import envelope_id
from meshmsg.core.events import MessageReceived
from meshmsg.core.exchange.holdings import Holdings
from meshmsg.core.identity import ContactCard, Identity
from meshmsg.core.node import Node
from meshmsg.core.outbox import Outbox
from meshmsg.core.state import NodeState
from meshmsg.core.store import StoreItem, Tier
from meshmsg.sim.rng import SeededRng
from tests.core.node_tools import AttackMesh, own_envelopes
from tests.helpers import DictSink


class TornDiskMesh(AttackMesh):
    """An AttackMesh whose ``slow`` nodes' Persists wait in ``held``; :meth:`crash_after` commits
    a prefix of them in order and kills the node, as a kill -9 between two commits."""

    def __init__(self, names: Sequence[str], *, config: NodeConfig | None = None) -> None:
        super().__init__(names, config=config)
        self.slow: set[str] = set()
        self.held: dict[str, list[Persist]] = {}

    def _carry_out(self, name: str, node: Node, effect: object) -> None:
        if isinstance(effect, Persist) and name in self.slow:
            self.held.setdefault(name, []).append(effect)
            return
        super()._carry_out(name, node, effect)

    def crash_after(self, name: str, commits: int) -> None:
        """Commit the first ``commits`` of ``name``'s held Persists, in order, then kill it:
        the rest are lost, as at a kill -9 between two commits."""
        held = self.held.pop(name, [])
        assert commits <= len(held)
        self.slow.discard(name)
        for persist in held[:commits]:
            apply_persist(persist, DictSink(self.persisted[name]))
        self.stop(name)


def window_of_four() -> NodeConfig:
    base = NodeConfig()
    return base.replace(message=dataclasses.replace(base.message, tag_window=4))


def carried_then_opened(commits: int | None) -> tuple[TornDiskMesh, list[bytes], list[bytes]]:
    """Counters 4 and 5 reach Bob first, beyond his window of 4: he takes custody of them as a
    relay (committed, acknowledged). Counters 0-3 then slide his window over them and he opens
    them from his store, his disk holding back every commit. With ``commits``, he is killed
    after that many of them and restarted. Returns the mesh, the message ids and the envelopes.
    """
    mesh = TornDiskMesh(["alice", "bob"], config=window_of_four())
    mesh.befriend("alice", "bob", pair=True)
    mesh.stop("bob")
    sent = [mesh.nodes["alice"].send_message(mesh.peer_id("bob"), f"note {i}", now=mesh.now)
            for i in range(6)]  # fmt: skip
    envelopes = own_envelopes(mesh.nodes["alice"])
    mesh.start("bob")
    relay = mesh.inject("bob", mesh.stranger("relay"))
    relay.transfer(envelopes[4:])
    accepted, _ = relay.custody()
    assert accepted == {envelope_id(e) for e in envelopes[4:]}  # custody taken: durable here
    mesh.slow.add("bob")
    relay.transfer(envelopes[:4])
    assert not mesh.of_type("bob", MessageReceived)  # reported only once committed
    if commits is not None:
        mesh.crash_after("bob", commits)
        mesh.start("bob")
    return mesh, sent, envelopes


def test_a_carried_envelope_leaves_the_disk_only_with_its_opening() -> None:
    """Killed at any cut between his commits and restarted, Bob holds each envelope he took
    custody of, as the envelope or as its message (failed before the fix: with the commits cut
    just after the delete of counter 4's envelope, counter 4 was neither)."""
    mesh, _, _ = carried_then_opened(None)
    cuts = len(mesh.held["bob"])
    assert cuts >= 6  # four openings from the link, two from the store, and their deletes
    for commits in range(cuts + 1):
        mesh, sent, envelopes = carried_then_opened(commits)
        bob = mesh.nodes["bob"]
        held = {m.message_id for p in bob.conversations.peers()
                for m in bob.conversations.with_peer(p)}  # fmt: skip
        for counter in (4, 5):
            kept = envelope_id(envelopes[counter]) in bob.store or sent[counter] in held
            assert kept, f"counter {counter} lost with {commits} of {cuts} commits"


def first_contact_carried(commits: int | None) -> tuple[TornDiskMesh, bytes, bytes]:
    """Alice, whose clock runs two key periods ahead, writes to Bob by first contact (they never
    met); a relay hands it to Bob, who cannot recognise a tag that far ahead and carries it. A
    period later its tag is his: he opens it from his store, his disk holding back every commit,
    and with ``commits`` is killed after that many of them and restarted."""
    mesh = TornDiskMesh(["alice", "bob"])
    for who, whom in (("alice", "bob"), ("bob", "alice")):
        card = ContactCard(public=mesh.identities[whom].public, name=whom)
        mesh.nodes[who].add_contact(card, verified=False, now=mesh.now)
    mesh.run()
    ahead = mesh.now + 2 * mesh.configs["alice"].message.period_s
    sent = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "from ahead", now=ahead)
    mesh.run()
    [envelope] = own_envelopes(mesh.nodes["alice"])
    relay = mesh.inject("bob", mesh.stranger("relay"))
    relay.transfer([envelope])
    assert relay.custody()[0] == {envelope_id(envelope)}  # carried, custody taken
    relay.close()
    mesh.slow.add("bob")
    mesh.advance(mesh.configs["bob"].message.period_s)
    if commits is not None:
        mesh.crash_after("bob", commits)
        mesh.start("bob")
    return mesh, sent, envelope_id(envelope)


def test_first_contact_mail_carried_then_recognised_leaves_the_disk_only_with_its_opening() -> None:
    """The same for first contact (failed before the fix: the delete of the carried envelope
    was a Persist of its own, ahead of the opening's)."""
    mesh, sent, _ = first_contact_carried(None)
    received = [e.message_id for e in mesh.of_type("bob", MessageReceived)]
    assert received == []  # not before its commit
    cuts = len(mesh.held["bob"])
    assert cuts >= 1
    for commits in range(cuts + 1):
        mesh, sent, carried = first_contact_carried(commits)
        bob = mesh.nodes["bob"]
        kept = carried in bob.store or bob.conversations.get(sent) is not None
        assert kept, f"lost with {commits} of {cuts} commits"


def test_an_item_dropped_to_make_room_leaves_the_disk_too() -> None:
    """ONE mode's make_room drops carried items: each drop deletes its record, or a restart
    would bring back what the store let go (a merge of main had lost this delete)."""
    identity = Identity.generate(SeededRng(1, "identity"))
    config = NodeConfig()
    state = NodeState.empty(identity=identity, config=config, rng=SeededRng(1, "node"),
                            one_mode=True)  # fmt: skip
    out = Outbox(0.0)
    holdings = Holdings(state, out)
    size = config.store.max_store_bytes // 2
    for n in (1, 2):
        env_id = bytes([n]) * 16
        item = StoreItem(
            envelope_id=env_id, envelope=b"x" * 64, tag=bytes([n]) * 16, expiry_at=1e9,
            copies=1, hops=1, tier=Tier.STRANGER, source=b"p" * 16, received_at=0.0,
            one_size=size,
        )  # fmt: skip
        assert holdings.admit_item(item, 0.0)
    holdings.make_room(size)
    deletes: list[bytes] = []
    while (effect := out.next_effect()) is not None:
        if isinstance(effect, Persist):
            deletes += [key for kind, key in effect.deletes if kind is RecordKind.ENVELOPE]
    assert deletes, "make_room dropped items but deleted no record"
    assert all(key not in state.store for key in deletes)
