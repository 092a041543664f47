"""What the node persists, as strict records, and how a restarted node is rebuilt from them.

Each persisted value is one record of :data:`~meshmsg.core.records.STORAGE_RECORDS`, encoded by
the same strict codec as the wire (so a damaged or foreign database fails loudly, not subtly),
except channel key state, which :class:`~meshmsg.core.e2e.ContactChannel` encodes itself. Times
are stored as integer milliseconds (the codec has no floats). Keys:

=========== ======================== ==========================================
kind        key                      value
=========== ======================== ==========================================
CONTACT     peer id                  ContactState
CHANNEL     peer id                  ``ContactChannel.to_bytes()``
ENVELOPE    envelope id              CarriedEnvelopeState (envelope bytes, routing, expiry by
                                     our clock); EnvelopeState (older, no expiry) is read
MESSAGE     message id               MessageState (with its timeline)
TOMBSTONE   tag                      TombstoneState (purge token, expiry)
META        ``b"router"``            RouterState (PRoPHET predictabilities)
META        ``b"receipt:"`` ‖ peer   Receipt naming the one message (a receipt owed, not yet
            id ‖ kind ‖ message id   sealed into an envelope: receipts wait to be batched)
ATTACHMENT  attachment id            AttachmentState (manifest, role, routing; chunks apart)
ATTACHMENT_ attachment id            AttachmentDoneState (a checked completion receipt)
DONE
META        ``b"rsealed:"`` ‖ peer   Receipt naming the one message (a receipt sealed in our
            id ‖ epoch (4 bytes) ‖   current sending epoch: owed again if a heal abandons
            kind ‖ message id        that epoch, deleted once a heal leaves it readable)
=========== ======================== ==========================================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from meshmsg.config import NodeConfig
from meshmsg.core import requests
from meshmsg.core.attach.records import AttachmentDoneState, AttachmentState
from meshmsg.core.contacts import Contact
from meshmsg.core.conversations import StoredMessage
from meshmsg.core.e2e import ContactChannel
from meshmsg.core.effects import RecordKind, StoredRecord
from meshmsg.core.envelope import envelope_id as env_id_of
from meshmsg.core.envelope import parse_envelope
from meshmsg.core.events import MessageStatus
from meshmsg.core.identity import Identity, PublicIdentity
from meshmsg.core.org import orgcodec
from meshmsg.core.records import (
    INNER_RECORDS,
    STORAGE_RECORDS,
    CarriedEnvelopeState,
    ContactState,
    EnvelopeState,
    MessageState,
    Receipt,
    RouterState,
    StoredRoute,
    TimelineEntry,
    TombstoneState,
)
from meshmsg.core.rng import Rng
from meshmsg.core.state import NodeState
from meshmsg.core.store import StoreItem, Tier
from meshmsg.core.tombstones import Tombstone
from meshmsg.core.wire import Record, decode_records, encode_record
from meshmsg.errors import (
    DecodeError,
    InvalidContactCode,
    InvalidMessage,
    KeystoreError,
    LocalProtocolError,
    StorageError,
)

__all__ = ["RecordKind"]

_MS = 1000.0
ROUTER_KEY = b"router"
RECEIPT_KEY = b"receipt:"
SEALED_RECEIPT_KEY = b"rsealed:"
_ID_BYTES = 16  # peer ids and message ids


def _ms(seconds: float) -> int:
    return max(0, round(seconds * _MS))


def contact_record(contact: Contact) -> StoredRecord:
    value = ContactState(
        public=contact.public.to_bytes(), name=contact.name, verified=contact.verified,
        blocked=contact.blocked, added_at=_ms(contact.added_at),
    )  # fmt: skip
    return StoredRecord(kind=RecordKind.CONTACT, key=contact.peer_id, value=encode_record(value))


def channel_record(peer_id: bytes, channel: ContactChannel) -> StoredRecord:
    return StoredRecord(kind=RecordKind.CHANNEL, key=peer_id, value=channel.to_bytes())


def envelope_record(item: StoreItem, body: bytes | None = None) -> StoredRecord:
    """The item's ENVELOPE record; ``body``: its envelope when the item holds none (on disk
    only, read back to write the record again: exchange/bodies.py).

    Raises:
        LocalProtocolError: neither the item nor ``body`` has the envelope.
    """
    envelope = item.envelope if item.envelope is not None else body
    if envelope is None:
        raise LocalProtocolError("an envelope record needs the body, which is on disk only")
    value = CarriedEnvelopeState(
        envelope=envelope, copies=item.copies, hops=item.hops, tier=int(item.tier),
        source=item.source, received_at=_ms(item.received_at), route_hint=item.route_hint,
        expiry_at=_ms(item.expiry_at),
    )  # fmt: skip
    return StoredRecord(kind=RecordKind.ENVELOPE, key=item.envelope_id, value=encode_record(value))


def message_record(message: StoredMessage) -> StoredRecord:
    value = MessageState(
        message_id=message.message_id, peer_id=message.peer_id, outgoing=message.outgoing,
        body=message.body, sent_at=_ms(message.sent_at),
        received_at=None if message.received_at is None else _ms(message.received_at),
        expiry_at=_ms(message.expiry_at), status=int(message.status),
        timeline=tuple(TimelineEntry(status=int(s), at=_ms(t)) for s, t in message.timeline[-16:]),
        envelope_id=message.envelope_id, sealed=message.sealed, hops=message.hops,
        epoch=message.epoch,
    )  # fmt: skip
    return StoredRecord(kind=RecordKind.MESSAGE, key=message.message_id, value=encode_record(value))


def tombstone_record(stone: Tombstone) -> StoredRecord:
    value = TombstoneState(token=stone.token, expiry_at=_ms(stone.expiry_at))
    return StoredRecord(kind=RecordKind.TOMBSTONE, key=stone.tag, value=encode_record(value))


def router_record(aged_at: float | None, preds: dict[bytes, float]) -> StoredRecord:
    entries = tuple(StoredRoute(route=d, p=round(p * 1e9)) for d, p in sorted(preds.items()))
    value = RouterState(aged_at=None if aged_at is None else _ms(aged_at), entries=entries)
    return StoredRecord(kind=RecordKind.META, key=ROUTER_KEY, value=encode_record(value))


def owed_receipt_key(peer_id: bytes, kind: int, message_id: bytes) -> bytes:
    return RECEIPT_KEY + peer_id + bytes([kind]) + message_id


def owed_receipt_record(peer_id: bytes, kind: int, message_id: bytes) -> StoredRecord:
    """A receipt we owe ``peer_id``: written with what caused it, deleted with its envelope."""
    value = Receipt(status=kind, message_ids=(message_id,))
    key = owed_receipt_key(peer_id, kind, message_id)
    return StoredRecord(kind=RecordKind.META, key=key, value=encode_record(value))


def sealed_receipt_key(peer_id: bytes, epoch: int, kind: int, message_id: bytes) -> bytes:
    return SEALED_RECEIPT_KEY + peer_id + epoch.to_bytes(4, "big") + bytes([kind]) + message_id


def sealed_receipt_record(peer_id: bytes, epoch: int, kind: int, message_id: bytes) -> StoredRecord:
    """A receipt sealed in our sending ``epoch``: kept until a heal shows the peer can read it."""
    value = Receipt(status=kind, message_ids=(message_id,))
    key = sealed_receipt_key(peer_id, epoch, kind, message_id)
    return StoredRecord(kind=RecordKind.META, key=key, value=encode_record(value))


# ---------------------------------------------------------------------------------- restore

R = TypeVar("R")


def _decode_one(record: StoredRecord, state: NodeState) -> Record:
    try:
        decoded = decode_records(record.value, STORAGE_RECORDS, state.config.wire)
    except DecodeError as exc:
        raise StorageError(f"persisted {record.kind.name} record is damaged: {exc}") from exc
    if len(decoded) != 1:
        raise StorageError(f"persisted {record.kind.name} record holds {len(decoded)} values")
    return decoded[0]


@dataclass(slots=True, kw_only=True)
class OwedReceipt:
    """A receipt owed before a restart, to be queued again."""

    peer_id: bytes
    kind: int
    message_id: bytes


@dataclass(slots=True, kw_only=True)
class SealedReceipt:
    """A receipt sealed in our sending ``epoch`` before a restart (not yet known readable)."""

    peer_id: bytes
    epoch: int
    kind: int
    message_id: bytes


@dataclass(slots=True, kw_only=True, eq=False)
class Restored:
    """A node's state rebuilt from its records, and what its parts must take over."""

    state: NodeState
    owed_receipts: list[OwedReceipt] = field(default_factory=list)
    attachments: list[AttachmentState] = field(default_factory=list)  # for the carrier
    attachments_done: list[AttachmentDoneState] = field(default_factory=list)
    sealed_receipts: list[SealedReceipt] = field(default_factory=list)
    empty: bool = True  # no record at all: a first start
    # Every record but the carried envelopes, in the order read: the node's parts read them
    # again (groups, attachments); envelopes are restored as they pass and not kept.
    others: list[StoredRecord] = field(default_factory=list)


def restore_state(
    records: Iterable[StoredRecord],
    *,
    identity: Identity,
    config: NodeConfig,
    rng: Rng,
    one_mode: bool = False,
) -> Restored:
    """Rebuild a node's state from persisted records (any order). Raises StorageError.

    ``records`` is read once, and ENVELOPE records are restored as they come, not kept: a
    relay's carried bodies (100,000 x 1 KiB) then pass through memory one at a time when
    ``records`` is a stream (``Storage.iter_all``)."""
    state = NodeState.empty(identity=identity, config=config, rng=rng, one_mode=one_mode)
    by_kind: dict[RecordKind, list[StoredRecord]] = {kind: [] for kind in RecordKind}
    others: list[StoredRecord] = []
    envelopes = 0
    for record in records:
        if record.kind is RecordKind.ENVELOPE:
            _restore_envelope(state, record)
            envelopes += 1
        else:
            by_kind[record.kind].append(record)
            others.append(record)
    for record in by_kind[RecordKind.CONTACT]:
        _restore_contact(state, record)
    for record in by_kind[RecordKind.CHANNEL]:
        _restore_channel(state, record)
    for record in by_kind[RecordKind.TOMBSTONE]:
        _restore_tombstone(state, record)
    if config.message.purge_on_delivery:
        # After every token is in (the table keeps the newest within its bound), so the
        # reconciliation set names only tokens we still hold.
        for stone in state.tombstones:
            state.items.add(stone.item_id, int(stone.expiry_at))
    for item in state.store.items():  # after the tokens, as before: an envelope's expiry wins
        state.items.add(item.envelope_id, int(item.expiry_at))
    for record in by_kind[RecordKind.MESSAGE]:
        _restore_message(state, record)
    restored = Restored(state=state, empty=not envelopes and not others, others=others)
    for record in by_kind[RecordKind.META]:
        if record.key == ROUTER_KEY:
            _restore_router(state, record)
        elif record.key.startswith(RECEIPT_KEY):
            restored.owed_receipts.append(_restore_owed_receipt(state, record))
        elif record.key.startswith(SEALED_RECEIPT_KEY):
            restored.sealed_receipts.append(_restore_sealed_receipt(state, record))
        elif not requests.restore_record(state.requests, record.key, record.value):
            orgcodec.restore(state.orgs, record)  # issue #12: requests, blocks, organisations
    requests.reattach_messages(state.requests, state.conversations)
    for record in by_kind[RecordKind.ATTACHMENT]:
        restored.attachments.append(_decoded_as(record, state, AttachmentState))
    for record in by_kind[RecordKind.ATTACHMENT_DONE]:
        restored.attachments_done.append(_decoded_as(record, state, AttachmentDoneState))
    return restored


def _decoded_as(record: StoredRecord, state: NodeState, kind: type[R]) -> R:
    value = _decode_one(record, state)
    if not isinstance(value, kind):
        raise StorageError(f"{record.kind.name} record holds another type")
    return value


def _restore_contact(into: NodeState, record: StoredRecord) -> None:
    state = _decode_one(record, into)
    if not isinstance(state, ContactState):
        raise StorageError("CONTACT record holds another type")
    try:
        public = PublicIdentity.from_bytes(state.public)
    except InvalidContactCode as exc:
        raise StorageError(f"persisted contact is damaged: {exc}") from exc
    into.contacts.add(
        Contact(public=public, name=state.name, verified=state.verified, blocked=state.blocked,
                added_at=state.added_at / _MS)
    )  # fmt: skip


def _restore_channel(state: NodeState, record: StoredRecord) -> None:
    contact = state.contacts.get(record.key)
    if contact is None:
        return  # the contact was removed after this channel was written
    try:
        channel = ContactChannel.from_bytes(record.value, limits=state.config.message)
    except KeystoreError as exc:
        raise StorageError(f"persisted key state is damaged: {exc}") from exc
    contact.channel = channel
    state.erasure.note_restored(contact.peer_id, channel)
    channel.register(state.tags, contact.peer_id)


def _restore_tombstone(into: NodeState, record: StoredRecord) -> None:
    state = _decode_one(record, into)
    if not isinstance(state, TombstoneState):
        raise StorageError("TOMBSTONE record holds another type")
    # Only believed tokens are persisted; their tier is not (the record predates tiers): a
    # restored one is a verified contact's, so no stranger or unverified contact evicts it.
    stone = Tombstone(
        token=state.token, tag=record.key, expiry_at=state.expiry_at / _MS, tier=Tier.VERIFIED
    )
    into.tombstones.add(stone)


def _restore_envelope(into: NodeState, record: StoredRecord) -> None:
    state = _decode_one(record, into)
    if not isinstance(state, EnvelopeState | CarriedEnvelopeState):
        raise StorageError("ENVELOPE record holds another type")
    try:
        envelope = parse_envelope(state.envelope, buckets=into.config.message.envelope_size_buckets)
    except InvalidMessage as exc:
        raise StorageError(f"persisted envelope is damaged: {exc}") from exc
    item = StoreItem(
        envelope_id=record.key, envelope=state.envelope, tag=envelope.tag,
        expiry_at=_local_expiry(state, envelope.expiry_at), copies=state.copies,
        hops=state.hops, tier=Tier(state.tier), source=state.source,
        received_at=state.received_at / _MS,
        route_hint=state.route_hint,
    )  # fmt: skip
    into.store.restore(item)
    into.store.body_durable(item.envelope_id)  # committed: a carried body stays on disk


def stored_envelope(value: bytes, envelope_id: bytes, config: NodeConfig) -> bytes | None:
    """The envelope inside an ENVELOPE record's value read back (``LoadEnvelope``), or None
    if the value is damaged or holds another envelope."""
    try:
        decoded = decode_records(value, STORAGE_RECORDS, config.wire)
    except DecodeError:
        return None
    state = decoded[0] if len(decoded) == 1 else None
    if not isinstance(state, EnvelopeState | CarriedEnvelopeState):
        return None
    return state.envelope if env_id_of(state.envelope) == envelope_id else None


def _local_expiry(state: EnvelopeState | CarriedEnvelopeState, envelope_expiry: int) -> float:
    """When the copy expires by our clock; records written before issue #11's fix have only
    the envelope's own expiry."""
    if isinstance(state, CarriedEnvelopeState):
        return state.expiry_at / _MS
    return float(envelope_expiry)


def _restore_message(into: NodeState, record: StoredRecord) -> None:
    state = _decode_one(record, into)
    if not isinstance(state, MessageState):
        raise StorageError("MESSAGE record holds another type")
    message = StoredMessage(
        message_id=state.message_id, peer_id=state.peer_id, outgoing=state.outgoing,
        body=state.body, sent_at=state.sent_at / _MS,
        received_at=None if state.received_at is None else state.received_at / _MS,
        expiry_at=state.expiry_at / _MS, status=MessageStatus(state.status),
        timeline=[(MessageStatus(e.status), e.at / _MS) for e in state.timeline],
        envelope_id=state.envelope_id, sealed=state.sealed, hops=state.hops, epoch=state.epoch,
    )  # fmt: skip
    into.conversations.add(message)


def _restore_owed_receipt(state: NodeState, record: StoredRecord) -> OwedReceipt:
    try:
        decoded = decode_records(record.value, INNER_RECORDS, state.config.wire)
    except DecodeError as exc:
        raise StorageError(f"persisted owed receipt is damaged: {exc}") from exc
    peer_id = record.key[len(RECEIPT_KEY) : len(RECEIPT_KEY) + _ID_BYTES]
    receipt = decoded[0] if len(decoded) == 1 else None
    if not isinstance(receipt, Receipt) or len(receipt.message_ids) != 1:
        raise StorageError("META receipt record holds another value")
    if record.key != owed_receipt_key(peer_id, receipt.status, receipt.message_ids[0]):
        raise StorageError("META receipt record does not match its key")
    return OwedReceipt(peer_id=peer_id, kind=receipt.status, message_id=receipt.message_ids[0])


def _restore_sealed_receipt(state: NodeState, record: StoredRecord) -> SealedReceipt:
    try:
        decoded = decode_records(record.value, INNER_RECORDS, state.config.wire)
    except DecodeError as exc:
        raise StorageError(f"persisted sealed receipt is damaged: {exc}") from exc
    at = len(SEALED_RECEIPT_KEY)
    peer_id = record.key[at : at + _ID_BYTES]
    epoch = int.from_bytes(record.key[at + _ID_BYTES : at + _ID_BYTES + 4], "big")
    receipt = decoded[0] if len(decoded) == 1 else None
    if not isinstance(receipt, Receipt) or len(receipt.message_ids) != 1:
        raise StorageError("META sealed receipt record holds another value")
    mid = receipt.message_ids[0]
    if record.key != sealed_receipt_key(peer_id, epoch, receipt.status, mid):
        raise StorageError("META sealed receipt record does not match its key")
    return SealedReceipt(peer_id=peer_id, epoch=epoch, kind=receipt.status, message_id=mid)


def _restore_router(into: NodeState, record: StoredRecord) -> None:
    state = _decode_one(record, into)
    if not isinstance(state, RouterState):
        raise StorageError("META router record holds another type")
    preds = {e.route: e.p / 1e9 for e in state.entries}
    into.router.import_state(None if state.aged_at is None else state.aged_at / _MS, preds)
