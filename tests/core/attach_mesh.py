"""A tiny time-stepped mesh of attachment carriers for tests.

Each node is an :class:`AttachmentCarrier` with a fake host: records cross links through the
strict wire codec, the "disk" is a dict of chunk files, persisted records a dict. A link can be
cut after a given number of chunks, the way a contact's end cuts a transfer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from meshmsg.config import NodeConfig
from meshmsg.core.attach.assembly import AttachmentRef, ChunkOpener, Sealer
from meshmsg.core.attach.carrier import AttachmentCarrier
from meshmsg.core.attach.format import CHUNK_BYTES, chunk_count
from meshmsg.core.attach.records import (
    ATTACH_SESSION_RECORDS,
    AttachmentDoneState,
    AttachmentState,
    Chunk,
)
from meshmsg.core.effects import (
    ChunkEffect,
    DeleteChunks,
    LoadChunk,
    RecordKind,
    StoreChunk,
    StoredRecord,
)
from meshmsg.core.events import (
    AttachEvent,
)
from meshmsg.core.store import Tier
from meshmsg.core.wire import Record, RecordRegistry, decode_records, encode_record
from meshmsg.errors import CloseReason

REGISTRY = RecordRegistry(ATTACH_SESSION_RECORDS)
STORAGE = RecordRegistry([AttachmentState, AttachmentDoneState])
CONFIG = NodeConfig()


@dataclass
class FakeNode:
    name: str
    config: NodeConfig = CONFIG
    disk: dict[tuple[bytes, int], tuple[tuple[bytes, ...], bytes]] = field(default_factory=dict)
    records: dict[tuple[RecordKind, bytes], bytes] = field(default_factory=dict)
    outbox: list[tuple[int, bytes]] = field(default_factory=list)
    effects: list[ChunkEffect] = field(default_factory=list)
    events: list[AttachEvent] = field(default_factory=list)
    violations: list[tuple[int, CloseReason, str]] = field(default_factory=list)
    stored: int = 0  # chunks written, ever: counts re-sent chunks across restarts
    hold_stores: bool = False  # a disk that does not answer: StoreChunk effects wait
    served: int = 0  # chunks read for peers

    def __post_init__(self) -> None:
        self.peer_id = self.name.encode().ljust(16, b".")
        self.carrier = AttachmentCarrier(self.config, self)

    # --- AttachHost
    def send(self, link: int, record: Record) -> None:
        self.outbox.append((link, encode_record(record)))

    def violation(self, link: int, reason: CloseReason, detail: str) -> None:
        self.violations.append((link, reason, detail))

    def chunk_effect(self, effect: ChunkEffect) -> None:
        self.effects.append(effect)

    def attach_event(self, event: AttachEvent) -> None:
        self.events.append(event)

    def persist(
        self, puts: tuple[StoredRecord, ...], deletes: tuple[tuple[RecordKind, bytes], ...]
    ) -> None:
        for put in puts:
            self.records[(put.kind, put.key)] = put.value
        for key in deletes:
            self.records.pop(key, None)

    # --- the driver's side
    def run_effects(self, now: float) -> None:
        held = []
        while self.effects:
            effect = self.effects.pop(0)
            if self.hold_stores and isinstance(effect, StoreChunk):
                held.append(effect)
                continue
            if isinstance(effect, StoreChunk):
                self.disk[(effect.attachment_id, effect.index)] = (effect.proof, effect.data)
                self.stored += 1
                self.carrier.chunk_stored(effect.attachment_id, effect.index, now)
            elif isinstance(effect, LoadChunk):
                body = self.disk.get((effect.attachment_id, effect.index))
                if body is None:
                    self.carrier.chunk_load_failed(effect.link, effect.attachment_id, effect.index)
                else:
                    self.served += 1
                    self.carrier.chunk_loaded(
                        effect.link, effect.attachment_id, effect.index, *body
                    )
            elif isinstance(effect, DeleteChunks):
                for key in [k for k in self.disk if k[0] == effect.attachment_id]:
                    del self.disk[key]
        self.effects[:0] = held

    def restart(self) -> None:
        """A crash: memory is gone, the disk and the committed records remain."""
        states, done = [], []
        for (kind, _), value in self.records.items():
            (record,) = decode_records(value, STORAGE, self.config.wire)
            (states if kind is RecordKind.ATTACHMENT else done).append(record)
        held: dict[bytes, list[int]] = {}
        for attachment_id, index in self.disk:
            held.setdefault(attachment_id, []).append(index)
        self.outbox.clear()
        self.effects.clear()
        self.carrier = AttachmentCarrier(self.config, self)
        orphans = self.carrier.restore(states, done, held)  # type: ignore[arg-type]
        for attachment_id in orphans:
            for key in [k for k in self.disk if k[0] == attachment_id]:
                del self.disk[key]

    def chunks_of(self, attachment_id: bytes) -> set[int]:
        return {i for a, i in self.disk if a == attachment_id}


_next_link = iter(range(1, 1 << 30))


@dataclass
class Link:
    a: FakeNode
    b: FakeNode
    la: int = field(default_factory=lambda: next(_next_link))
    lb: int = field(default_factory=lambda: next(_next_link))
    open: bool = True


def meet(
    a: FakeNode, b: FakeNode, *, now: float = 0.0, cut_after: int | None = None,
    tier_ab: Tier = Tier.VERIFIED, tier_ba: Tier = Tier.VERIFIED, max_steps: int = 100_000,
) -> int:  # fmt: skip
    """Run one meeting until quiet or until ``cut_after`` chunks crossed; return chunks moved."""
    link = Link(a, b)
    a.carrier.link_up(link.la, b.peer_id, tier_ab)
    b.carrier.link_up(link.lb, a.peer_id, tier_ba)
    moved = 0
    for _ in range(max_steps):
        progressed = False
        for node, mine, other, theirs in ((a, link.la, b, link.lb), (b, link.lb, a, link.la)):
            node.run_effects(now)
            out = [(lk, data) for lk, data in node.outbox if lk == mine]
            node.outbox = [(lk, data) for lk, data in node.outbox if lk != mine]
            for _, data in out:
                (record,) = decode_records(data, REGISTRY, CONFIG.wire)
                if isinstance(record, Chunk):
                    if cut_after is not None and moved >= cut_after:
                        return _cut(link, moved)
                    moved += 1
                other.carrier.handle(theirs, record, now)
                progressed = True
            if node.violations:
                return _cut(link, moved)
        if not progressed and not a.effects and not b.effects:
            break
    return _cut(link, moved)


def _cut(link: Link, moved: int) -> int:
    link.a.carrier.link_down(link.la)
    link.b.carrier.link_down(link.lb)
    for node, mine in ((link.a, link.la), (link.b, link.lb)):
        node.outbox = [(lk, d) for lk, d in node.outbox if lk != mine]
        node.run_effects(0.0)  # writes already issued still complete (they are on disk)
    return moved


def sealed(
    sender: FakeNode, data: bytes, *, seed: int = 0, expiry_at: float = 86_400.0
) -> AttachmentRef:
    """Seal ``data`` the way the app does: chunk by chunk into the sender's chunk store."""
    rng = random.Random(seed)
    key, done = rng.randbytes(32), rng.randbytes(16)
    sealer = Sealer(key, done, len(data), sender.config.attach)
    ciphertexts = []
    for index in range(chunk_count(len(data))):
        start = index * CHUNK_BYTES
        ciphertexts.append(sealer.seal(data[start : start + sealer.next_length]))
    manifest, tree = sealer.finish()
    for index, body in enumerate(ciphertexts):
        sender.disk[(manifest.attachment_id, index)] = (tree.proof(index), body)
    ref = AttachmentRef(
        manifest.attachment_id, manifest.encode(), key, done, "file.bin", len(data), ""
    )
    sender.carrier.add_own(ref, peer_id=b"r" * 16, message_id=b"m" * 16, expiry_at=expiry_at)
    return ref


def reassembled(node: FakeNode, ref: AttachmentRef) -> bytes:
    opener = ChunkOpener(ref.key, ref.check(node.config.attach), ref.size)
    count = chunk_count(ref.size)
    return b"".join(opener.open(i, node.disk[(ref.attachment_id, i)][1]) for i in range(count))
