"""Adversarial tools over the in-memory Mesh: hand-driven links, stolen states, key searches.

* :class:`AttackMesh` is a :class:`~tests.helpers.Mesh` that can also join an :class:`Injector`
  (a bare :class:`~meshmsg.core.link.Link` with a real identity, driven by the test) to any node,
  and rebuild a *clone* of a node from a copy of its committed records (a stolen device).
* :func:`opens_with_any_key` is the brute-force check of forward secrecy: it tries every
  32-byte window of a stolen state as a period key (for the first counters) and as a message
  key, so it does not depend on how the state is laid out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from meshmsg.config import MessageLimits, NodeConfig
from meshmsg.core.effects import CloseLink, RecordKind, StoredRecord, Transmit
from meshmsg.core.envelope import open_envelope, parse_envelope
from meshmsg.core.events import Event
from meshmsg.core.identity import Identity
from meshmsg.core.keyschedule import message_key
from meshmsg.core.link import Link, LinkState, PeerHandshake, PeerVerdict
from meshmsg.core.node import Node
from meshmsg.core.records import SESSION_RECORDS, Custody, Hello, IdentityProof, Transfer
from meshmsg.core.wire import Record
from meshmsg.errors import InvalidMessage
from meshmsg.sim.rng import SeededRng
from tests.helpers import Mesh

Persisted = dict[tuple[RecordKind, bytes], bytes]


class Injector:
    """A peer the test drives by hand: it completes the handshake, then sends what it is told.

    It never reconciles or answers anything; it records what the node sends back.
    """

    def __init__(self, mesh: AttackMesh, target: str, identity: Identity, link_id: int) -> None:
        self.mesh = mesh
        self.target = target
        self.link_id = link_id
        self.closed = False
        self.received: list[Record] = []
        self.link = Link(
            initiator=True, static_private=identity.noise_private, config=mesh.configs[target],
            rng=SeededRng(link_id, "injector"), now=mesh.now,
            handshake_records=[Hello(version=1, capabilities=(1,), agent="injector"),
                               IdentityProof(public=identity.public.to_bytes())],
            decide=self._decide, registry=SESSION_RECORDS,
        )  # fmt: skip

    @staticmethod
    def _decide(_: PeerHandshake) -> PeerVerdict:
        return PeerVerdict.STRANGER

    @property
    def node(self) -> Node:
        return self.mesh.nodes[self.target]

    @property
    def up(self) -> bool:
        return not self.closed and self.link.state is LinkState.ESTABLISHED

    def feed(self, data: bytes) -> None:
        """Bytes the node transmitted to us."""
        if self.link.state is LinkState.CLOSED:
            return
        self.received.extend(self.link.receive_data(data, self.mesh.now))
        self.flush()

    def flush(self) -> None:
        out = self.link.data_to_send(self.mesh.now)
        if out and not self.closed:
            self.node.receive_data(self.link_id, out, now=self.mesh.now)

    def send(self, records: Sequence[Record]) -> None:
        self.link.send(records)
        self.flush()
        self.mesh.run()

    def transfer(self, envelopes: Iterable[bytes], *, batch: int = 200) -> None:
        """Push envelopes as unsolicited Transfer records, ``batch`` per send."""
        pending = [Transfer(envelope=e, copies=1, hops=1, route_hint=None) for e in envelopes]
        for start in range(0, len(pending), batch):
            self.send(pending[start : start + batch])

    def custody(self) -> tuple[set[bytes], set[bytes]]:
        """Every envelope id the node accepted and refused on this link so far."""
        accepted: set[bytes] = set()
        refused: set[bytes] = set()
        for record in self.received:
            if isinstance(record, Custody):
                accepted.update(record.accepted)
                refused.update(record.refused)
        return accepted, refused

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.mesh.injectors.pop((self.target, self.link_id), None)
            if self.target in self.mesh.nodes:
                self.node.link_lost(self.link_id, now=self.mesh.now)
            self.mesh.run()


class AttackMesh(Mesh):
    """A Mesh that also carries traffic between nodes and injectors, and clones nodes."""

    def __init__(
        self, names: Sequence[str], *, seed: int = 1, config: NodeConfig | None = None,
        configs: dict[str, NodeConfig] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(names, seed=seed, config=config, configs=configs)
        self.injectors: dict[tuple[str, int], Injector] = {}

    def stop(self, name: str) -> None:
        for (target, link_id), injector in list(self.injectors.items()):
            if target == name:
                injector.closed = True
                del self.injectors[(target, link_id)]
        super().stop(name)

    def inject(self, target: str, identity: Identity) -> Injector:
        """Open a link from a hand-driven peer with ``identity`` to ``target``; handshake it."""
        link_id = self._next_link
        self._next_link += 1
        injector = Injector(self, target, identity, link_id)
        self.injectors[(target, link_id)] = injector
        self.nodes[target].link_opened(link_id, initiator=False, now=self.now)
        injector.flush()
        self.run()
        assert injector.up, "the node refused the injector's handshake"
        return injector

    def stranger(self, label: str) -> Identity:
        return Identity.generate(SeededRng(self.seed, f"stranger:{label}"))

    def clone(self, name: str, of: str, records: Persisted) -> Node:
        """Build a node from a copy of ``of``'s committed records (with ``of``'s identity)."""
        self.identities[name] = self.identities[of]
        self.configs[name] = self.configs[of]
        self.persisted[name] = dict(records)
        self.events[name] = []
        self.nodes[name] = self._build(name)
        self.run()
        return self.nodes[name]

    def _carry_out(self, name: str, node: Node, effect: object) -> None:
        if isinstance(effect, Transmit | CloseLink):
            injector = self.injectors.get((name, effect.link))
            if injector is not None:
                if isinstance(effect, Transmit):
                    injector.feed(effect.data)
                else:
                    injector.closed = True
                    del self.injectors[(name, effect.link)]
                return
        super()._carry_out(name, node, effect)


def own_envelopes(node: Node) -> list[bytes]:
    """The envelope bytes of every item in a node's store, oldest first (what it sends)."""
    return [item.envelope for item in node.store.items()]


def events_of(mesh: Mesh, name: str, kind: type) -> list[Event]:
    return [e for e in mesh.events[name] if isinstance(e, kind)]


def stolen_records(persisted: Persisted) -> list[StoredRecord]:
    return [StoredRecord(kind=k, key=key, value=v) for (k, key), v in persisted.items()]


def opens_with_any_key(
    state: Iterable[bytes], envelope: bytes, limits: MessageLimits, *, counters: int = 4
) -> bool:
    """True if any 32-byte window of ``state`` opens ``envelope``: used as a message key, or
    as a period chain key for counters ``0 .. counters - 1``."""
    parsed = parse_envelope(envelope, buckets=limits.envelope_size_buckets)
    for blob in state:
        for offset in range(len(blob) - 31):
            key = blob[offset : offset + 32]
            for candidate in [key, *(message_key(key, c) for c in range(counters))]:
                try:
                    open_envelope(parsed, candidate, limits)
                except InvalidMessage:
                    continue
                return True
    return False


def notes_beyond_a_window(config: NodeConfig) -> tuple[AttackMesh, list[bytes], Node]:
    """Alice's six notes to bob, sealed while he is away, with bob's tag window set to 4 (so
    counters 4 and 5 lie beyond it); returns the mesh, her envelopes in counter order and bob,
    started again, not linked."""
    config = config.replace(message=dataclasses.replace(config.message, tag_window=4))
    mesh = AttackMesh(["alice", "bob"], config=config)
    mesh.befriend("alice", "bob", pair=True)
    mesh.stop("bob")
    for n in range(6):
        mesh.nodes["alice"].send_message(mesh.peer_id("bob"), f"note {n}", now=mesh.now)
    envelopes = own_envelopes(mesh.nodes["alice"])
    return mesh, envelopes, mesh.start("bob")


def prompt_returns(config: NodeConfig | None = None) -> NodeConfig:
    """``config`` whose relayed mail's receipts and purge tokens go back on the delivering
    relay's link at once (``privacy.prompt_receipts``): for tests of what those carry, not of
    when (tests/core/test_receipt_holds.py and test_claims.py test the hold)."""
    from meshmsg.app.datadir import relayed_receipts_after

    return relayed_receipts_after(config or NodeConfig(), 2.0)


class OneMesh(Mesh):
    """A Mesh of ONE-mode nodes (the simulator's comparison with the ONE)."""

    def _build(self, name: str) -> Node:
        return Node(identity=self.identities[name], config=self.configs[name],
                    rng=SeededRng(self.seed, f"node:{name}"), now=self.now,
                    one_mode=True)  # fmt: skip


def backlog_delivered(config: NodeConfig, count: int = 300) -> tuple[Mesh, list[bytes]]:
    """Alice writes ``count`` messages to offline bob (past his 64-counter tag window), then
    the two meet once for 5 s: the mesh and the message ids sent."""
    mesh = Mesh(["alice", "bob"], config=config)
    mesh.befriend("alice", "bob", pair=True)
    mesh.stop("bob")
    sent = [mesh.nodes["alice"].send_message(mesh.peer_id("bob"), f"m{i}", now=mesh.now)
            for i in range(count)]  # fmt: skip
    mesh.start("bob")
    mesh.connect("alice", "bob")
    mesh.advance(5)
    return mesh, sent
