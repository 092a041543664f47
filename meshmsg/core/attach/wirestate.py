"""Persisted attachment state: :class:`Carried` to and from its strict storage records."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from meshmsg.config import WireLimits
from meshmsg.core.attach.assembly import AttachmentRef
from meshmsg.core.attach.format import Manifest
from meshmsg.core.attach.records import AttachmentDoneState, AttachmentRefEntry, AttachmentState
from meshmsg.core.attach.table import Carried, Role
from meshmsg.core.effects import RecordKind, StoredRecord
from meshmsg.core.store import Tier
from meshmsg.core.wire import RecordRegistry, decode_records, encode_record
from meshmsg.errors import DecodeError, StorageError

_STORAGE: Final = RecordRegistry([AttachmentState, AttachmentDoneState])


def ref_entry(ref: AttachmentRef) -> AttachmentRefEntry:
    return AttachmentRefEntry(
        attachment_id=ref.attachment_id, manifest=ref.manifest, key=ref.key,
        done_token=ref.done_token, name=ref.name, size=ref.size, media_type=ref.media_type,
    )  # fmt: skip


def ref_from_entry(entry: AttachmentRefEntry) -> AttachmentRef:
    return AttachmentRef(
        attachment_id=entry.attachment_id, manifest=entry.manifest, key=entry.key,
        done_token=entry.done_token, name=entry.name, size=entry.size,
        media_type=entry.media_type,
    )  # fmt: skip


def state_record(item: Carried) -> StoredRecord:
    state = AttachmentState(
        attachment_id=item.attachment_id, manifest=item.manifest.encode(), role=int(item.role),
        expiry_at=int(item.expiry_at * 1000), copies=item.copies, tier=int(item.tier),
        source=item.source, ref=ref_entry(item.ref) if item.ref is not None else None,
        peer_id=item.peer_id, message_id=item.message_id,
    )  # fmt: skip
    return StoredRecord(
        kind=RecordKind.ATTACHMENT, key=item.attachment_id, value=encode_record(state)
    )


def carried_from_state(state: AttachmentState) -> Carried:
    return Carried(
        attachment_id=state.attachment_id, manifest=Manifest.decode(state.manifest),
        role=Role(state.role), expiry_at=state.expiry_at / 1000, copies=state.copies,
        tier=Tier(state.tier), source=state.source,
        ref=ref_from_entry(state.ref) if state.ref is not None else None,
        peer_id=state.peer_id, message_id=state.message_id,
    )  # fmt: skip


def done_record(attachment_id: bytes, token: bytes, expiry: float) -> StoredRecord:
    state = AttachmentDoneState(
        attachment_id=attachment_id, token=token, expiry_at=int(expiry * 1000)
    )
    return StoredRecord(
        kind=RecordKind.ATTACHMENT_DONE, key=attachment_id, value=encode_record(state)
    )


def decode_states(
    records: Iterable[StoredRecord], limits: WireLimits
) -> tuple[list[AttachmentState], list[AttachmentDoneState]]:
    """The persisted attachment records among ``records``, decoded strictly."""
    states: list[AttachmentState] = []
    done: list[AttachmentDoneState] = []
    for record in records:
        if record.kind not in (RecordKind.ATTACHMENT, RecordKind.ATTACHMENT_DONE):
            continue
        try:
            decoded = decode_records(record.value, _STORAGE, limits)
        except DecodeError as exc:
            raise StorageError(f"persisted {record.kind.name} record is damaged: {exc}") from exc
        match decoded:
            case [AttachmentState() as state] if record.kind is RecordKind.ATTACHMENT:
                states.append(state)
            case [AttachmentDoneState() as stone] if record.kind is RecordKind.ATTACHMENT_DONE:
                done.append(stone)
            case _:
                raise StorageError(f"{record.kind.name} record holds another type")
    return states, done
