"""Records of groups: what travels inside envelopes, and what a node persists.

Inside a *pairwise* envelope (to one member, over the existing channel):

* ``GroupOps [0x38]``: membership operations and the sender's heads (anti-entropy);
* ``GroupKey [0x39]``: the sender's chain of one generation (senderkeys.ChainKey);
* ``GroupReceipt [0x3B]``: delivered/read receipts for group messages, to their sender.

Inside a *group* envelope (one ciphertext for every member; after the 64-byte signature):

* ``GroupText [0x3A]``: a text message, with the sender's heads;
* ``GroupFiles [0x3E]``: a message with attachments: text, heads and each attachment's
  reference (its key inside: one encrypted attachment for the whole group).

Persisted (never on a link): ``GroupSenderState [0x68]``, ``GroupReceiveState [0x69]``,
``GroupMessageState [0x6A]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from meshmsg.core.attach.records import MAX_REFS, AttachmentRefEntry
from meshmsg.core.groups.ops import ID_BYTES, MAX_OP_BYTES
from meshmsg.core.wire import (
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

MAX_HEADS: Final = 32  # concurrent branches a member reports; more are sent as operations
GROUP_FILES_BODY_BYTES: Final = 15_000  # see GroupFiles
_KEY = Bytes.exact(32)


@record(0x38)
@dataclass(frozen=True, slots=True, kw_only=True)
class GroupOps:
    group: bytes = wire(Bytes.exact(ID_BYTES))
    ops: tuple[bytes, ...] = wire(ListOf(Bytes(min_len=1, max_len=MAX_OP_BYTES), max_items=64))
    heads: tuple[bytes, ...] = wire(ListOf(Bytes.exact(ID_BYTES), max_items=MAX_HEADS))


@record(0x39)
@dataclass(frozen=True, slots=True, kw_only=True)
class GroupKey:
    group: bytes = wire(Bytes.exact(ID_BYTES))
    epoch_id: bytes = wire(Bytes.exact(16))
    generation: int = wire(UInt(max=0xFFFFFFFF))
    period: int = wire(UInt(max=(1 << 63) - 1))
    first: int = wire(UInt(max=0xFFFFFFFF))
    chain: bytes = wire(_KEY)
    next_key: bytes = wire(_KEY)
    tag_key: bytes = wire(_KEY)
    verify_key: bytes = wire(_KEY)


@record(0x3B)
@dataclass(frozen=True, slots=True, kw_only=True)
class GroupReceipt:
    """Delivered (0) or read (1) receipts for group messages, to their sender only."""

    group: bytes = wire(Bytes.exact(ID_BYTES))
    status: int = wire(UInt(max=1))
    message_ids: tuple[bytes, ...] = wire(ListOf(Bytes.exact(16), max_items=64))


@record(0x3A)
@dataclass(frozen=True, slots=True, kw_only=True)
class GroupText:
    group: bytes = wire(Bytes.exact(ID_BYTES))
    message_id: bytes = wire(Bytes.exact(16))
    sent_at: int = wire(UInt())  # ms, the sender's clock
    body: str = wire(Text(max_bytes=32_768))
    heads: tuple[bytes, ...] = wire(ListOf(Bytes.exact(ID_BYTES), max_items=MAX_HEADS))


@record(0x3E)
@dataclass(frozen=True, slots=True, kw_only=True)
class GroupFiles:
    """A group message with files. A new record rather than new GroupText fields (published
    records never change); the references are the pairwise ``AttachmentMessage``'s."""

    group: bytes = wire(Bytes.exact(ID_BYTES))
    message_id: bytes = wire(Bytes.exact(16))
    sent_at: int = wire(UInt())  # ms, the sender's clock
    # AttachmentMessage's 16 KiB less room for the heads (32 x 33 B) and the group id: 16
    # references, the heads and this text fit one group envelope's inner limit.
    body: str = wire(Text(max_bytes=GROUP_FILES_BODY_BYTES))
    heads: tuple[bytes, ...] = wire(ListOf(Bytes.exact(ID_BYTES), max_items=MAX_HEADS))
    refs: tuple[AttachmentRefEntry, ...] = wire(
        ListOf(Nested(AttachmentRefEntry), max_items=MAX_REFS)
    )


@record(0x68)
@dataclass(frozen=True, slots=True, kw_only=True)
class GroupSenderState:
    epoch_id: bytes = wire(Bytes.exact(16))
    generation: int = wire(UInt(max=0xFFFFFFFF))
    started_at: int = wire(UInt())  # ms
    period: int = wire(UInt(max=(1 << 63) - 1))
    counter: int = wire(UInt(max=0xFFFFFFFF))
    chain: bytes = wire(_KEY)
    next_key: bytes = wire(_KEY)
    tag_key: bytes = wire(_KEY)
    signing_seed: bytes = wire(_KEY)
    sent: int = wire(UInt(max=0xFFFFFFFF))


@struct
@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedCounters:
    period: int = wire(UInt(max=(1 << 63) - 1))
    counters: tuple[int, ...] = wire(ListOf(UInt(max=0xFFFFFFFF), max_items=1_024))


@record(0x69)
@dataclass(frozen=True, slots=True, kw_only=True)
class GroupReceiveState:
    sender: bytes = wire(_KEY)
    key: GroupKey = wire(Nested(GroupKey))
    anchor: int = wire(UInt(max=(1 << 63) - 1))
    chain: bytes = wire(_KEY)
    first: int = wire(UInt(max=0xFFFFFFFF))
    next_key: bytes = wire(_KEY)
    tag_key: bytes = wire(_KEY)
    received: tuple[ReceivedCounters, ...] = wire(ListOf(Nested(ReceivedCounters), max_items=64))
    last_period: int | None = wire(Optional(UInt(max=(1 << 63) - 1)))


@record(0x6A)
@dataclass(frozen=True, slots=True, kw_only=True)
class GroupMessageState:
    group: bytes = wire(Bytes.exact(ID_BYTES))
    message_id: bytes = wire(Bytes.exact(16))
    sender: bytes = wire(_KEY)
    outgoing: bool = wire(Bool())
    body: str = wire(Text(max_bytes=32_768))
    sent_at: int = wire(UInt())  # ms
    received_at: int | None = wire(Optional(UInt()))
    expiry_at: int = wire(UInt())
    envelope_id: bytes | None = wire(Optional(Bytes.exact(16)))
    recipients: tuple[bytes, ...] = wire(ListOf(_KEY, max_items=1_024))
    delivered: tuple[bytes, ...] = wire(ListOf(_KEY, max_items=1_024))
    read: tuple[bytes, ...] = wire(ListOf(_KEY, max_items=1_024))
    read_by_me: bool = wire(Bool())


GROUP_PAIRWISE_RECORDS: Final = RecordRegistry([GroupOps, GroupKey, GroupReceipt])
GROUP_ENVELOPE_RECORDS: Final = RecordRegistry([GroupText, GroupFiles])
GROUP_STATE_RECORDS: Final = RecordRegistry(
    [GroupSenderState, GroupReceiveState, GroupMessageState]
)
