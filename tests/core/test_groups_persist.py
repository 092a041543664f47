"""What a node persists of its groups, restored: the same groups, chains and messages come
back (and keep working: the sender continues its chain, a receiver opens new mail and not old
mail twice), and a record that does not decode or does not belong is a StorageError."""

from __future__ import annotations

import dataclasses

import pytest

from meshmsg.config import NodeConfig
from meshmsg.core.effects import RecordKind, StoredRecord
from meshmsg.core.envelope import parse_envelope
from meshmsg.core.groups import persist
from meshmsg.core.groups.book import GroupBook, GroupMessage
from meshmsg.core.groups.records import GroupMessageState
from meshmsg.core.wire import encode_record
from meshmsg.errors import StorageError
from meshmsg.sim.rng import SeededRng
from tests.core.test_group_book import T0, Mesh


def _records(book: GroupBook) -> list[StoredRecord]:
    """Everything the node would have committed for its groups."""
    out: list[StoredRecord] = []
    persisted: set[bytes] = set()
    for entry in book.entries.values():
        out.append(persist.group_record(entry))
        puts, deletes = persist.key_writes(entry, persisted)
        assert deletes == []  # nothing was written before, so nothing can be gone
        out += puts
        out += [persist.message_record(m) for m in entry.messages.values()]
    return out


def _fresh(book: GroupBook, seed: int) -> GroupBook:
    return GroupBook(book.identity, book.config, SeededRng(seed, "restarted"))


def _busy_group() -> tuple[Mesh, bytes]:
    """alice, bob and carol: two messages from alice, one from bob, receipts both ways."""
    mesh = Mesh.of("alice", "bob", "carol")
    alice = mesh.books["alice"]
    entry, out = alice.create("ops", [mesh.books[n].identity.public for n in ("bob", "carol")], T0)
    mesh.post("alice", out)
    mesh.send("alice", "ops", "one")
    mesh.send("alice", "ops", "two")
    mesh.send("bob", "ops", "three")
    bob = mesh.books["bob"]
    mesh.post("bob", bob.mark_read(bob.find("ops"), list(bob.find("ops").messages)))
    for message in alice.find("ops").messages.values():  # the node fills these in on sending
        message.envelope_id = bytes(16 - len(message.body)) + message.body.encode()
    return mesh, entry.group.id


def test_restored_books_hold_the_same_groups_chains_and_messages() -> None:
    mesh, gid = _busy_group()
    for i, (name, book) in enumerate(mesh.books.items()):
        restored = _fresh(book, i)
        keys = persist.restore(restored, _records(book), T0 + 1)
        before, after = book.find(gid), restored.find(gid)
        assert after.group.to_bytes() == before.group.to_bytes(), name
        assert after.messages == before.messages, name
        assert after.keys.sender_state() == before.keys.sender_state(), name
        assert after.keys.receive_states() == before.keys.receive_states(), name
        assert keys == {r.key for r in _records(book) if r.kind is RecordKind.GROUP_KEY}
        sent = {m.envelope_id for m in before.messages.values() if m.outgoing and m.envelope_id}
        assert restored.own_envelopes == sent, name
        if before.keys.own is not None:  # a sender told every other member its chain
            assert after.told == set(before.group.state.members) - {book.me}


def test_after_a_restart_the_chains_go_on_and_old_mail_is_not_opened_twice() -> None:
    mesh, _ = _busy_group()
    old = list(mesh.envelopes)
    for i, name in enumerate(("alice", "bob")):
        book = mesh.books[name]
        restored = _fresh(book, 10 + i)
        persist.restore(restored, _records(book), T0)
        mesh.books[name] = restored
    mesh.send("alice", "ops", "after restart")
    assert mesh.inbox["bob"][-1] == "after restart"
    assert mesh.inbox["carol"][-1] == "after restart"
    bob = mesh.books["bob"]
    for data in old:  # alice's and bob's own earlier mail: nothing opens again
        envelope = parse_envelope(data)
        found = bob.lookup(envelope.tag)
        if found is not None:
            message, _ = bob.open(found[0], envelope, found[1], T0)
            assert message is None
    assert mesh.inbox["bob"].count("one") == 1


def _message_state(group: bytes, **changes: object) -> GroupMessageState:
    base = GroupMessageState(
        group=group, message_id=b"m" * 16, sender=b"s" * 32, outgoing=False, body="hi",
        sent_at=1_000, received_at=None, expiry_at=2_000, envelope_id=None, recipients=(),
        delivered=(), read=(), read_by_me=True,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_message_of_a_forgotten_group_is_dropped_and_times_round_to_milliseconds() -> None:
    mesh, gid = _busy_group()
    book = mesh.books["carol"]
    stray = _message_state(b"\x07" * 32)
    kept = _message_state(gid, message_id=b"k" * 16, received_at=1_500)
    records = [
        *_records(book),
        StoredRecord(kind=RecordKind.GROUP_MESSAGE, key=b"m" * 16, value=encode_record(stray)),
        StoredRecord(kind=RecordKind.GROUP_MESSAGE, key=b"k" * 16, value=encode_record(kept)),
    ]
    restored = _fresh(book, 3)
    persist.restore(restored, records, T0)
    assert set(restored.entries) == {gid}
    message = restored.find(gid).messages[b"k" * 16]
    assert (message.sent_at, message.received_at, message.expiry_at) == (1.0, 1.5, 2.0)
    assert message.read_by_me
    again = persist.message_record(message)
    assert again.value == encode_record(kept)


def test_times_before_the_epoch_are_stored_as_zero() -> None:
    message = GroupMessage(
        message_id=b"m" * 16, group=b"g" * 32, sender=b"s" * 32, outgoing=True, body="x",
        sent_at=-5.0, received_at=-1.0, expiry_at=0.0004,
    )  # fmt: skip
    value = persist.message_record(message).value
    assert value == encode_record(
        _message_state(
            b"g" * 32,
            outgoing=True,
            body="x",
            sent_at=0,
            received_at=0,
            expiry_at=0,
            read_by_me=False,
        )
    )


def _storage_error(records: list[StoredRecord], match: str) -> None:
    book = GroupBook(Mesh.of("x").books["x"].identity, NodeConfig(), SeededRng(1, "x"))
    with pytest.raises(StorageError, match=match):
        persist.restore(book, records, T0)


def test_records_that_do_not_decode_or_do_not_belong_are_storage_errors() -> None:
    mesh, gid = _busy_group()
    records = _records(mesh.books["alice"])
    group = next(r for r in records if r.kind is RecordKind.GROUP)
    own = next(r for r in records if r.kind is RecordKind.GROUP_KEY and r.key.endswith(b"\xff" * 4))
    chain = next(r for r in records if r.kind is RecordKind.GROUP_KEY and r != own)
    message = next(r for r in records if r.kind is RecordKind.GROUP_MESSAGE)

    def with_value(record: StoredRecord, value: bytes) -> StoredRecord:
        return dataclasses.replace(record, value=value)

    _storage_error([with_value(group, group.value[:-3])], "group record")
    _storage_error([group, with_value(chain, b"\x00garbage")], "GROUP_KEY record does not decode")
    _storage_error([group, with_value(chain, message.value)], "GROUP_KEY record holds another")
    # our own chain under a receiving chain's key (no 0xFFFFFFFF): it belongs nowhere
    _storage_error([group, dataclasses.replace(own, key=chain.key)], "holds another type")
    _storage_error([group, with_value(message, own.value)], "GROUP_MESSAGE record holds another")
    _storage_error([group, with_value(message, b"")], "GROUP_MESSAGE record does not decode")
    assert gid == group.key
