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

from meshmsg.config import AttachConfig
from meshmsg.core.attach.assembly import AttachmentRef, Sealer
from meshmsg.core.attach.format import chunk_count
from meshmsg.sim.rng import SeededRng

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
    store: dict[tuple[bytes, int], ChunkBody], bodies: ChunkBodies, size: int, name: str,
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
