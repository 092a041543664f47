"""What a node persists of its groups, and how the book is rebuilt from it.

=============== ============================================= ==================================
kind            key                                           value
=============== ============================================= ==================================
GROUP           group id (32)                                 ``Group.to_bytes()`` (the graph)
GROUP_KEY       group id ‖ sender identity key ‖ u32 gen       GroupReceiveState
GROUP_KEY       group id ‖ our identity key ‖ 0xFFFFFFFF       GroupSenderState (our chain)
GROUP_MESSAGE   message id (16)                               GroupMessageState
=============== ============================================= ==================================

Keys deleted from memory are deleted here in the same Persist (``key_writes`` returns the
deletes for chains that are gone), so a restart never brings back a key the window dropped.
Chains from members whose ADD had not arrived (``Entry.waiting``) are not persisted: after a
restart such a member is read again from its next generation (at most ``rotation_interval_s``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from meshmsg.config import WireLimits
from meshmsg.core.effects import RecordKind, StoredRecord
from meshmsg.core.erasure import OWN_GROUP_CHAIN
from meshmsg.core.groups.book import Entry, GroupBook, GroupMessage
from meshmsg.core.groups.group import Group
from meshmsg.core.groups.records import (
    GROUP_STATE_RECORDS,
    GroupMessageState,
    GroupReceiveState,
    GroupSenderState,
)
from meshmsg.core.keyschedule import u32
from meshmsg.core.wire import Record, decode_records, encode_record
from meshmsg.errors import DecodeError, KeystoreError, StorageError

_OWN: Final = OWN_GROUP_CHAIN  # u32 0xFFFFFFFF in place of a generation
_WIRE: Final = WireLimits()
_MS = 1000.0


def group_record(entry: Entry) -> StoredRecord:
    return StoredRecord(kind=RecordKind.GROUP, key=entry.group.id, value=entry.group.to_bytes())


def key_writes(
    entry: Entry, persisted: set[bytes]
) -> tuple[list[StoredRecord], list[tuple[RecordKind, bytes]]]:
    """Every chain of the group (puts), and deletes for the ones persisted before and gone.

    ``persisted`` (the keys written so far) is updated in place.
    """
    gid = entry.group.id
    puts: list[StoredRecord] = []
    own = entry.keys.sender_state()
    if own is not None:
        puts.append(_put(gid + entry.keys.me + _OWN, own))
    puts.extend(
        _put(gid + state.sender + u32(state.key.generation), state)
        for state in entry.keys.receive_states()
    )
    keys = {p.key for p in puts}
    deletes = [(RecordKind.GROUP_KEY, k) for k in sorted(persisted - keys) if k[:32] == gid]
    persisted.difference_update(k for _, k in deletes)
    persisted.update(keys)
    return puts, deletes


def _put(key: bytes, value: Record) -> StoredRecord:
    return StoredRecord(kind=RecordKind.GROUP_KEY, key=key, value=encode_record(value))


def message_record(message: GroupMessage) -> StoredRecord:
    value = GroupMessageState(
        group=message.group, message_id=message.message_id, sender=message.sender,
        outgoing=message.outgoing, body=message.body, sent_at=_ms(message.sent_at),
        received_at=None if message.received_at is None else _ms(message.received_at),
        expiry_at=_ms(message.expiry_at), envelope_id=message.envelope_id,
        recipients=tuple(sorted(message.recipients)), delivered=tuple(sorted(message.delivered)),
        read=tuple(sorted(message.read)), read_by_me=message.read_by_me,
    )  # fmt: skip
    return StoredRecord(
        kind=RecordKind.GROUP_MESSAGE, key=message.message_id, value=encode_record(value)
    )


def restore(book: GroupBook, records: Iterable[StoredRecord], now: float) -> set[bytes]:
    """Rebuild the book from persisted records; returns the GROUP_KEY keys (for ``key_writes``).

    Raises:
        StorageError: a record that does not decode or does not belong.
    """
    by_kind: dict[RecordKind, list[StoredRecord]] = {}
    for record in records:
        by_kind.setdefault(record.kind, []).append(record)
    for record in by_kind.get(RecordKind.GROUP, []):
        try:
            group = Group.from_bytes(record.value, book.limits)
        except KeystoreError as exc:
            raise StorageError(f"group record: {exc}") from exc
        book.entries[group.id] = book.new_entry(group)
    persisted: set[bytes] = set()
    chains: dict[bytes, list[GroupReceiveState]] = {}
    own: dict[bytes, GroupSenderState] = {}
    for record in by_kind.get(RecordKind.GROUP_KEY, []):
        value = _decode(record)
        gid = record.key[:32]
        if isinstance(value, GroupSenderState) and record.key.endswith(_OWN):
            own[gid] = value
        elif isinstance(value, GroupReceiveState):
            chains.setdefault(gid, []).append(value)
        else:
            raise StorageError("GROUP_KEY record holds another type")
        persisted.add(record.key)
    for gid, entry in book.entries.items():
        entry.keys.restore(own.get(gid), chains.get(gid, []), now)
        if entry.keys.own is not None:
            entry.told = {k for k in entry.group.state.members if k != book.me}
    for record in by_kind.get(RecordKind.GROUP_MESSAGE, []):
        _restore_message(book, record)
    return persisted


def _restore_message(book: GroupBook, record: StoredRecord) -> None:
    value = _decode(record)
    if not isinstance(value, GroupMessageState):
        raise StorageError("GROUP_MESSAGE record holds another type")
    entry = book.entries.get(value.group)
    if entry is None:
        return  # the group was left and forgotten; its messages go with it
    if value.outgoing and value.envelope_id is not None:
        book.own_envelopes.add(value.envelope_id)
    entry.messages[value.message_id] = GroupMessage(
        message_id=value.message_id, group=value.group, sender=value.sender,
        outgoing=value.outgoing, body=value.body, sent_at=value.sent_at / _MS,
        received_at=None if value.received_at is None else value.received_at / _MS,
        expiry_at=value.expiry_at / _MS, envelope_id=value.envelope_id,
        recipients=frozenset(value.recipients), delivered=set(value.delivered),
        read=set(value.read), read_by_me=value.read_by_me,
    )  # fmt: skip


def _decode(record: StoredRecord) -> Record:
    try:
        (value,) = decode_records(record.value, GROUP_STATE_RECORDS, _WIRE)
    except (DecodeError, ValueError) as exc:
        raise StorageError(f"{record.kind.name} record does not decode: {exc}") from exc
    return value


def _ms(seconds: float) -> int:
    return max(0, round(seconds * _MS))
