"""Wire records of attachments (docs/protocol/attachments.md): codes 0x19-0x1D and 0x32.

Meeting records travel on a link in the critical range (an old peer closes the link rather
than misunderstand a transfer); :class:`AttachmentMessage` travels inside an end-to-end envelope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from meshmsg.core.attach.format import (
    CHUNK_CIPHERTEXT_BYTES,
    DONE_TOKEN_BYTES,
    ID_BYTES,
    KEY_BYTES,
    MANIFEST_BYTES,
    MAX_CHUNKS,
)
from meshmsg.core.attach.merkle import HASH_BYTES, MAX_DEPTH
from meshmsg.core.wire import Bytes as B
from meshmsg.core.wire import ListOf, Nested, Optional, Text, UInt, record, struct, wire

MAX_HOLDINGS: Final = 64  # entries per ChunkHoldings record; AttachConfig.max_have_entries <= this
MAX_REQUEST: Final = 64  # chunk indexes per ChunkRequest; the in-flight window is smaller
MAX_REFS: Final = 16  # attachments per message; AttachConfig.max_attachments_per_message <= this
MAX_BITS_BYTES: Final = MAX_CHUNKS // 8


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class HoldingEntry:
    attachment_id: bytes = wire(B.exact(ID_BYTES))
    manifest: bytes = wire(B.exact(MANIFEST_BYTES))  # checked against the id before use
    expiry_at: int = wire(UInt())  # ms since the epoch: the sender's TTL, carried along
    copies: int = wire(UInt(max=65_535))  # copies the holder would hand over (0: wait phase)
    bits: bytes = wire(B(min_len=1, max_len=MAX_BITS_BYTES))  # chunks held, see Bitfield


@record(0x19)
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkHoldings:
    """Attachments the sender holds chunks of, with which chunks: the pull side decides."""

    entries: tuple[HoldingEntry, ...] = wire(ListOf(Nested(HoldingEntry), max_items=MAX_HOLDINGS))


@record(0x1A)
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkRequest:
    """Send me these chunks of this attachment (each was advertised as held)."""

    attachment_id: bytes = wire(B.exact(ID_BYTES))
    indexes: tuple[int, ...] = wire(ListOf(UInt(max=MAX_CHUNKS - 1), max_items=MAX_REQUEST))


@record(0x1B)
@dataclass(frozen=True, slots=True, kw_only=True)
class Chunk:
    """One encrypted chunk with its Merkle proof: the receiver checks it against the manifest."""

    attachment_id: bytes = wire(B.exact(ID_BYTES))
    index: int = wire(UInt(max=MAX_CHUNKS - 1))
    proof: tuple[bytes, ...] = wire(ListOf(B.exact(HASH_BYTES), max_items=MAX_DEPTH))
    data: bytes = wire(B(min_len=1, max_len=CHUNK_CIPHERTEXT_BYTES))


@record(0x1C)
@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkMissing:
    """Answer to a request for chunks the sender no longer holds (evicted, purged, damaged)."""

    attachment_id: bytes = wire(B.exact(ID_BYTES))
    indexes: tuple[int, ...] = wire(ListOf(UInt(max=MAX_CHUNKS - 1), max_items=MAX_REQUEST))


@record(0x1D)
@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentDone:
    """The recipient's completion receipt: carriers whose manifest's done tag is H(token) drop
    their chunks and pass the receipt on."""

    attachment_id: bytes = wire(B.exact(ID_BYTES))
    token: bytes = wire(B.exact(DONE_TOKEN_BYTES))
    expiry_at: int = wire(UInt())


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentRefEntry:
    attachment_id: bytes = wire(B.exact(ID_BYTES))
    manifest: bytes = wire(B.exact(MANIFEST_BYTES))
    key: bytes = wire(B.exact(KEY_BYTES))
    done_token: bytes = wire(B.exact(DONE_TOKEN_BYTES))
    name: str = wire(Text(max_bytes=255))
    size: int = wire(UInt(max=MAX_CHUNKS * 61_440))
    media_type: str = wire(Text(max_bytes=127))


@record(0x32)
@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentMessage:
    """A message with files (inside an envelope): text plus what is needed to fetch and open
    each file. A new record rather than new TextMessage fields: published records never change."""

    message_id: bytes = wire(B.exact(16))
    sent_at: int = wire(UInt())  # ms since the epoch, by the sender's clock
    body: str = wire(Text(max_bytes=16_384))  # room for up to 16 refs in the 32 KiB body
    refs: tuple[AttachmentRefEntry, ...] = wire(
        ListOf(Nested(AttachmentRefEntry), max_items=MAX_REFS)
    )


ATTACH_SESSION_RECORDS: Final = (ChunkHoldings, ChunkRequest, Chunk, ChunkMissing, AttachmentDone)


# --- Persisted state (values of Persist records; never sent on a link) --------------------------


@record(0x65)
@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentState:
    """One attachment at this node. Which chunks it holds is not here: the chunk store is the
    truth, scanned at start. The ref fields are set for our own and wanted attachments."""

    attachment_id: bytes = wire(B.exact(ID_BYTES))
    manifest: bytes = wire(B.exact(MANIFEST_BYTES))
    role: int = wire(UInt(max=3))
    expiry_at: int = wire(UInt())
    copies: int = wire(UInt(max=65_535))
    tier: int = wire(UInt(max=3))
    source: bytes | None = wire(Optional(B.exact(16)))
    ref: AttachmentRefEntry | None = wire(Optional(Nested(AttachmentRefEntry)))
    peer_id: bytes | None = wire(Optional(B.exact(16)))  # the contact who sent it or gets it
    message_id: bytes | None = wire(Optional(B.exact(16)))


@record(0x66)
@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentDoneState:
    """A completion receipt we verified: refuse and purge the attachment until expiry."""

    attachment_id: bytes = wire(B.exact(ID_BYTES))
    token: bytes = wire(B.exact(DONE_TOKEN_BYTES))
    expiry_at: int = wire(UInt())


ATTACH_STORAGE_RECORDS: Final = (AttachmentState, AttachmentDoneState)
