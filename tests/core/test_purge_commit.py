"""A purge token of mail we opened leaves the node only once its opening is durable (#17).

Opening mail addressed to us reveals its purge token; carriers shown the token drop their
copies. Sent before the Persist that records the opening commits, a crash in between left
peers without the copies of mail whose delivery was never made durable.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    assert len(mesh.nodes["relay"].store) == 0  # handed to bob, who took custody this time
