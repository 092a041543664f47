"""A purge token of mail we opened leaves the node only once its opening is durable (#17).

Opening mail addressed to us reveals its purge token; carriers shown the token drop their
copies. Sent before the Persist that records the opening commits, a crash in between left
peers without the copies of mail whose delivery was never made durable.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshmsg.config import MessageLimits
from meshmsg.core.driver import apply_persist
from meshmsg.core.effects import Persist
from meshmsg.core.events import DropReason, EnvelopeDropped, MessageReceived
from meshmsg.core.node import Node
from tests.core.test_heal_crash import CrashMesh
from tests.helpers import DictSink, Mesh


class SlowDiskMesh(Mesh):
    """A Mesh whose ``slow`` nodes' Persists wait in ``held`` until :meth:`commit_held`."""

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__(names)
        self.slow: set[str] = set()
        self.held: dict[str, list[Persist]] = {}
        self.purges_sent: dict[str, int] = {}

    def _carry_out(self, name: str, node: Node, effect: object) -> None:
        if isinstance(effect, Persist) and name in self.slow:
            self.held.setdefault(name, []).append(effect)
            return
        super()._carry_out(name, node, effect)

    def commit_held(self, name: str) -> None:
        self.slow.discard(name)
        for effect in self.held.pop(name, []):
            apply_persist(effect, DictSink(self.persisted[name]))
            self.nodes[name].storage_committed(effect.token, now=self.now)
        self.run()


def relay_holds_a_copy(mesh: Mesh) -> None:
    """Alice sends to Bob; the relay takes copies and Alice stays in touch with neither."""
    mesh.befriend("alice", "bob", pair=True)
    mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "hi", now=mesh.now)
    mesh.run()
    mesh.connect("alice", "relay")
    mesh.disconnect("alice", "relay")
    assert len(mesh.nodes["relay"].store) == 1


def purged(mesh: Mesh) -> int:
    drops = mesh.of_type("relay", EnvelopeDropped)
    return sum(1 for e in drops if e.reason is DropReason.PURGED)


def test_a_token_is_pushed_only_once_the_opening_is_committed() -> None:
    mesh = SlowDiskMesh(["alice", "relay", "bob"])
    relay_holds_a_copy(mesh)
    mesh.slow.add("bob")
    mesh.connect("alice", "bob")  # bob opens alice's copy; his disk has not confirmed it
    assert len(mesh.nodes["bob"].tombstones) == 1  # the token is known, in memory only
    mesh.connect("relay", "bob")  # the relay offers its copy: bob must not purge it yet
    assert purged(mesh) == 0, "purged by a token that is not durable"
    assert len(mesh.nodes["relay"].store) == 1
    mesh.commit_held("bob")  # now it is durable: pushed at once on the links that are up
    assert purged(mesh) == 1
    assert len(mesh.nodes["relay"].store) == 0


def test_a_crash_before_the_commit_leaves_the_relay_its_copy() -> None:
    """Bob opens the mail, the relay offers its copy, Bob is killed before his disk committed:
    restarted, Bob still gets the message from the relay (Alice is gone by then)."""
    mesh = CrashMesh(["alice", "relay", "bob"])
    relay_holds_a_copy(mesh)
    mesh.uncommitted.add("bob")
    mesh.connect("alice", "bob")
    mesh.connect("relay", "bob")
    assert [r.body for r in mesh.of_type("bob", MessageReceived)] == []  # never reported
    mesh.stop("alice")
    mesh.stop("bob")
    assert len(mesh.nodes["relay"].store) == 1
    mesh.uncommitted.discard("bob")
    mesh.start("bob")
    mesh.connect("relay", "bob")
    assert [r.body for r in mesh.of_type("bob", MessageReceived)] == ["hi"]
    # Bob took custody this time. A claim gets one copy and the relay keeps its own (it may be
    # a decoy's, core/exchange/claims.py); bob's token reaches it after the receipt hold.
    assert len(mesh.nodes["relay"].store) == 1
    mesh.advance(MessageLimits().receipt_hold_s + 1)
    assert len(mesh.nodes["relay"].store) == 0


def test_a_relayed_token_is_passed_on_only_once_it_is_committed() -> None:
    """Two carriers hold copies of Alice's mail, linked to each other. Bob, who opened it, tells
    r1; r1's disk has not confirmed the token yet, so r2 keeps its copy until it has."""
    mesh = SlowDiskMesh(["alice", "r1", "r2", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "hi", now=mesh.now)
    mesh.run()
    for carrier in ("r1", "r2"):
        mesh.connect("alice", carrier)
        mesh.disconnect("alice", carrier)
        assert len(mesh.nodes[carrier].store) == 1
    mesh.connect("alice", "bob")  # bob opens it; alice is told; the carriers are not
    mesh.disconnect("alice", "bob")
    mesh.connect("r1", "r2")  # both hold the same copy: nothing to exchange
    mesh.slow.add("r1")
    mesh.connect("bob", "r1")  # the token reaches r1, which drops its copy
    mesh.advance(1.0)  # timers flush every link: whatever r1 queued for r2 goes out
    assert len(mesh.nodes["r1"].store) == 0
    assert len(mesh.nodes["r2"].store) == 1, "r1 passed on a token it has not saved"
    mesh.commit_held("r1")  # durable now: pushed at once on the links that are up
    assert len(mesh.nodes["r2"].store) == 0
    [token] = list(mesh.nodes["r1"].tombstones)
    assert mesh.nodes["r2"].tombstones.by_id(token.item_id) is not None
