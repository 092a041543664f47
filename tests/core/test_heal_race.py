"""Mail for us that we first carried as a relay, because its tag was not yet known: sealed in
a new epoch that outran the sender's key share, or beyond the tag window when it arrived."""

from __future__ import annotations

import dataclasses

from meshmsg.config import NodeConfig
from meshmsg.core.effects import Transmit
from meshmsg.core.events import EnvelopeAccepted, MessageReceived
from tests.core.node_tools import AttackMesh, own_envelopes
from tests.helpers import Mesh


def frames(data: bytes) -> list[bytes]:
    """Cut a byte stream into its length-prefixed frames (prefix included)."""
    out, at = [], 0
    while at < len(data):
        end = at + 2 + int.from_bytes(data[at : at + 2], "big")
        out.append(data[at:end])
        at = end
    return out


class HoldingMesh(Mesh):
    """A Mesh that can let the first frames of one link direction through and hold the rest."""

    def __init__(self, names: list[str], config: NodeConfig | None = None) -> None:
        super().__init__(names, config=config)
        self.passing: dict[tuple[str, int], int] = {}  # (sender, link) -> frames still let through
        self.held: list[tuple[str, int, bytes]] = []  # (receiver, link, frame)

    def hold_after(self, sender: str, frames_through: int) -> None:
        """The next link ``sender`` opens lets ``frames_through`` frames pass, then holds."""
        self.passing[(sender, self._next_link)] = frames_through

    def release(self) -> None:
        held, self.held = self.held, []
        for name, link, frame in held:
            self.nodes[name].receive_data(link, frame, now=self.now)
        self.run()

    def _carry_out(self, name: str, node: object, effect: object) -> None:
        key = (name, effect.link) if isinstance(effect, Transmit) else None
        if key is None or key not in self.passing or key not in self.links:
            super()._carry_out(name, node, effect)  # type: ignore[arg-type]
            return
        other, link = self.links[key]
        for frame in frames(effect.data):  # type: ignore[union-attr]
            if self.passing[key] > 0:
                self.passing[key] -= 1
                self.nodes[other].receive_data(link, frame, now=self.now)
            else:
                self.held.append((other, link, frame))


def test_mail_of_the_new_epoch_that_outruns_the_key_share_is_opened_at_the_heal() -> None:
    mesh = HoldingMesh(["alice", "bob", "carol"])
    mesh.befriend("alice", "bob", pair=True)
    # Alice's handshake messages 1 and 3 reach Bob; her KeyExchange and all after it wait.
    mesh.hold_after("alice", frames_through=2)
    mesh.connect("alice", "bob")
    assert mesh.held, "alice's key share should be held back"
    # Bob's share reached Alice: she healed, so her new mail is sealed in the new epoch.
    message_id = mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "fresh keys", now=mesh.now)
    mesh.connect("alice", "carol")
    mesh.connect("carol", "bob")  # Bob cannot recognise the tag yet: he carries it as a relay
    carried = [e for e in mesh.of_type("bob", EnvelopeAccepted) if not e.for_us]
    assert len(carried) == 1
    assert not mesh.of_type("bob", MessageReceived)
    mesh.release()  # Alice's share arrives: Bob heals and finds the mail in his own store
    received = mesh.of_type("bob", MessageReceived)
    assert [(r.message_id, r.body) for r in received] == [(message_id, "fresh keys")]


def test_mail_carried_before_the_window_reached_it_opens_when_the_window_slides() -> None:
    """Counters 4 and 5 arrive first, from a relay, outside Bob's window of 4: he carries them.
    Counters 0-3 then slide the window over them: he must open them from his store at once,
    not at some later meeting (another copy would be 'had' and never taken again)."""
    base = NodeConfig()
    config = base.replace(message=dataclasses.replace(base.message, tag_window=4))
    mesh = AttackMesh(["alice", "bob"], config=config)
    mesh.befriend("alice", "bob", pair=True)
    mesh.stop("bob")
    sent = [
        mesh.nodes["alice"].send_message(mesh.peer_id("bob"), f"note {i}", now=mesh.now)
        for i in range(6)
    ]
    envelopes = own_envelopes(mesh.nodes["alice"])  # sealed in counter order
    assert len(envelopes) == 6
    mesh.start("bob")
    relay = mesh.inject("bob", mesh.stranger("relay"))
    relay.transfer(envelopes[4:])
    assert not mesh.of_type("bob", MessageReceived)  # beyond the window: carried, not opened
    relay.transfer(envelopes[:4])
    received = {r.message_id for r in mesh.of_type("bob", MessageReceived)}
    assert received == set(sent)
