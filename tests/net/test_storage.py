"""Unit and property tests of the encrypted SQLite store (meshmsg/net/storage.py)."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmsg.config import StorageConfig
from meshmsg.core.driver import apply_persist
from meshmsg.core.effects import Persist, RecordKind, StoredRecord
from meshmsg.errors import StorageError
from meshmsg.net import storage as storage_module
from meshmsg.net.storage import DB_KEY_BYTES, NONCE_BYTES, DataDir, Storage, new_db_key
from tests.helpers import DictSink

KEY = bytes(range(32))
Model = dict[tuple[RecordKind, bytes], bytes]


def rec(kind: RecordKind, key: bytes, value: bytes) -> StoredRecord:
    return StoredRecord(kind=kind, key=key, value=value)


def as_model(records: list[StoredRecord]) -> Model:
    model = {(r.kind, r.key): r.value for r in records}
    assert len(model) == len(records)  # (kind, key) is unique
    return model


def raw(path: Path) -> closing[sqlite3.Connection]:
    """A plain connection that bypasses Storage, to look at or damage the file."""
    return closing(sqlite3.connect(path, isolation_level=None))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "node.db"


@pytest.fixture
def store(db: Path) -> Iterator[Storage]:
    with Storage.open(db, KEY, durable=False) as storage:
        yield storage


ALL_KINDS = [
    rec(RecordKind.META, b"", b"period=7"),
    rec(RecordKind.CONTACT, b"\x00" * 32, b"alice"),
    rec(RecordKind.CHANNEL, b"\xff" * 32, b"\x00counters"),
    rec(RecordKind.ENVELOPE, os.urandom(16), os.urandom(16_384)),  # spans overflow pages
    rec(RecordKind.MESSAGE, b"m" * 300, b""),
    rec(RecordKind.TOMBSTONE, b"t", b"expires"),
]


# --- round trip and semantics ---------------------------------------------------------------


def test_round_trip_of_every_kind_survives_reopen(db: Path) -> None:
    with Storage.open(db, KEY) as storage:
        assert storage.durable
        storage.apply(Persist(token=1, puts=tuple(ALL_KINDS)))
    with Storage.open(db, KEY) as storage:
        assert as_model(storage.load_all()) == as_model(ALL_KINDS)
        for r in ALL_KINDS:
            assert storage.load_kind(r.kind) == [r]
        assert storage.integrity_check()


def test_iter_all_streams_what_load_all_returns_in_the_same_order(store: Storage) -> None:
    many = [rec(RecordKind.ENVELOPE, bytes([i]) * 16, os.urandom(100)) for i in range(7)]
    store.apply(Persist(token=1, puts=(*ALL_KINDS, *many)))
    for batch in (1, 3, 1_000):
        assert list(store.iter_all(batch)) == store.load_all()


def test_puts_apply_in_order_then_deletes(store: Storage) -> None:
    c, k = RecordKind.CONTACT, b"bob"
    store.apply(Persist(token=1, puts=(rec(c, k, b"one"), rec(c, k, b"two"))))
    assert store.load_all() == [rec(c, k, b"two")]  # the later put wins
    store.apply(Persist(token=2, puts=(rec(c, k, b"three"),), deletes=((c, k),)))
    assert store.load_all() == []  # deletes come after puts
    store.apply(Persist(token=3, deletes=((c, k), (RecordKind.META, b"never"))))
    assert store.load_all() == []  # deleting an absent key is a no-op


def test_same_key_under_two_kinds_is_two_records(store: Storage) -> None:
    store.apply(Persist(token=1, puts=(rec(RecordKind.CONTACT, b"x", b"c"),)))
    store.apply(Persist(token=2, puts=(rec(RecordKind.CHANNEL, b"x", b"k"),)))
    store.apply(Persist(token=3, deletes=((RecordKind.CONTACT, b"x"),)))
    assert store.load_all() == [rec(RecordKind.CHANNEL, b"x", b"k")]


def test_applying_a_persist_twice_is_harmless(store: Storage) -> None:
    persist = Persist(token=5, puts=(rec(RecordKind.META, b"m", b"1"),), deletes=())
    store.apply(persist)
    store.apply(persist)  # a retry after an ambiguous failure
    assert store.load_all() == [rec(RecordKind.META, b"m", b"1")]


def test_in_memory_database_works_for_tests() -> None:
    with Storage.open(":memory:", KEY, durable=False) as storage:
        storage.apply(Persist(token=1, puts=tuple(ALL_KINDS)))
        assert as_model(storage.load_all()) == as_model(ALL_KINDS)


# --- atomicity ------------------------------------------------------------------------------


def test_failing_transaction_leaves_nothing(store: Storage) -> None:
    store.apply(Persist(token=1, puts=(rec(RecordKind.META, b"keep", b"old"),)))
    conn = store._conn
    assert conn is not None
    # Fail at the very end of the transaction: every put has been written by then.
    conn.execute(
        "CREATE TEMP TRIGGER fail BEFORE DELETE ON records BEGIN SELECT RAISE(ABORT, 'inj'); END"
    )
    puts = (rec(RecordKind.META, b"keep", b"new"), rec(RecordKind.CONTACT, b"c", b"v"))
    with pytest.raises(StorageError, match="token 2") as info:
        store.apply(Persist(token=2, puts=puts, deletes=((RecordKind.META, b"keep"),)))
    assert isinstance(info.value.__cause__, sqlite3.Error)
    assert store.load_all() == [rec(RecordKind.META, b"keep", b"old")]
    conn.execute("DROP TRIGGER fail")
    store.apply(Persist(token=3, puts=puts))  # no transaction was left open
    assert len(store.load_all()) == 2


def test_busy_database_times_out_and_leaves_nothing(db: Path) -> None:
    config = StorageConfig(busy_timeout_s=0.05)
    with Storage.open(db, KEY, durable=False, config=config) as storage, raw(db) as other:
        other.execute("BEGIN IMMEDIATE")  # a second writer holds the lock
        with pytest.raises(StorageError, match="locked"):
            storage.apply(Persist(token=1, puts=(rec(RecordKind.META, b"k", b"v"),)))
        other.execute("ROLLBACK")
        assert storage.load_all() == []
        storage.apply(Persist(token=1, puts=(rec(RecordKind.META, b"k", b"v"),)))
        assert storage.load_all() == [rec(RecordKind.META, b"k", b"v")]


# --- keys and tampering ---------------------------------------------------------------------


def test_new_db_key_is_random_and_32_bytes() -> None:
    a, b = new_db_key(), new_db_key()
    assert len(a) == DB_KEY_BYTES == 32
    assert a != b


def test_wrong_db_key_is_refused_even_on_an_empty_database(db: Path) -> None:
    Storage.open(db, KEY).close()
    with pytest.raises(StorageError, match="wrong database key"):
        Storage.open(db, new_db_key())


@pytest.mark.parametrize("length", [0, 16, 31, 33])
def test_db_key_of_wrong_length_is_refused(db: Path, length: int) -> None:
    with pytest.raises(StorageError, match="32 bytes"):
        Storage.open(db, b"k" * length)
    assert not db.exists()


def sealed_of(db: Path, kind: RecordKind) -> list[bytes]:
    with raw(db) as conn:
        rows = conn.execute("SELECT sealed FROM records WHERE kind = ?", (int(kind),)).fetchall()
    return [r[0] for r in rows]


def test_flipped_byte_in_the_file_is_detected_and_names_the_kind(db: Path) -> None:
    with Storage.open(db, KEY, durable=False) as storage:
        storage.apply(Persist(token=1, puts=(rec(RecordKind.CONTACT, b"c", b"v" * 100),)))
        storage.apply(Persist(token=2, puts=(rec(RecordKind.META, b"m", b"ok"),)))
    # Closing checkpointed the WAL into the file; damage the ciphertext there.
    (sealed,) = sealed_of(db, RecordKind.CONTACT)
    data = bytearray(db.read_bytes())
    offset = data.find(sealed)
    assert offset > 0
    assert data.count(sealed) == 1
    data[offset + NONCE_BYTES + 10] ^= 0x01
    db.write_bytes(bytes(data))
    with Storage.open(db, KEY) as storage:
        with pytest.raises(StorageError, match="kind CONTACT failed to decrypt"):
            storage.load_all()
        with pytest.raises(StorageError, match="CONTACT"):
            storage.load_kind(RecordKind.CONTACT)
        assert storage.load_kind(RecordKind.META) == [rec(RecordKind.META, b"m", b"ok")]


def test_rows_swapped_between_keys_are_detected(db: Path) -> None:
    with Storage.open(db, KEY, durable=False) as storage:
        puts = (rec(RecordKind.CHANNEL, b"alice", b"key-a"), rec(RecordKind.CHANNEL, b"bob", b"b"))
        storage.apply(Persist(token=1, puts=puts))
    with raw(db) as conn:
        (a, s_a), (b, s_b) = conn.execute("SELECT row_id, sealed FROM records").fetchall()
        conn.execute("UPDATE records SET sealed = ? WHERE row_id = ?", (s_b, a))
        conn.execute("UPDATE records SET sealed = ? WHERE row_id = ?", (s_a, b))
    with Storage.open(db, KEY) as storage, pytest.raises(StorageError, match="CHANNEL"):
        storage.load_all()


def test_row_moved_to_another_kind_is_detected(db: Path) -> None:
    with Storage.open(db, KEY, durable=False) as storage:
        storage.apply(Persist(token=1, puts=(rec(RecordKind.TOMBSTONE, b"t", b"v"),)))
    with raw(db) as conn:
        conn.execute("UPDATE records SET kind = ?", (int(RecordKind.ENVELOPE),))
    with Storage.open(db, KEY) as storage, pytest.raises(StorageError, match="ENVELOPE"):
        storage.load_all()


def test_unknown_kind_on_disk_is_an_error_not_a_skip(db: Path) -> None:
    with Storage.open(db, KEY, durable=False) as storage:
        storage.apply(Persist(token=1, puts=(rec(RecordKind.META, b"m", b"v"),)))
    with raw(db) as conn:
        conn.execute("UPDATE records SET kind = 77")
    with Storage.open(db, KEY) as storage, pytest.raises(StorageError, match="unknown kind 77"):
        storage.load_all()


def test_tampered_key_check_is_refused(db: Path) -> None:
    Storage.open(db, KEY).close()
    with raw(db) as conn:
        (blob,) = conn.execute("SELECT sealed FROM storage_meta").fetchone()
        conn.execute("UPDATE storage_meta SET sealed = ?", (blob[:-1] + bytes([blob[-1] ^ 1]),))
    with pytest.raises(StorageError, match="key check"):
        Storage.open(db, KEY)


# --- what is on disk ------------------------------------------------------------------------


def test_ids_and_values_are_not_in_clear_in_db_or_wal(db: Path) -> None:
    peer_id, envelope_id = b"PEER" + os.urandom(28), b"ENVL" + os.urandom(12)
    secrets_ = [peer_id, envelope_id, b"alice@example", b"hello world"]
    with Storage.open(db, KEY) as storage:
        storage.apply(Persist(token=1, puts=(rec(RecordKind.CONTACT, peer_id, b"alice@example"),)))
        storage.apply(
            Persist(token=2, puts=(rec(RecordKind.ENVELOPE, envelope_id, b"hello world"),))
        )
        wal = db.with_name(db.name + "-wal")
        on_disk = db.read_bytes() + wal.read_bytes()
        assert len(wal.read_bytes()) > 0  # the records really are in the WAL now
        for s in secrets_:
            assert s not in on_disk
            assert s.hex().encode() not in on_disk
        assert as_model(storage.load_all()) == {
            (RecordKind.CONTACT, peer_id): b"alice@example",
            (RecordKind.ENVELOPE, envelope_id): b"hello world",
        }
    assert all(s not in db.read_bytes() for s in secrets_)


def test_deleted_and_replaced_ciphertext_leaves_the_files_after_checkpoint(db: Path) -> None:
    wal = db.with_name(db.name + "-wal")
    with Storage.open(db, KEY) as storage:
        storage.apply(Persist(token=1, puts=(rec(RecordKind.ENVELOPE, b"e", b"x" * 5_000),)))
        storage.checkpoint()
        old_envelope = sealed_of(db, RecordKind.ENVELOPE)[0]
        storage.apply(Persist(token=2, puts=(rec(RecordKind.CHANNEL, b"a", b"period-key-1"),)))
        old_channel = sealed_of(db, RecordKind.CHANNEL)[0]
        storage.apply(Persist(token=3, puts=(rec(RecordKind.CHANNEL, b"a", b"period-key-2"),)))
        storage.apply(Persist(token=4, deletes=((RecordKind.ENVELOPE, b"e"),)))
        # Why the driver checkpoints: the replaced key state is still in an old WAL frame, and
        # the deleted envelope is still in the database file until its page is copied back.
        assert old_channel in wal.read_bytes()
        assert old_envelope[-64:] in db.read_bytes()
        storage.checkpoint()
        assert wal.stat().st_size == 0
        data = db.read_bytes()
        assert old_channel not in data
        # secure_delete zeroed the cells and the freed overflow pages of the envelope.
        assert old_envelope[:64] not in data
        assert old_envelope[-64:] not in data
        assert storage.load_all() == [rec(RecordKind.CHANNEL, b"a", b"period-key-2")]


def test_database_files_are_private(db: Path) -> None:
    with Storage.open(db, KEY) as storage:
        storage.apply(Persist(token=1, puts=(rec(RecordKind.META, b"m", b"v"),)))
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_not_a_database_is_refused(db: Path) -> None:
    db.write_bytes(os.urandom(8_192))
    with pytest.raises(StorageError, match="cannot open database") as info:
        Storage.open(db, KEY)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


# --- schema versions ------------------------------------------------------------------------


def user_version(db: Path) -> int:
    with raw(db) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def test_version_0_file_is_migrated_to_current(db: Path) -> None:
    with raw(db) as conn:  # an empty SQLite database: user_version 0, no tables
        conn.execute("PRAGMA user_version = 0")
    assert user_version(db) == 0
    with Storage.open(db, KEY) as storage:
        assert storage.schema_version == storage_module.SCHEMA_VERSION == 1
        storage.apply(Persist(token=1, puts=(rec(RecordKind.META, b"m", b"v"),)))
    assert user_version(db) == 1


def test_version_0_file_with_foreign_tables_is_refused(db: Path) -> None:
    with raw(db) as conn:
        conn.execute("CREATE TABLE songs (title TEXT)")
    with pytest.raises(StorageError, match="not a meshmsg database"):
        Storage.open(db, KEY)
    with raw(db) as conn:  # untouched
        assert conn.execute("SELECT name FROM sqlite_schema").fetchall() == [("songs",)]


def test_newer_schema_is_refused_with_a_clear_message(db: Path) -> None:
    Storage.open(db, KEY).close()
    with raw(db) as conn:
        conn.execute("PRAGMA user_version = 9")
    with pytest.raises(StorageError, match=r"version 9 is newer than this meshmsg supports \(1\)"):
        Storage.open(db, KEY)


def _add_index(conn: sqlite3.Connection, keys: object) -> None:
    conn.execute("CREATE INDEX records_by_size ON records (length(sealed))")


def _broken_step(conn: sqlite3.Connection, keys: object) -> None:
    conn.execute("CREATE INDEX records_by_size ON records (length(sealed))")
    conn.execute("CREATE TABLE records (x)")  # fails: the table exists


def test_migration_from_version_1_reseals_every_row(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Storage.open(db, KEY) as storage:
        storage.apply(Persist(token=1, puts=tuple(ALL_KINDS)))
    before = {s for kind in RecordKind for s in sealed_of(db, kind)}
    monkeypatch.setattr(storage_module, "_MIGRATIONS", (*storage_module._MIGRATIONS, _add_index))
    monkeypatch.setattr(storage_module, "SCHEMA_VERSION", 2)
    with Storage.open(db, KEY) as storage:
        assert storage.schema_version == 2
        assert as_model(storage.load_all()) == as_model(ALL_KINDS)
    assert user_version(db) == 2
    after = {s for kind in RecordKind for s in sealed_of(db, kind)}
    assert len(after) == len(ALL_KINDS)
    assert not before & after
    monkeypatch.undo()
    with pytest.raises(StorageError, match="newer"):  # version 1 code refuses the result
        Storage.open(db, KEY)


def test_migration_with_a_wrong_key_is_refused_before_any_change(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Storage.open(db, KEY) as storage:
        storage.apply(Persist(token=1, puts=tuple(ALL_KINDS)))
    before = sealed_of(db, RecordKind.ENVELOPE)
    monkeypatch.setattr(storage_module, "_MIGRATIONS", (*storage_module._MIGRATIONS, _add_index))
    monkeypatch.setattr(storage_module, "SCHEMA_VERSION", 2)
    with pytest.raises(StorageError, match="wrong database key"):
        Storage.open(db, new_db_key())
    assert user_version(db) == 1
    assert sealed_of(db, RecordKind.ENVELOPE) == before


def test_failed_migration_changes_nothing(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Storage.open(db, KEY) as storage:
        storage.apply(Persist(token=1, puts=tuple(ALL_KINDS)))
    monkeypatch.setattr(storage_module, "_MIGRATIONS", (*storage_module._MIGRATIONS, _broken_step))
    monkeypatch.setattr(storage_module, "SCHEMA_VERSION", 2)
    with pytest.raises(StorageError, match="already exists"):
        Storage.open(db, KEY)
    monkeypatch.undo()
    assert user_version(db) == 1
    with Storage.open(db, KEY) as storage:
        assert as_model(storage.load_all()) == as_model(ALL_KINDS)
    with raw(db) as conn:
        indexes = conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'").fetchall()
    assert ("records_by_size",) not in indexes


# --- lifecycle and backup -------------------------------------------------------------------


def test_closed_storage_refuses_use_and_close_is_idempotent(db: Path) -> None:
    storage = Storage.open(db, KEY)
    storage.close()
    storage.close()
    with pytest.raises(StorageError, match="closed"):
        storage.load_all()
    with pytest.raises(StorageError, match="closed"):
        storage.apply(Persist(token=1))


def test_online_backup_opens_only_with_the_same_key(tmp_path: Path, store: Storage) -> None:
    store.apply(Persist(token=1, puts=tuple(ALL_KINDS)))
    target = tmp_path / "backup.db"
    store.backup(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with Storage.open(target, KEY) as copy:
        assert as_model(copy.load_all()) == as_model(ALL_KINDS)
        assert copy.integrity_check()
    with pytest.raises(StorageError, match="wrong database key"):
        Storage.open(target, new_db_key())
    with pytest.raises(StorageError, match="cannot create backup"):
        store.backup(target)  # never overwrites


# --- data directory -------------------------------------------------------------------------


def test_data_dir_is_created_0700_and_tightened(tmp_path: Path) -> None:
    root = tmp_path / "a" / "meshmsg"
    data = DataDir(root).create()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    root.chmod(0o755)
    data.create()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    names = [data.keystore_path, data.key_file_path, data.db_path, data.api_token_path]
    assert [p.name for p in [*names, data.config_path]] == [
        "keystore", "keystore.key", "node.db", "api-token", "config.toml",
    ]  # fmt: skip
    assert all(p.parent == root for p in names)


def test_data_dir_on_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(StorageError, match="cannot create data directory"):
        DataDir(tmp_path / "f").create()


# --- properties -----------------------------------------------------------------------------

kinds = st.sampled_from(RecordKind)
small_keys = st.binary(max_size=2)  # few distinct keys, so puts collide and deletes hit
records = st.builds(StoredRecord, kind=kinds, key=small_keys, value=st.binary(max_size=24))
persists = st.builds(
    Persist,
    token=st.integers(0, 2**32),
    puts=st.lists(records, max_size=5).map(tuple),
    deletes=st.lists(st.tuples(kinds, small_keys), max_size=4).map(tuple),
)


def apply_model(model: Model, persist: Persist) -> None:
    apply_persist(persist, DictSink(model))  # the drivers' one order: puts, then deletes


@given(st.lists(persists, max_size=12))
def test_random_persists_match_a_dict_model(sequence: list[Persist]) -> None:
    model: Model = {}
    with Storage.open(":memory:", KEY, durable=False) as storage:
        for persist in sequence:
            storage.apply(persist)
            apply_model(model, persist)
        assert as_model(storage.load_all()) == model
        for kind in RecordKind:
            expected = {k: v for k, v in model.items() if k[0] == kind}
            assert as_model(storage.load_kind(kind)) == expected


@settings(max_examples=60)  # a file and two opens per example; the in-memory property covers more
@given(st.lists(persists, min_size=1, max_size=8), st.data())
def test_random_persists_survive_reopen(
    tmp_path_factory: pytest.TempPathFactory, sequence: list[Persist], data: st.DataObject
) -> None:
    db = tmp_path_factory.mktemp("prop") / "node.db"
    split = data.draw(st.integers(0, len(sequence)))
    model: Model = {}
    for part in (sequence[:split], sequence[split:]):
        with Storage.open(db, KEY, durable=False) as storage:
            assert as_model(storage.load_all()) == model
            for persist in part:
                storage.apply(persist)
                apply_model(model, persist)
    with Storage.open(db, KEY, durable=False) as storage:
        assert as_model(storage.load_all()) == model
        assert storage.integrity_check()


def test_one_record_is_read_back_by_its_key_and_a_swapped_row_is_refused(db: Path) -> None:
    """``load_one`` (a carried envelope's body read back, issue #13): the record, None when
    absent, and the same authentication as ``load_all``."""
    envelope = rec(RecordKind.ENVELOPE, b"e" * 16, os.urandom(1_024))
    other = rec(RecordKind.ENVELOPE, b"f" * 16, os.urandom(1_024))
    with Storage.open(db, KEY, durable=False) as storage:
        storage.apply(Persist(token=1, puts=(envelope, other)))
        assert storage.load_one(RecordKind.ENVELOPE, b"e" * 16) == envelope
        assert storage.load_one(RecordKind.ENVELOPE, b"g" * 16) is None
        assert storage.load_one(RecordKind.MESSAGE, b"e" * 16) is None
    with raw(db) as conn:
        (a, s_a), (b, s_b) = conn.execute("SELECT row_id, sealed FROM records").fetchall()
        conn.execute("UPDATE records SET sealed = ? WHERE row_id = ?", (s_b, a))
        conn.execute("UPDATE records SET sealed = ? WHERE row_id = ?", (s_a, b))
    with Storage.open(db, KEY) as storage, pytest.raises(StorageError, match="ENVELOPE"):
        storage.load_one(RecordKind.ENVELOPE, b"e" * 16)
