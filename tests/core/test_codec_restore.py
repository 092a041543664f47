"""codec.restore_state refuses what it cannot trust: every kind of record that does not
decode, holds another type, or does not match its key is a StorageError that names it; a
channel of a contact removed later is dropped, and the router comes back as it was stored."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import pytest

from meshmsg.config import NodeConfig
from meshmsg.core import codec
from meshmsg.core.effects import RecordKind, StoredRecord
from meshmsg.core.envelope import tag_of_token
from meshmsg.core.records import (
    STORAGE_RECORDS,
    CarriedEnvelopeState,
    ContactState,
    EnvelopeState,
    Receipt,
    TextMessage,
)
from meshmsg.core.tombstones import Tombstone
from meshmsg.core.wire import decode_records, encode_record, encode_records
from meshmsg.errors import StorageError
from meshmsg.sim.rng import SeededRng
from tests.helpers import Mesh

PEER_ID = b"\xaa" * 16
MID = b"\x01" * 16


def _records() -> tuple[Mesh, list[StoredRecord]]:
    """alice's records with a message to bob on its way: contact, channel, mail, envelope."""
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "hi", now=mesh.now)
    mesh.run()
    records = [
        StoredRecord(kind=k, key=key, value=v) for (k, key), v in mesh.persisted["alice"].items()
    ]
    return mesh, records


MESH, RECORDS = _records()


def _restore(records: Iterable[StoredRecord], config: NodeConfig | None = None) -> codec.Restored:
    return codec.restore_state(
        records, identity=MESH.identities["alice"], config=config or MESH.configs["alice"],
        rng=SeededRng(1, "restore"),
    )  # fmt: skip


def _one(kind: RecordKind) -> StoredRecord:
    return next(r for r in RECORDS if r.kind is kind)


def _swap(kind: RecordKind, value: bytes) -> list[StoredRecord]:
    """Every record, with the first of ``kind`` holding ``value`` instead."""
    target = _one(kind)
    return [dataclasses.replace(r, value=value) if r is target else r for r in RECORDS]


def test_the_records_restore_as_they_are() -> None:
    restored = _restore(RECORDS)
    contact = restored.state.contacts.get(MESH.peer_id("bob"))
    assert contact is not None
    assert contact.channel is not None
    [message] = restored.state.conversations.with_peer(MESH.peer_id("bob"))
    assert message.body == "hi"
    assert message.envelope_id in restored.state.store


def test_records_read_once_restore_as_a_list_does() -> None:
    """A one-pass stream (``Storage.iter_all``: envelopes restored as they pass, not kept)
    restores the same store, in the same order, and the same reconciliation set and expiries,
    tokens included."""
    token = b"\x07" * 16
    stone = Tombstone(token=token, tag=tag_of_token(token), expiry_at=2e9)
    records = [*RECORDS, codec.tombstone_record(stone)]
    listed, streamed = _restore(records), _restore(iter(records))
    assert _one(RecordKind.ENVELOPE).key in streamed.state.store
    assert [i.envelope_id for i in streamed.state.store.items()] == [
        i.envelope_id for i in listed.state.store.items()
    ]
    ids = sorted(listed.state.items)
    assert stone.item_id in ids
    assert sorted(streamed.state.items) == ids
    assert [streamed.state.items.expiry(i) for i in ids] == [
        listed.state.items.expiry(i) for i in ids
    ]


@pytest.mark.parametrize(
    ("kind", "other", "reason"),
    [
        (RecordKind.CONTACT, RecordKind.MESSAGE, "CONTACT record holds another type"),
        (RecordKind.ENVELOPE, RecordKind.CONTACT, "ENVELOPE record holds another type"),
        (RecordKind.MESSAGE, RecordKind.ENVELOPE, "MESSAGE record holds another type"),
    ],
)
def test_a_record_holding_another_kind_s_value_is_refused(
    kind: RecordKind, other: RecordKind, reason: str
) -> None:
    with pytest.raises(StorageError, match=reason):
        _restore(_swap(kind, _one(other).value))


def test_damaged_contacts_channels_and_envelopes_are_refused() -> None:
    contact = _one(RecordKind.CONTACT)
    (state,) = decode_records(contact.value, STORAGE_RECORDS, MESH.configs["alice"].wire)
    assert isinstance(state, ContactState)
    broken = dataclasses.replace(state, public=bytes([state.public[0] ^ 0xFF]) + state.public[1:])
    with pytest.raises(StorageError, match="persisted contact is damaged"):
        _restore(_swap(RecordKind.CONTACT, encode_record(broken)))
    with pytest.raises(StorageError, match="CONTACT record holds 2 values"):
        _restore(_swap(RecordKind.CONTACT, encode_records([state, state])))
    with pytest.raises(StorageError, match="persisted CONTACT record is damaged"):
        _restore(_swap(RecordKind.CONTACT, contact.value[:-2]))
    with pytest.raises(StorageError, match="persisted key state is damaged"):
        _restore(_swap(RecordKind.CHANNEL, b"\x00" * 40))
    envelope = _one(RecordKind.ENVELOPE)
    (held,) = decode_records(envelope.value, STORAGE_RECORDS, MESH.configs["alice"].wire)
    assert isinstance(held, EnvelopeState | CarriedEnvelopeState)
    cut = dataclasses.replace(held, envelope=held.envelope[:-1])  # off every size bucket
    with pytest.raises(StorageError, match="persisted envelope is damaged"):
        _restore(_swap(RecordKind.ENVELOPE, encode_record(cut)))


def test_a_channel_of_a_contact_removed_later_is_dropped() -> None:
    without_contact = [r for r in RECORDS if r.kind is not RecordKind.CONTACT]
    restored = _restore(without_contact)
    assert restored.state.contacts.get(MESH.peer_id("bob")) is None
    assert len(restored.state.contacts) == 0


def _meta(key: bytes, value: bytes) -> list[StoredRecord]:
    return [*RECORDS, StoredRecord(kind=RecordKind.META, key=key, value=value)]


@pytest.mark.parametrize(
    ("key_of", "what"),
    [
        (lambda status, mid: codec.owed_receipt_key(PEER_ID, status, mid), "receipt"),
        (lambda status, mid: codec.sealed_receipt_key(PEER_ID, 7, status, mid), "sealed receipt"),
    ],
)
def test_receipt_records_that_are_damaged_or_do_not_match_their_key_are_refused(
    key_of: Callable[[int, bytes], bytes], what: str
) -> None:
    key = key_of(0, MID)
    good = encode_record(Receipt(status=0, message_ids=(MID,)))
    restored = _restore(_meta(key, good))
    receipts = restored.owed_receipts if what == "receipt" else restored.sealed_receipts
    assert any(r.peer_id == PEER_ID and r.message_id == MID for r in receipts)
    damaged = "owed receipt" if what == "receipt" else what
    with pytest.raises(StorageError, match=f"persisted {damaged} is damaged"):
        _restore(_meta(key, b"\xff"))
    two = encode_record(Receipt(status=0, message_ids=(MID, MID)))
    text = encode_record(TextMessage(message_id=MID, sent_at=0, body="x"))
    for value in (two, text, encode_records([Receipt(status=0, message_ids=(MID,))] * 2)):
        with pytest.raises(StorageError, match=f"META {what} record holds another value"):
            _restore(_meta(key, value))
    read = encode_record(Receipt(status=1, message_ids=(MID,)))  # the key says "delivered"
    with pytest.raises(StorageError, match=f"META {what} record does not match its key"):
        _restore(_meta(key, read))


def test_the_router_comes_back_as_stored_and_refuses_another_type() -> None:
    route = b"\x05" * 8
    record = codec.router_record(1_000.5, {route: 0.25})
    restored = _restore([*RECORDS, record])
    again = codec.router_record(*restored.state.router.export_state())
    assert again == record
    with pytest.raises(StorageError, match="META router record holds another type"):
        _restore(_meta(codec.ROUTER_KEY, _one(RecordKind.CONTACT).value))


def test_an_attachment_record_holding_another_type_is_refused() -> None:
    bogus = StoredRecord(
        kind=RecordKind.ATTACHMENT, key=b"a" * 16, value=_one(RecordKind.CONTACT).value
    )
    with pytest.raises(StorageError, match="ATTACHMENT record holds another type"):
        _restore([*RECORDS, bogus])


def test_restored_tombstones_join_the_reconciliation_set_only_when_purging() -> None:
    token = b"k" * 16
    stone = Tombstone(token=token, tag=tag_of_token(token), expiry_at=MESH.now + 3_600)
    records = [*RECORDS, codec.tombstone_record(stone)]
    purging = _restore(records)
    assert token in {s.token for s in purging.state.tombstones}
    assert stone.item_id in purging.state.items
    config = MESH.configs["alice"]
    quiet = dataclasses.replace(
        config, message=dataclasses.replace(config.message, purge_on_delivery=False)
    )
    kept = _restore(records, quiet)
    assert token in {s.token for s in kept.state.tombstones}  # held, not offered
    assert stone.item_id not in kept.state.items
    with pytest.raises(StorageError, match="TOMBSTONE record holds another type"):
        _restore(
            [
                *RECORDS,
                dataclasses.replace(
                    codec.tombstone_record(stone), value=_one(RecordKind.CONTACT).value
                ),
            ]
        )
