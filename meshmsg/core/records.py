"""The record table of the meshmsg protocol, version 1.

Every record that crosses a link is declared here, with its type code and field specs. The
codec (:mod:`meshmsg.core.wire`) turns them into bytes and back. ``wire.record_table([...])``
prints a layer's rows for its protocol doc; ``docs/protocol/wire.md`` carries the link records'
table, and a test keeps it current.

Type code plan (one byte; see the version policy in wire.py):

    0x00         reserved, never assigned (a zeroed buffer is never a valid record)
    0x01-0x0F    link layer: hello, close, keepalive, rekey
    0x10-0x7F    critical protocol records (sync, messaging) — an unknown one closes the link
    0x80-0xFF    ignorable records (hints, extensions) — an unknown one is skipped

Rules for adding a record: take the next free code in the right range, never reuse a code,
never change the fields of a published record (add a new record instead), give every bound a
reason, and add it to the registry of the layer that reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from meshmsg.core.attach.records import (
    ATTACH_SESSION_RECORDS,
    ATTACH_STORAGE_RECORDS,
    AttachmentMessage,
)
from meshmsg.core.groups.records import GROUP_PAIRWISE_RECORDS
from meshmsg.core.wire import (
    UINT64_MAX,
    Bool,
    Bytes,
    ListOf,
    Nested,
    Optional,
    RecordRegistry,
    Text,
    UInt,
    record,
    struct,
    wire,
)

MAX_AGENT_BYTES: Final = 64  # a product name and version, never a fingerprintable essay
MAX_CLOSE_DETAIL_BYTES: Final = 256  # one line for logs; the reason code is what programs read
MAX_CAPABILITIES: Final = 32  # feature flags; 32 is far more than v1 defines

# --- Link layer: 0x01-0x0F ---------------------------------------------------------------------


@record(0x01)
@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """First record each side sends inside the encrypted session."""

    version: int = wire(UInt(max=0xFFFF))  # protocol version the sender speaks
    capabilities: tuple[int, ...] = wire(ListOf(UInt(max=0xFF), max_items=MAX_CAPABILITIES))
    agent: str | None = wire(Optional(Text(max_bytes=MAX_AGENT_BYTES)))  # e.g. "meshmsg/0.1"


@record(0x02)
@dataclass(frozen=True, slots=True, kw_only=True)
class Close:
    """The sender is closing the link; ``reason`` is a CloseReason code (unknown codes allowed)."""

    reason: int = wire(UInt(max=0xFF))
    detail: str = wire(Text(max_bytes=MAX_CLOSE_DETAIL_BYTES))


@record(0x03)
@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """Keepalive and liveness probe; the peer answers with a Pong carrying the same nonce."""

    nonce: int = wire(UInt(max=UINT64_MAX))


@record(0x04)
@dataclass(frozen=True, slots=True, kw_only=True)
class Pong:
    """Answer to a Ping."""

    nonce: int = wire(UInt(max=UINT64_MAX))


@record(0x05)
@dataclass(frozen=True, slots=True, kw_only=True)
class Rekey:
    """After the frame carrying this record, the sender's outbound key changes."""


LINK_RECORDS: Final = RecordRegistry([Hello, Close, Ping, Pong, Rekey])
"""Records the link layer reads from an established session."""


# --- Handshake: who the peer is (inside the Noise handshake payload) ----------------------------


@record(0x06)
@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityProof:
    """The sender's public identity (161 bytes, see docs/protocol/identity.md): its Ed25519
    identity key and a certificate binding its Noise static key, which the receiver checks
    against the key the Noise handshake authenticated."""

    public: bytes = wire(Bytes.exact(161))


# --- Meeting: pairing and healing, routing, reconciliation, transfers ---------------------------


@record(0x10)
@dataclass(frozen=True, slots=True, kw_only=True)
class KeyExchange:
    """One side's key share for pairing (first meeting) or healing (every later meeting).

    ``share`` is a KeyShare in its fixed binary form (docs/protocol/e2e.md, "Key share"):
    a fresh X25519 public key, 32 random bytes, the sender's period, epochs and final counts.
    """

    share: bytes = wire(Bytes(min_len=1, max_len=1_024))


@record(0x18)
@dataclass(frozen=True, slots=True, kw_only=True)
class KeyConfirm:
    """After a heal: the 16-byte confirmation both sides derive from the new epoch root."""

    confirmation: bytes = wire(Bytes.exact(16))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class RouteEntry:
    route: bytes = wire(Bytes.exact(8))  # a destination's routing pseudonym
    p: int = wire(UInt(max=65_535))  # delivery predictability, fixed point / 65,535


@record(0x11)
@dataclass(frozen=True, slots=True, kw_only=True)
class RouteTable:
    """PRoPHET: the sender's delivery predictabilities (only with the prophet policy)."""

    entries: tuple[RouteEntry, ...] = wire(ListOf(Nested(RouteEntry), max_items=1_024))


@record(0x12)
@dataclass(frozen=True, slots=True, kw_only=True)
class SyncMessage:
    """One set-reconciliation message (docs/protocol/sync.md)."""

    payload: bytes = wire(Bytes(max_len=60_000))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class OfferEntry:
    envelope_id: bytes = wire(Bytes.exact(16))
    tag: bytes = wire(Bytes.exact(16))


@record(0x13)
@dataclass(frozen=True, slots=True, kw_only=True)
class Offer:
    """Envelopes the sender holds and believes the receiver lacks, with their outer tags."""

    entries: tuple[OfferEntry, ...] = wire(ListOf(Nested(OfferEntry), max_items=1_024))


@record(0x14)
@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """Answer to an Offer: which envelopes are addressed to us, and which we already hold."""

    for_me: tuple[bytes, ...] = wire(ListOf(Bytes.exact(16), max_items=1_024))
    have: tuple[bytes, ...] = wire(ListOf(Bytes.exact(16), max_items=1_024))


@record(0x15)
@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer:
    """One envelope copy and its routing state (which is not part of the envelope)."""

    envelope: bytes = wire(Bytes(min_len=1, max_len=65_000))
    copies: int = wire(UInt(max=65_535))
    hops: int = wire(UInt(max=255))
    route_hint: bytes | None = wire(Optional(Bytes.exact(8)))


MAX_LIFETIME_MS: Final = 0xFFFF_FFFF  # ~49.7 days in ms, over any max_ttl_s; the receiver caps it


@record(0x1E)
@dataclass(frozen=True, slots=True, kw_only=True)
class TimedTransfer:
    """A ``Transfer`` whose lifetime is relative (Hello capability 3; issue #11, finding 2).

    ``lifetime_ms`` is what the sender's own clock leaves of the envelope's life when it sends:
    the receiver keeps it until ``now + min(lifetime_ms, max_ttl_s)`` by its own clock, so no
    two clocks are compared (the envelope's absolute ``expiry_at`` is the originator's clock).
    """

    envelope: bytes = wire(Bytes(min_len=1, max_len=65_000))
    copies: int = wire(UInt(max=65_535))
    hops: int = wire(UInt(max=255))
    route_hint: bytes | None = wire(Optional(Bytes.exact(8)))
    lifetime_ms: int = wire(UInt(max=MAX_LIFETIME_MS))


@record(0x16)
@dataclass(frozen=True, slots=True, kw_only=True)
class Custody:
    """Hop-by-hop acknowledgement, sent only after the receiver committed durably."""

    accepted: tuple[bytes, ...] = wire(ListOf(Bytes.exact(16), max_items=1_024))
    refused: tuple[bytes, ...] = wire(ListOf(Bytes.exact(16), max_items=1_024))


@record(0x17)
@dataclass(frozen=True, slots=True, kw_only=True)
class Purge:
    """A purge token: hash it to find the tag of a delivered envelope, and drop that envelope."""

    token: bytes = wire(Bytes.exact(16))
    expiry_at: int = wire(UInt())  # ms since the epoch: keep the token until then


# --- Organisation directories (issue #12; ignorable: an older node skips them) -------------------


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class DirectoryVersion:
    org_id: bytes = wire(Bytes.exact(16))
    serial: int = wire(UInt())  # 0: joined, holds no directory yet


@record(0xA0)
@dataclass(frozen=True, slots=True, kw_only=True)
class DirectoryHave:
    """At a meeting: the organisations we joined and the directory version we hold of each."""

    orgs: tuple[DirectoryVersion, ...] = wire(ListOf(Nested(DirectoryVersion), max_items=64))


@record(0xA1)
@dataclass(frozen=True, slots=True, kw_only=True)
class DirectoryChunk:
    """One piece of a signed directory the peer lacks; chunks go in order, 0 .. total-1."""

    org_id: bytes = wire(Bytes.exact(16))
    serial: int = wire(UInt())
    index: int = wire(UInt(max=1_023))
    total: int = wire(UInt(max=1_024))  # 0 is refused by the receiver
    data: bytes = wire(Bytes(min_len=1, max_len=60_000))


# --- Simulator only (ignorable) ----------------------------------------------------------------


@record(0xF0)
@dataclass(frozen=True, slots=True, kw_only=True)
class OneModeSize:
    """ONE mode only: the payload size the next ``Transfer``'s envelope stands for.

    The simulator compares the core with the ONE, whose messages are 500 kB-1 MB of payload the
    core does not carry (its text cap is 32 KiB). A ONE-mode node sends this just before such a
    Transfer, in the same frame, so the receiver's store counts the declared size as the ONE's
    buffer does; real nodes never send it and skip it (docs/simulator.md).
    """

    size: int = wire(UInt(max=1 << 31))  # the ONE's Message.getSize() is an int


@record(0xF1)
@dataclass(frozen=True, slots=True, kw_only=True)
class OneModeBusy:
    """ONE mode only: the sender now is (or no longer is) in a declared-size transfer.

    The ONE's router refuses a transfer while it is in one (``TRY_LATER_BUSY``) and its peer
    tries another connection; a ONE-mode node tells its peers when this changes, so that they
    pick another peer instead of letting a transfer wait for this one (docs/simulator.md, "How
    the ONE's routers send"). Real nodes never send it and skip it.
    """

    busy: bool = wire(Bool())


ONE_ASK, ONE_GO, ONE_BUSY, ONE_CANCEL = 0, 1, 2, 3
"""``OneModeAsk.step``: the ask, its two answers, and the asker's withdrawal after a "go"."""


@record(0xF2)
@dataclass(frozen=True, slots=True, kw_only=True)
class OneModeAsk:
    """ONE mode only: may I start a declared-size transfer to you now? ("go" or "busy").

    The ONE's hosts update one after another, so of two nodes that pick the same free peer at
    one update instant the second is refused (``TRY_LATER_BUSY``) and tries its next
    connection; a busy notice (``OneModeBusy``) travels while both have already sent. A
    ONE-mode node asks before it announces a transfer; a node in a transfer (or asking) answers
    "busy". Asks that cross on one link are settled by ``rank`` (mail over spraying, then a
    random draw; the higher goes). Real nodes never send it and skip it (docs/simulator.md).
    """

    step: int = wire(UInt(max=ONE_CANCEL))
    rank: int = wire(UInt(max=(1 << 32) - 1))  # the ask's priority; 0 in answers


# --- Inside an envelope (end-to-end encrypted; never seen by relays) ----------------------------


@record(0x30)
@dataclass(frozen=True, slots=True, kw_only=True)
class TextMessage:
    message_id: bytes = wire(Bytes.exact(16))
    sent_at: int = wire(UInt())  # ms since the epoch, by the sender's clock
    body: str = wire(Text(max_bytes=32_768))


@record(0x31)
@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    status: int = wire(UInt(max=1))  # 0 delivered, 1 read
    message_ids: tuple[bytes, ...] = wire(ListOf(Bytes.exact(16), max_items=64))


# --- Persisted state (values of Persist records; never sent on a link) --------------------------


@record(0x60)
@dataclass(frozen=True, slots=True, kw_only=True)
class ContactState:
    public: bytes = wire(Bytes.exact(161))
    name: str = wire(Text(max_bytes=256))
    verified: bool = wire(Bool())
    blocked: bool = wire(Bool())
    added_at: int = wire(UInt())


@record(0x61)
@dataclass(frozen=True, slots=True, kw_only=True)
class EnvelopeState:
    envelope: bytes = wire(Bytes(min_len=1, max_len=65_000))
    copies: int = wire(UInt(max=65_535))
    hops: int = wire(UInt(max=255))
    tier: int = wire(UInt(max=3))
    source: bytes | None = wire(Optional(Bytes.exact(16)))
    received_at: int = wire(UInt())
    route_hint: bytes | None = wire(Optional(Bytes.exact(8)))


@record(0x67)
@dataclass(frozen=True, slots=True, kw_only=True)
class CarriedEnvelopeState:
    """``EnvelopeState`` and when the copy expires by our clock (issue #11, finding 2): a copy
    taken by ``TimedTransfer`` lives by its relative lifetime, not the envelope's expiry."""

    envelope: bytes = wire(Bytes(min_len=1, max_len=65_000))
    copies: int = wire(UInt(max=65_535))
    hops: int = wire(UInt(max=255))
    tier: int = wire(UInt(max=3))
    source: bytes | None = wire(Optional(Bytes.exact(16)))
    received_at: int = wire(UInt())
    route_hint: bytes | None = wire(Optional(Bytes.exact(8)))
    expiry_at: int = wire(UInt())  # ms since the epoch, our clock


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineEntry:
    status: int = wire(UInt(max=4))
    at: int = wire(UInt())


@record(0x62)
@dataclass(frozen=True, slots=True, kw_only=True)
class MessageState:
    message_id: bytes = wire(Bytes.exact(16))
    peer_id: bytes = wire(Bytes.exact(16))
    outgoing: bool = wire(Bool())
    body: str = wire(Text(max_bytes=32_768))
    sent_at: int = wire(UInt())
    received_at: int | None = wire(Optional(UInt()))
    expiry_at: int = wire(UInt())
    status: int = wire(UInt(max=4))
    timeline: tuple[TimelineEntry, ...] = wire(ListOf(Nested(TimelineEntry), max_items=16))
    envelope_id: bytes | None = wire(Optional(Bytes.exact(16)))
    sealed: bool = wire(Bool())
    hops: int = wire(UInt(max=255))
    epoch: int | None = wire(Optional(UInt(max=0xFFFFFFFF)))


@record(0x63)
@dataclass(frozen=True, slots=True, kw_only=True)
class TombstoneState:
    token: bytes = wire(Bytes.exact(16))
    expiry_at: int = wire(UInt())


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class StoredRoute:
    route: bytes = wire(Bytes.exact(8))
    p: int = wire(UInt(max=1_000_000_000))  # predictability in parts per billion


@record(0x64)
@dataclass(frozen=True, slots=True, kw_only=True)
class RouterState:
    aged_at: int | None = wire(Optional(UInt()))
    entries: tuple[StoredRoute, ...] = wire(ListOf(Nested(StoredRoute), max_items=1_024))


HANDSHAKE_RECORDS: Final = RecordRegistry([Hello, IdentityProof])
"""Records carried in Noise handshake messages 2 and 3."""

SESSION_RECORDS: Final = LINK_RECORDS.extend(
    [KeyExchange, KeyConfirm, RouteTable, SyncMessage, Offer, Reply, Transfer, TimedTransfer,
     Custody, Purge,
     *ATTACH_SESSION_RECORDS, DirectoryHave, DirectoryChunk, OneModeSize, OneModeBusy, OneModeAsk]
)  # fmt: skip
"""Records a node reads from an established session: the link layer plus the meeting protocol."""

INNER_RECORDS: Final = RecordRegistry(
    [TextMessage, Receipt, *GROUP_PAIRWISE_RECORDS, AttachmentMessage]
)
"""Records inside an end-to-end envelope."""

STORAGE_RECORDS: Final = RecordRegistry(
    [ContactState, EnvelopeState, CarriedEnvelopeState, MessageState, TombstoneState,
     RouterState, *ATTACH_STORAGE_RECORDS]
)  # fmt: skip
"""Values of persisted records (never sent on a link)."""
