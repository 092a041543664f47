"""Effects: what the core asks its driver to do (imperative commands).

After any input the driver drains ``Node.next_effect()`` until it returns ``None`` and carries
each effect out in order. The trio driver (``meshmsg.net``) and the simulator (``meshmsg.sim``)
handle exactly this closed set; a ``match`` over :data:`Effect` ending in ``assert_never`` keeps
them honest.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from meshmsg.errors import CloseReason

LinkId = int
"""A link is named by the driver: any int unique among the node's open links."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Transmit:
    """Send ``data`` (whole encrypted frames) on ``link``, in order.

    ``envelopes`` counts the envelope transfers inside, so a link model can pace them (the
    simulator's ONE mode charges one transfer step per envelope); it is 0 for control traffic.
    It is a simulator concern kept in the core on purpose: the frames are encrypted, so only
    the core knows how many envelopes they carry. The trio driver ignores it.

    ``one_bytes`` is the same kind of hint for ONE mode only: the payload bytes the envelopes
    inside stand for (a message of the ONE's default scenario declares 500 kB-1 MB but travels
    as a small envelope; docs/simulator.md, "Large messages in ONE mode"). The simulator's ONE
    link model charges ``max(len(data), one_bytes)``; it is 0 outside ONE mode. On a control
    frame (``envelopes == 0``) it marks the announcement of such a transfer (``OneModeSize``),
    which that link model delivers when the transfer it announces can start.
    """

    link: LinkId
    data: bytes
    envelopes: int = 0
    one_bytes: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Dial:
    """Open a link to ``address`` (``host:port`` in net/, a node name in the simulator)."""

    address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseLink:
    """Close ``link`` after sending what was already queued; ``reason`` is for logs and stats."""

    link: LinkId
    reason: CloseReason


class RecordKind(enum.IntEnum):
    """What a persisted record holds; the value bytes are the core's own strict encoding."""

    META = 0  # node-wide counters and settings (the monotonic period, ...)
    CONTACT = 1  # a contact: public identity, trust, name, state
    CHANNEL = 2  # end-to-end key state of one contact (counters, period keys)
    ENVELOPE = 3  # a relay store item: envelope bytes plus routing state
    MESSAGE = 4  # one message of a conversation, with its timeline
    TOMBSTONE = 5  # a purge token or a delivered id, remembered until it expires
    ATTACHMENT = 6  # an attachment's manifest, role and routing state (chunks live apart)
    ATTACHMENT_DONE = 7  # a checked completion receipt, remembered until it expires
    # Groups (meshmsg/core/groups/persist.py); 16 on, clear of the kinds other features take.
    GROUP = 16  # one group's signed operation graph
    GROUP_KEY = 17  # one sender chain of a group (ours, or a member's as far as we keep it)
    GROUP_MESSAGE = 18  # one group message, with its receipts per member
    GROUP_QUEUE = 19  # group records for one member, waiting for its pairwise channel


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredRecord:
    """One record to write: ``(kind, key)`` is unique; ``value`` replaces any earlier value."""

    kind: RecordKind
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Persist:
    """Commit these writes and deletes atomically and durably, then call
    ``Node.storage_committed(token, now=...)``.

    The core acknowledges custody, and lets an envelope whose key state changed leave, only after
    that call: durable state is committed before it is acknowledged.
    """

    token: int
    puts: tuple[StoredRecord, ...] = ()
    deletes: tuple[tuple[RecordKind, bytes], ...] = ()
    # Some put or delete removes key material (a period rollover, a heal, a removed contact):
    # the driver makes the replaced bytes leave the files at once (a WAL checkpoint).
    erases_keys: bool = False


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
class LoadEnvelope:
    """Read the committed ``ENVELOPE`` record ``envelope_id`` and call
    ``Node.envelope_loaded(envelope_id, value)`` with its value (None: it is gone or cannot be
    read). Emitted only with ``StoreConfig.bodies_on_disk`` (docs/storage.md): a carried
    envelope's body leaves memory once its record is committed, and comes back for a transfer
    or for an opening. Read it after every Persist issued before this effect."""

    envelope_id: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteChunks:
    """Delete every stored chunk of this attachment (purged, expired, evicted or discarded)."""

    attachment_id: bytes


ChunkEffect = StoreChunk | LoadChunk | DeleteChunks
"""Chunk bodies go to and come from the driver's chunk store (docs/architecture.md, "Chunk
bodies stay out of the core"); the node answers with ``chunk_stored`` / ``chunk_loaded``."""


Effect = (
    Transmit | Dial | CloseLink | Persist | LoadEnvelope | StoreChunk | LoadChunk | DeleteChunks
)
