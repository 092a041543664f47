"""Attachments in the simulator: messages larger than a text body travel as files.

In messenger mode a generated or traced message of more than ``message.max_body_bytes`` (32 KiB;
the ONE's default scenario writes 500 KB-1 MB) is sent the way the application sends a file: its
bytes are sealed chunk by chunk into the sender's chunk store and the message carries the
reference (``Node.send_files``). The chunks then move by the real protocol (holdings, pulls,
custody per attachment) over the modelled links.

Memory: every copy of a chunk has the same bytes, so the run keeps one body per chunk
(:class:`ChunkBodies`) and each node's chunk store points at it: a run holds about one copy of
every attachment created, not one per carrier. A node rebuilt after a crash is not told which
chunks it still holds, so it fetches them again (the driver in ``net/`` does tell it).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from meshmsg.config import AttachConfig, MessageLimits
from meshmsg.core.attach.assembly import AttachmentRef, Sealer
from meshmsg.core.attach.format import chunk_count
from meshmsg.core.effects import DeleteChunks, LinkId, LoadChunk, StoreChunk
from meshmsg.errors import LocalProtocolError
from meshmsg.sim.rng import SeededRng
from meshmsg.sim.traces import MessageEvent

ChunkBody = tuple[tuple[bytes, ...], bytes]


class ChunkBodies:
    """One body per chunk for the whole run (see the module docstring)."""

    def __init__(self) -> None:
        self._bodies: dict[tuple[bytes, int], ChunkBody] = {}

    def intern(self, attachment_id: bytes, index: int, body: ChunkBody) -> ChunkBody:
        return self._bodies.setdefault((attachment_id, index), body)


@runtime_checkable
class FileSender(Protocol):
    """``Node.send_files`` (the simulator's research agents send text only)."""

    def send_files(
        self, peer_id: bytes, body: str, refs: list[AttachmentRef], *, now: float,
        ttl_s: float | None = None,
    ) -> bytes: ...  # fmt: skip


def seal_attachment(
    store: ChunkStore, bodies: ChunkBodies, size: int, name: str,
    rng: SeededRng, config: AttachConfig,
) -> AttachmentRef:  # fmt: skip
    """Seal ``size`` bytes (zeros: the ciphertext is random all the same) into ``store``."""
    key, done = rng.randbytes(32), rng.randbytes(16)
    sealer = Sealer(key, done, size, config)
    ciphertexts = [sealer.seal(bytes(sealer.next_length)) for _ in range(chunk_count(size))]
    manifest, tree = sealer.finish()
    for index, data in enumerate(ciphertexts):
        body = bodies.intern(manifest.attachment_id, index, (tree.proof(index), data))
        store[(manifest.attachment_id, index)] = body
    return AttachmentRef(
        manifest.attachment_id, manifest.encode(), key, done, name, size,
        "application/octet-stream",
    )  # fmt: skip


ChunkStore = dict[tuple[bytes, int], ChunkBody]
"""A simulated node's chunk store: attachment chunks by (attachment id, index)."""


@runtime_checkable
class ChunkCarrier(Protocol):
    """The chunk inputs of ``Node`` (the simulator's research agents carry no attachments)."""

    def chunk_stored(self, attachment_id: bytes, index: int, *, now: float) -> None: ...

    def chunk_loaded(
        self, link: LinkId, attachment_id: bytes, index: int, proof: tuple[bytes, ...],
        data: bytes, *, now: float,
    ) -> None: ...  # fmt: skip

    def chunk_load_failed(
        self, link: LinkId, attachment_id: bytes, index: int, *, now: float
    ) -> None: ...


def carry_out_chunk(
    chunks: ChunkStore, bodies: ChunkBodies, node: object,
    effect: StoreChunk | LoadChunk | DeleteChunks, now: float,
) -> None:  # fmt: skip
    """Chunk bodies live beside the node's records: written and read at once, in virtual time;
    every node's copy of a chunk is the run's one body of it (``sim/files.py``)."""
    if not isinstance(node, ChunkCarrier):
        raise LocalProtocolError(f"{type(node).__name__} emitted a chunk effect")
    match effect:
        case StoreChunk(attachment_id=aid, index=index, proof=proof, data=data):
            chunks[(aid, index)] = bodies.intern(aid, index, (proof, data))
            node.chunk_stored(aid, index, now=now)
        case LoadChunk(link=link, attachment_id=aid, index=index):
            body = chunks.get((aid, index))
            if body is None:
                node.chunk_load_failed(link, aid, index, now=now)
            else:
                node.chunk_loaded(link, aid, index, *body, now=now)
        case DeleteChunks(attachment_id=aid):
            for key in [k for k in chunks if k[0] == aid]:
                del chunks[key]


def send_as_file(
    node: object, chunks: ChunkStore, bodies: ChunkBodies, event: MessageEvent, peer: bytes,
    rng: SeededRng, *, now: float, ttl_s: float,
) -> tuple[bytes, bytes] | None:  # fmt: skip
    """Send ``event`` as a file if it is larger than a text body and ``node`` sends files:
    (message id, attachment id), or None to send it as text."""
    if event.size <= MessageLimits().max_body_bytes or not isinstance(node, FileSender):
        return None
    ref = seal_attachment(chunks, bodies, event.size, event.message_id, rng, AttachConfig())
    return node.send_files(peer, event.message_id, [ref], now=now, ttl_s=ttl_s), ref.attachment_id
