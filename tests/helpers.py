"""Test helpers shared across the suite: in-memory link pairs and node meshes in virtual time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import nacl.bindings

from meshmsg.config import NodeConfig
from meshmsg.core.link import Link, LinkState, PeerHandshake, PeerVerdict
from meshmsg.core.records import LINK_RECORDS, Hello
from meshmsg.core.wire import Record
from meshmsg.sim.rng import SeededRng


def static_keypair(rng: SeededRng) -> tuple[bytes, bytes]:
    private = rng.randbytes(32)
    return private, nacl.bindings.crypto_scalarmult_base(private)


@dataclass
class LinkPair:
    """Two :class:`Link` objects joined in memory; the test advances virtual time itself.

    ``transcript`` keeps every chunk moved, as (sender, bytes), for tamper and replay tests.
    """

    initiator: Link
    responder: Link
    now: float = 0.0
    received: dict[str, list[Record]] = field(default_factory=lambda: {"i": [], "r": []})
    transcript: list[tuple[str, bytes]] = field(default_factory=list)
    seen_peers: dict[str, PeerHandshake] = field(default_factory=dict)
    statics: dict[str, bytes] = field(default_factory=dict)  # each side's Noise public key

    @classmethod
    def create(
        cls,
        *,
        seed: int = 7,
        config: NodeConfig | None = None,
        responder_config: NodeConfig | None = None,
        verdicts: tuple[PeerVerdict, PeerVerdict] = (PeerVerdict.CONTACT, PeerVerdict.CONTACT),
        records: Sequence[Record] = (),
    ) -> LinkPair:
        config = config or NodeConfig()
        rng = SeededRng(seed, "linkpair")
        i_priv, i_pub = static_keypair(rng)
        r_priv, r_pub = static_keypair(rng)
        hello = [Hello(version=1, capabilities=(1,), agent="test"), *records]
        pair: LinkPair

        def decider(side: str, verdict: PeerVerdict):  # type: ignore[no-untyped-def]
            def decide(peer: PeerHandshake) -> PeerVerdict:
                pair.seen_peers[side] = peer
                return verdict

            return decide

        initiator = Link(
            initiator=True, static_private=i_priv, config=config, rng=rng, now=0.0,
            handshake_records=hello, decide=decider("i", verdicts[0]), registry=LINK_RECORDS,
        )  # fmt: skip
        responder = Link(
            initiator=False, static_private=r_priv, config=responder_config or config, rng=rng,
            now=0.0, handshake_records=hello, decide=decider("r", verdicts[1]),
            registry=LINK_RECORDS,
        )  # fmt: skip
        pair = cls(initiator=initiator, responder=responder, statics={"i": i_pub, "r": r_pub})
        return pair

    def side(self, name: str) -> Link:
        return self.initiator if name == "i" else self.responder

    def transfer(self, max_rounds: int = 20) -> int:
        """Move bytes both ways until quiet; return the number of chunks moved."""
        moved = 0
        for _ in range(max_rounds):
            progress = False
            for src, dst in (("i", "r"), ("r", "i")):
                data = self.side(src).data_to_send(self.now)
                if data and self.side(dst).state is not LinkState.CLOSED:
                    self.transcript.append((src, data))
                    self.received[dst].extend(self.side(dst).receive_data(data, self.now))
                    moved += 1
                    progress = True
            if not progress:
                return moved
        raise AssertionError("links did not go quiet")

    def establish(self) -> LinkPair:
        self.transfer()
        assert self.initiator.state is LinkState.ESTABLISHED
        assert self.responder.state is LinkState.ESTABLISHED
        return self


# ----------------------------------------------------------------------------------- meshes

from meshmsg.core.driver import apply_persist  # noqa: E402
from meshmsg.core.effects import (  # noqa: E402
    CloseLink,
    DeleteChunks,
    Dial,
    LoadChunk,
    LoadEnvelope,
    Persist,
    RecordKind,
    StoreChunk,
    StoredRecord,
    Transmit,
)
from meshmsg.core.events import Event  # noqa: E402
from meshmsg.core.identity import ContactCard, Identity  # noqa: E402
from meshmsg.core.node import Node  # noqa: E402
from meshmsg.core.offlinepair import pair_offline  # noqa: E402

T0 = 1_800_000_000.0  # a realistic wall-clock epoch: key periods are days since 1970


class DictSink:
    """A ``core.driver.RecordSink`` over a dict of committed records, for ``apply_persist``."""

    def __init__(self, records: dict[tuple[RecordKind, bytes], bytes]) -> None:
        self.records = records

    def put(self, kind: RecordKind, key: bytes, value: bytes) -> None:
        self.records[(kind, key)] = value

    def delete(self, kind: RecordKind, key: bytes) -> None:
        self.records.pop((kind, key), None)


class Mesh:
    """Several real Nodes joined by in-memory links, in virtual time.

    Persist effects are committed at once into a per-node dict (so :meth:`restart` rebuilds a
    node from exactly what it committed); Transmit effects are delivered to the other end of the
    link in order. ``events[name]`` collects every event.
    """

    def __init__(self, names: Sequence[str], *, seed: int = 1, config: NodeConfig | None = None,
                 configs: dict[str, NodeConfig] | None = None) -> None:  # fmt: skip
        self.now = T0
        self.seed = seed
        self.configs = {n: (configs or {}).get(n, config or NodeConfig()) for n in names}
        self.identities = {n: Identity.generate(SeededRng(seed, f"identity:{n}")) for n in names}
        self.persisted: dict[str, dict[tuple[RecordKind, bytes], bytes]] = {n: {} for n in names}
        # Each node's chunk store ("disk"), kept across restarts; chunk writes counted.
        self.chunks: dict[str, dict[tuple[bytes, int], tuple[tuple[bytes, ...], bytes]]] = {
            n: {} for n in names
        }
        self.chunks_written: dict[str, int] = dict.fromkeys(names, 0)
        # Envelope bodies read back from the committed records (StoreConfig.bodies_on_disk).
        self.envelopes_loaded: dict[str, list[bytes]] = {n: [] for n in names}
        # Cut every link of a node once it has written this many more chunks (a contact ends).
        self.cut_after_chunks: dict[str, int] = {}
        self.events: dict[str, list[Event]] = {n: [] for n in names}
        self.nodes: dict[str, Node] = {}
        self.links: dict[tuple[str, int], tuple[str, int]] = {}  # (node, link) -> other end
        self._next_link = 1
        self._restarts = 0
        for name in names:
            self.nodes[name] = self._build(name)

    def _build(self, name: str) -> Node:
        records = [StoredRecord(kind=k, key=key, value=v)
                   for (k, key), v in self.persisted[name].items()]  # fmt: skip
        rng = SeededRng(self.seed, f"node:{name}:{self._restarts}")
        held: dict[bytes, list[int]] = {}
        for attachment_id, index in self.chunks.setdefault(name, {}):  # a clone has none yet
            held.setdefault(attachment_id, []).append(index)
        return Node(identity=self.identities[name], config=self.configs[name], rng=rng,
                    now=self.now, records=records, chunks=held)  # fmt: skip

    def peer_id(self, name: str) -> bytes:
        return self.identities[name].peer_id

    def befriend(self, a: str, b: str, *, verified: bool = True, pair: bool = False) -> None:
        for x, y in ((a, b), (b, a)):
            card = ContactCard(public=self.identities[y].public, name=y)
            self.nodes[x].add_contact(card, verified=verified, now=self.now)
        if pair:
            pair_offline(self.nodes[a], self.nodes[b], now=self.now)
        self.run()

    def connect(self, a: str, b: str) -> tuple[int, int]:
        la, lb = self._next_link, self._next_link + 1
        self._next_link += 2
        self.links[(a, la)] = (b, lb)
        self.links[(b, lb)] = (a, la)
        self.nodes[b].link_opened(lb, initiator=False, now=self.now)
        self.nodes[a].link_opened(la, initiator=True, now=self.now)
        self.run()
        return la, lb

    def disconnect(self, a: str, b: str) -> None:
        for (x, lx), (y, ly) in list(self.links.items()):
            if {x, y} == {a, b} and (x, lx) in self.links:
                del self.links[(x, lx)]
                del self.links[(y, ly)]
                self.nodes[x].link_lost(lx, now=self.now)
                self.nodes[y].link_lost(ly, now=self.now)
        self.run()

    def linked(self, a: str, b: str) -> bool:
        return any({x, y} == {a, b} for (x, _), (y, _) in self.links.items())

    def stop(self, name: str) -> None:
        """Crash a node: its links drop, its uncommitted state is lost."""
        for (x, lx), (y, ly) in list(self.links.items()):
            if name in (x, y) and (x, lx) in self.links:
                del self.links[(x, lx)]
                del self.links[(y, ly)]
                other, link = (y, ly) if x == name else (x, lx)
                self.nodes[other].link_lost(link, now=self.now)
        del self.nodes[name]
        self.run()

    def start(self, name: str) -> Node:
        self._restarts += 1
        self.nodes[name] = self._build(name)
        self.run()
        return self.nodes[name]

    def advance(self, seconds: float) -> None:
        """Move virtual time forward, firing every timer on the way."""
        end = self.now + seconds
        while True:
            due = [d for d in (n.next_deadline() for n in self.nodes.values()) if d is not None]
            nxt = min(due, default=end + 1)  # no deadline at all: nothing fires before the end
            if nxt > end:
                break
            self.now = max(self.now, nxt)
            for node in list(self.nodes.values()):
                deadline = node.next_deadline()
                if deadline is not None and deadline <= self.now:
                    node.handle_timer(now=self.now)
            self.run()
        self.now = end
        for node in self.nodes.values():
            node.handle_timer(now=self.now)
        self.run()

    def run(self, max_rounds: int = 10_000) -> None:
        for _ in range(max_rounds):
            progress = False
            for name, node in list(self.nodes.items()):
                while (event := node.next_event()) is not None:
                    self.events[name].append(event)
                effect = node.next_effect()
                while effect is not None:
                    progress = True
                    self._carry_out(name, node, effect)
                    if name not in self.nodes:
                        break
                    effect = node.next_effect()
                while (event := node.next_event()) is not None:
                    self.events[name].append(event)
            if not progress:
                return
        raise AssertionError("mesh did not go quiet")

    def _carry_out(self, name: str, node: Node, effect: object) -> None:
        match effect:
            case Transmit(link=link, data=data):
                other = self.links.get((name, link))
                # A link its receiver closed (its CloseLink still queued) drops the data, as
                # a closed socket would.
                receiver = None if other is None else self.nodes.get(other[0])
                if other is not None and receiver is not None and other[1] in receiver.sessions:
                    receiver.receive_data(other[1], data, now=self.now)
            case Persist(token=token):
                apply_persist(effect, DictSink(self.persisted[name]))
                node.storage_committed(token, now=self.now)
            case CloseLink(link=link):
                other = self.links.pop((name, link), None)
                if other is not None:
                    self.links.pop(other, None)
                    if other[0] in self.nodes:
                        self.nodes[other[0]].link_lost(other[1], now=self.now)
            case Dial():
                pass
            case StoreChunk() | LoadChunk() | DeleteChunks():
                self._chunk_effect(name, node, effect)
            case LoadEnvelope(envelope_id=envelope_id):
                self.envelopes_loaded.setdefault(name, []).append(envelope_id)
                value = self.persisted[name].get((RecordKind.ENVELOPE, envelope_id))
                node.envelope_loaded(envelope_id, value, now=self.now)
            case _:
                raise AssertionError(f"unknown effect {effect!r}")

    def _chunk_effect(self, name: str, node: Node, effect: object) -> None:
        disk = self.chunks.setdefault(name, {})
        match effect:
            case StoreChunk(attachment_id=aid, index=index, proof=proof, data=data):
                disk[(aid, index)] = (proof, data)
                self.chunks_written[name] = self.chunks_written.get(name, 0) + 1
                node.chunk_stored(aid, index, now=self.now)
                left = self.cut_after_chunks.get(name)
                if left is not None:
                    self.cut_after_chunks[name] = left - 1
                    if left <= 1:
                        del self.cut_after_chunks[name]
                        self._cut(name)
            case LoadChunk(link=link, attachment_id=aid, index=index):
                body = disk.get((aid, index))
                if body is None:
                    node.chunk_load_failed(link, aid, index, now=self.now)
                else:
                    node.chunk_loaded(link, aid, index, *body, now=self.now)
            case DeleteChunks(attachment_id=aid):
                for key in [k for k in disk if k[0] == aid]:
                    del disk[key]

    def _cut(self, name: str) -> None:
        for (x, lx), (y, ly) in list(self.links.items()):
            if name in (x, y) and (x, lx) in self.links:
                del self.links[(x, lx)]
                del self.links[(y, ly)]
                self.nodes[x].link_lost(lx, now=self.now)
                self.nodes[y].link_lost(ly, now=self.now)

    def of_type(self, name: str, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events[name] if isinstance(e, kind)]
