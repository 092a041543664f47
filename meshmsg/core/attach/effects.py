"""What the attachment carrier asks of its driver, and what it reports.

Chunk bodies never stay in the core: a chunk that arrives is checked and handed to the driver
at once (:class:`StoreChunk`), and a chunk a peer asks for is read by the driver and handed back
(:class:`LoadChunk`, then ``chunk_loaded``), encrypted for the link and sent in the same call.
The core keeps per attachment a manifest, a bit per chunk and its routing state; the chunk
store on disk is the truth about which chunks exist, and restores the bits after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshmsg.core.effects import LinkId


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreChunk:
    """Write this verified chunk durably, then call ``chunk_stored(attachment_id, index)``."""

    attachment_id: bytes
    index: int
    proof: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadChunk:
    """Read this chunk and call ``chunk_loaded(link, attachment_id, index, proof, data)``, or
    ``chunk_load_failed`` if it is gone (a damaged store); the core then sends it on ``link``."""

    link: LinkId
    attachment_id: bytes
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteChunks:
    """Delete every stored chunk of this attachment (purged, expired, evicted or discarded)."""

    attachment_id: bytes


ChunkEffect = StoreChunk | LoadChunk | DeleteChunks


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentProgress:
    """A chunk of an attachment we fetch (or carry) is now stored."""

    attachment_id: bytes
    held: int
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentComplete:
    """Every chunk of an attachment addressed to us is stored and checked: it can be saved."""

    attachment_id: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentDelivered:
    """The recipient's completion receipt for an attachment we sent came back."""

    attachment_id: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentDropped:
    """We let go of an attachment's chunks: ``reason`` is expired, evicted or purged."""

    attachment_id: bytes
    reason: str


AttachEvent = AttachmentProgress | AttachmentComplete | AttachmentDelivered | AttachmentDropped
