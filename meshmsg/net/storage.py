"""The node's durable storage: one SQLite file, encrypted row by row, written by one thread.

Theory of operation. The core never touches a disk: it emits ``Persist`` effects (puts and
deletes that must commit together) and learns through ``Node.storage_committed(token)`` that
they did. :meth:`Storage.apply` is that commit: one ``BEGIN IMMEDIATE ... COMMIT`` per effect,
in WAL mode with ``synchronous=FULL``, so when it returns the transaction has been fsynced and
custody may be acknowledged. On restart :meth:`Storage.load_all` hands every record back for
``Node.restore``.

On disk each record is one row of ``records(kind, row_id, sealed)``:

* ``kind`` is the :class:`RecordKind` in clear (so one kind can be loaded alone and a failure
  can name it); counts and sizes per kind are therefore visible to whoever holds the file.
* ``row_id`` is a keyed BLAKE2b hash of ``(kind, key)``: peer ids and envelope ids never appear
  in clear. The real key travels inside ``sealed``.
* ``sealed`` is ``nonce(24) || XChaCha20-Poly1305(len(key) || key || value)`` under a subkey of
  the database key, with a fresh random nonce per write. The associated data binds the schema
  version, the kind and the row id, so a row copied onto another row, another kind or another
  schema version fails authentication instead of being read as the wrong record.

What this does *not* protect: the number of rows per kind, value sizes, write timing, and the
rollback of a row to an older sealed value or the deletion of rows by someone who can write
the file (there is no authenticated root over the whole table). ``docs/storage.md`` has the
full account and the backup procedure.

Threads: a ``Storage`` is used by exactly one thread at a time. The trio driver calls it
through ``trio.to_thread.run_sync`` from a single writer task, which may land on different
worker threads over time, hence ``check_same_thread=False``; concurrent calls from two
threads are a bug (SQLite's own mutex would interleave their transactions).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import stat
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, TypeVar

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

from meshmsg.config import StorageConfig
from meshmsg.core.effects import Persist, RecordKind, StoredRecord
from meshmsg.errors import StorageError

DB_KEY_BYTES: Final = 32  # XChaCha20-Poly1305 and keyed BLAKE2b both take 256-bit keys
NONCE_BYTES: Final = 24  # XChaCha20: random nonces are safe at any volume we will write
ROW_ID_BYTES: Final = 32  # collision-free for any realistic number of rows
_KEY_LEN: Final = struct.Struct(">I")
_AD_PREFIX: Final = b"meshmsg/storage\x00"
_KEY_CHECK: Final = b"meshmsg storage key check"
_LOAD_BATCH: Final = 1_000  # rows decrypted at a time while a node starts (iter_all)
_SELECT_ALL: Final = "SELECT kind, row_id, sealed FROM records ORDER BY kind, row_id"

Migration = Callable[[sqlite3.Connection, "_Keys"], None]
T = TypeVar("T")


def new_db_key() -> bytes:
    """Draw a fresh database key (once, at ``meshmsg init``); the keystore seals it."""
    return secrets.token_bytes(DB_KEY_BYTES)


@dataclass(frozen=True, slots=True)
class _Keys:
    """Subkeys of the database key, separated by purpose (BLAKE2b personalisation)."""

    seal: bytes
    row_id: bytes

    @classmethod
    def derive(cls, db_key: bytes) -> _Keys:
        if len(db_key) != DB_KEY_BYTES:
            raise StorageError(f"database key must be {DB_KEY_BYTES} bytes, got {len(db_key)}")
        return cls(
            seal=_subkey(db_key, b"meshmsg-st-seal"), row_id=_subkey(db_key, b"meshmsg-st-rowid")
        )

    def row_id_for(self, kind: RecordKind, key: bytes) -> bytes:
        data = bytes([kind]) + key
        return hashlib.blake2b(data, digest_size=ROW_ID_BYTES, key=self.row_id).digest()


def _subkey(db_key: bytes, purpose: bytes) -> bytes:
    return hashlib.blake2b(b"", digest_size=DB_KEY_BYTES, key=db_key, person=purpose).digest()


def _ad(version: int, label: bytes) -> bytes:
    # The schema version is bound in: a migration that changes the format re-seals every row.
    return _AD_PREFIX + struct.pack(">I", version) + label


def _row_ad(version: int, kind: int, row_id: bytes) -> bytes:
    # row_id is a keyed hash of (kind, key), so binding it binds the record's real key.
    return _ad(version, bytes([kind]) + row_id)


def _seal(keys: _Keys, plaintext: bytes, ad: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, nonce, keys.seal)


def _open_sealed(keys: _Keys, sealed: bytes, ad: bytes) -> bytes | None:
    """Decrypt and authenticate, or return ``None`` (the caller knows what failed)."""
    if len(sealed) < NONCE_BYTES:
        return None
    try:
        return crypto_aead_xchacha20poly1305_ietf_decrypt(
            sealed[NONCE_BYTES:], ad, sealed[:NONCE_BYTES], keys.seal
        )
    except CryptoError:
        return None


# --- schema ---------------------------------------------------------------------------------


def _create_v1(conn: sqlite3.Connection, keys: _Keys) -> None:
    """Version 1: the records table and the key check."""
    conn.execute(
        "CREATE TABLE records (kind INTEGER NOT NULL, row_id BLOB NOT NULL, sealed BLOB NOT NULL,"
        " PRIMARY KEY (kind, row_id)) WITHOUT ROWID"
    )
    # A sealed constant lets a wrong key fail at open, even on an empty database.
    conn.execute("CREATE TABLE storage_meta (name TEXT PRIMARY KEY, sealed BLOB NOT NULL)")
    conn.execute(
        "INSERT INTO storage_meta (name, sealed) VALUES ('key_check', ?)",
        (_seal(keys, _KEY_CHECK, _ad(1, b"key_check")),),
    )


_MIGRATIONS: tuple[Migration, ...] = (_create_v1,)
"""``_MIGRATIONS[n]`` takes the schema from version ``n`` to ``n + 1``; append, never edit."""
SCHEMA_VERSION: int = len(_MIGRATIONS)
"""The version this code writes, kept in ``PRAGMA user_version``."""


def _migrate(conn: sqlite3.Connection, keys: _Keys) -> int:
    """Check the key, bring the schema to :data:`SCHEMA_VERSION`; return the version.

    Runs inside one transaction, so a failed step leaves the file as it was.
    """
    found = _user_version(conn)
    if found > SCHEMA_VERSION:
        raise StorageError(
            f"database schema version {found} is newer than this meshmsg supports "
            f"({SCHEMA_VERSION}); upgrade meshmsg or open a backup made by this version"
        )
    if found == 0 and _table_count(conn) > 0:
        raise StorageError("not a meshmsg database: it has tables but no meshmsg schema version")
    if found >= 1:
        _verify_key(conn, keys, found)  # before any migration re-seals rows under this key
    for version in range(found, SCHEMA_VERSION):
        _MIGRATIONS[version](conn, keys)
        if version >= 1:
            _reseal_all(conn, keys, version, version + 1)
        conn.execute(f"PRAGMA user_version = {version + 1}")
    return SCHEMA_VERSION


def _user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def _table_count(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM sqlite_schema WHERE type = 'table'").fetchone()
    return int(row[0])


def _reseal_all(conn: sqlite3.Connection, keys: _Keys, old: int, new: int) -> None:
    """Re-encrypt every row under the new version's associated data (fresh nonces)."""
    rows = conn.execute("SELECT kind, row_id, sealed FROM records").fetchall()
    for kind, row_id, sealed in rows:
        plain = _open_sealed(keys, sealed, _row_ad(old, kind, row_id))
        if plain is None:
            raise StorageError(f"record of kind {_kind_name(kind)} failed to decrypt in migration")
        conn.execute(
            "UPDATE records SET sealed = ? WHERE kind = ? AND row_id = ?",
            (_seal(keys, plain, _row_ad(new, kind, row_id)), kind, row_id),
        )
    conn.execute(
        "UPDATE storage_meta SET sealed = ? WHERE name = 'key_check'",
        (_seal(keys, _KEY_CHECK, _ad(new, b"key_check")),),
    )


def _key_check_blob(conn: sqlite3.Connection) -> bytes:
    row = conn.execute("SELECT sealed FROM storage_meta WHERE name = 'key_check'").fetchone()
    if row is None or not isinstance(row[0], bytes):
        raise StorageError("database has no key check row: damaged or not written by meshmsg")
    return row[0]


_KINDS: Final = {int(k): k for k in RecordKind}


def _kind_name(kind: object) -> str:
    known = _KINDS.get(kind) if isinstance(kind, int) else None
    return known.name if known is not None else f"<unknown kind {kind!r}>"


# --- the store ------------------------------------------------------------------------------


class Storage:
    """The node's encrypted record store (see the module docstring).

    Create with :meth:`open`; use as a context manager or call :meth:`close`. Every method may
    raise :class:`StorageError`; the original sqlite3 or nacl exception is its ``__cause__``.
    """

    def __init__(
        self, conn: sqlite3.Connection, keys: _Keys, *, version: int, durable: bool
    ) -> None:
        # Use open(): it sets the pragmas, migrates and checks the key before this runs.
        self._conn: sqlite3.Connection | None = conn
        self._keys = keys
        self._version = version
        self._durable = durable
        self._erase_owed = False  # a checkpoint after erased key state is still to do

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        db_key: bytes,
        *,
        durable: bool = True,
        config: StorageConfig | None = None,
    ) -> Storage:
        """Open (creating if needed) the database at ``path`` under ``db_key``.

        Args:
            path: the database file (created 0600), or ``":memory:"`` for tests.
            db_key: 32 bytes from :func:`new_db_key`, kept in the sealed keystore.
            durable: ``synchronous=FULL`` (every commit fsynced). ``False`` gives ``NORMAL``,
                which survives a process crash but may lose the last commits on power loss:
                only for tests and benchmarks, never where custody is promised.
            config: timeouts; defaults to :class:`StorageConfig`.

        Raises:
            StorageError: not a database, not a meshmsg database, a newer schema, a wrong
                key or tampered key check, WAL unavailable, or any sqlite error.
        """
        keys = _Keys.derive(db_key)
        config = config if config is not None else StorageConfig()
        conn = _connect(path, config)
        try:
            _configure(conn, in_memory=str(path) == ":memory:", durable=durable)
            version = _in_transaction(conn, lambda: _migrate(conn, keys))
        except sqlite3.Error as exc:
            conn.close()
            raise StorageError(f"cannot open database {os.fspath(path)!r}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn, keys, version=version, durable=durable)

    @property
    def schema_version(self) -> int:
        """The schema version of the open database (bound into every row's associated data)."""
        return self._version

    @property
    def durable(self) -> bool:
        """Whether commits are fsynced (``synchronous=FULL``)."""
        return self._durable

    def apply(self, persist: Persist) -> None:
        """Commit ``persist`` atomically; return only once it is durable (if opened durable).

        Puts are applied in order (a later put of the same key wins), then deletes (deleting an
        absent key is a no-op). Applying the same ``Persist`` twice gives the same state, so a
        driver may retry a failed one, as long as it does so before any later one.

        Raises:
            StorageError: the transaction failed and was rolled back; nothing of it is visible.
        """
        conn = self._require_open()
        # Encrypt before taking the write lock: the lock is then held only for the writes.
        puts = [self._seal_record(r) for r in persist.puts]
        deletes = [(int(kind), self._keys.row_id_for(kind, key)) for kind, key in persist.deletes]

        def write() -> None:
            conn.executemany(
                "INSERT INTO records (kind, row_id, sealed) VALUES (?, ?, ?)"
                " ON CONFLICT (kind, row_id) DO UPDATE SET sealed = excluded.sealed",
                puts,
            )
            conn.executemany("DELETE FROM records WHERE kind = ? AND row_id = ?", deletes)

        try:
            _in_transaction(conn, write)
        except sqlite3.Error as exc:
            raise StorageError(f"commit of persist token {persist.token} failed: {exc}") from exc
        if persist.erases_keys or self._erase_owed:
            self._erase_now()

    def _erase_now(self) -> None:
        """After a commit that removed key state: checkpoint so the replaced bytes leave the
        WAL at once (docs/storage.md, "Deleted data"). The commit stands either way; a
        checkpoint a reader blocked is owed and tried again after the next commit."""
        try:
            self.checkpoint()
        except StorageError:
            self._erase_owed = True
            return
        self._erase_owed = False

    def load_all(self) -> list[StoredRecord]:
        """Decrypt every record, ordered by kind (order within a kind is unspecified).

        Raises:
            StorageError: a row fails to authenticate (tampered, swapped, or another key); the
                message names its kind. No row is ever skipped silently.
        """
        return self._load(_SELECT_ALL, ())

    def iter_all(self, batch: int = _LOAD_BATCH) -> Iterator[StoredRecord]:
        """The records of :meth:`load_all`, in the same order, decrypted ``batch`` rows at a
        time: a daemon starting with 100,000 carried envelopes never holds every sealed row and
        its plaintext at once (that peak, ~2 x 110 MB, stayed in the allocator after the start:
        docs/performance.md, "mem-daemon"). Consume it before any other call on this storage.

        Raises:
            StorageError: as :meth:`load_all`, when the failing row is reached.
        """
        cursor = self._query(lambda c: c.execute(_SELECT_ALL))
        while rows := self._query(lambda _: cursor.fetchmany(batch)):
            for kind, row_id, sealed in rows:
                yield self._open_row(kind, row_id, sealed)

    def load_kind(self, kind: RecordKind) -> list[StoredRecord]:
        """Decrypt the records of one kind (see :meth:`load_all`)."""
        return self._load(
            "SELECT kind, row_id, sealed FROM records WHERE kind = ? ORDER BY row_id", (int(kind),)
        )

    def load_one(self, kind: RecordKind, key: bytes) -> StoredRecord | None:
        """Decrypt the record ``(kind, key)``, or None if there is none (see :meth:`load_all`
        for the errors)."""
        row_id = self._keys.row_id_for(kind, key)
        rows = self._query(
            lambda c: c.execute(
                "SELECT kind, row_id, sealed FROM records WHERE kind = ? AND row_id = ?",
                (int(kind), row_id),
            ).fetchall()
        )
        return self._open_row(*rows[0]) if rows else None

    def integrity_check(self) -> bool:
        """Run ``PRAGMA integrity_check``; ``True`` when SQLite reports ``ok``."""
        rows = self._query(lambda c: c.execute("PRAGMA integrity_check").fetchall())
        return [tuple(r) for r in rows] == [("ok",)]

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and truncate the WAL to zero bytes.

        Deleted and replaced rows are zeroed in the database file (``secure_delete``), but
        their sealed bytes stay in the WAL until it is checkpointed and reset. The driver calls
        this every ``StorageConfig.checkpoint_interval_s``; :meth:`apply` calls it itself after
        a ``Persist`` marked ``erases_keys``.

        Raises:
            StorageError: a reader blocked the checkpoint past the busy timeout, or I/O failed.
        """
        row = self._query(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
        if row is not None and row[0] != 0:
            raise StorageError("WAL checkpoint blocked by another connection; retry later")

    def backup(self, target: str | os.PathLike[str]) -> None:
        """Copy the live database to ``target`` (SQLite online backup; the file is 0600).

        The copy is encrypted like the original: it opens only with the same database key,
        which lives in the keystore, so keep the keystore (and its passphrase) with backups.

        Raises:
            StorageError: the target exists or cannot be written.
        """
        conn = self._require_open()
        try:
            _create_private_file(Path(target))
            dest = sqlite3.connect(target)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot create backup {os.fspath(target)!r}: {exc}") from exc
        try:
            conn.backup(dest)
        except sqlite3.Error as exc:
            raise StorageError(f"backup to {os.fspath(target)!r} failed: {exc}") from exc
        finally:
            dest.close()

    def close(self) -> None:
        """Close the connection (SQLite checkpoints and removes the WAL). Idempotent."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except sqlite3.Error as exc:
                raise StorageError(f"closing the database failed: {exc}") from exc

    def __enter__(self) -> Storage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- internals --------------------------------------------------------------------------

    def _require_open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError("storage is closed")
        return self._conn

    def _query(self, run: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._require_open()
        try:
            return run(conn)
        except sqlite3.Error as exc:
            raise StorageError(f"database read failed: {exc}") from exc

    def _seal_record(self, record: StoredRecord) -> tuple[int, bytes, bytes]:
        kind = int(record.kind)
        row_id = self._keys.row_id_for(record.kind, record.key)
        plain = _KEY_LEN.pack(len(record.key)) + record.key + record.value
        return kind, row_id, _seal(self._keys, plain, _row_ad(self._version, kind, row_id))

    def _load(self, sql: str, params: tuple[int, ...]) -> list[StoredRecord]:
        rows = self._query(lambda c: c.execute(sql, params).fetchall())
        return [self._open_row(kind, row_id, sealed) for kind, row_id, sealed in rows]

    def _open_row(self, kind: object, row_id: object, sealed: object) -> StoredRecord:
        name = _kind_name(kind)
        if not (isinstance(kind, int) and isinstance(row_id, bytes) and isinstance(sealed, bytes)):
            raise StorageError(f"malformed row of kind {name}: wrong column types")
        plain = _open_sealed(self._keys, sealed, _row_ad(self._version, kind, row_id))
        record_kind = _KINDS.get(kind)
        if plain is None or record_kind is None or len(plain) < _KEY_LEN.size:
            raise StorageError(
                f"record of kind {name} failed to decrypt: tampered, moved from another row, "
                "or written under another key"
            )
        (key_len,) = _KEY_LEN.unpack_from(plain)
        key = plain[_KEY_LEN.size : _KEY_LEN.size + key_len]
        if len(key) != key_len or self._keys.row_id_for(record_kind, key) != row_id:
            raise StorageError(f"record of kind {name} does not match its row id")
        return StoredRecord(kind=record_kind, key=key, value=plain[_KEY_LEN.size + key_len :])


def _connect(path: str | os.PathLike[str], config: StorageConfig) -> sqlite3.Connection:
    try:
        file = Path(path)
        if str(path) != ":memory:" and not file.exists():
            # Create the file 0600 ourselves: SQLite gives the -wal and -shm files the same
            # mode. SQLite fsyncs the directory for a new WAL but not for a new database file.
            _create_private_file(file)
            _fsync_dir(file.parent)
        return sqlite3.connect(
            path, timeout=config.busy_timeout_s, isolation_level=None, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(f"cannot open database {os.fspath(path)!r}: {exc}") from exc


def _configure(conn: sqlite3.Connection, *, in_memory: bool, durable: bool) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != ("memory" if in_memory else "wal"):
        raise StorageError(f"WAL mode unavailable (journal_mode is {mode!r})")
    # FULL: each commit fsyncs the WAL, so a commit that returned survives power loss.
    conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
    # macOS only: a plain fsync there does not flush the drive's cache.
    conn.execute(f"PRAGMA fullfsync = {'ON' if durable else 'OFF'}")
    conn.execute("PRAGMA secure_delete = ON")  # zero deleted and replaced rows in the file
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA trusted_schema = OFF")  # no functions called from schema objects


def _in_transaction(conn: sqlite3.Connection, work: Callable[[], T]) -> T:
    """Run ``work`` inside ``BEGIN IMMEDIATE ... COMMIT``, rolling back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work()
        conn.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back by itself already (e.g. SQLITE_FULL during COMMIT).
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _verify_key(conn: sqlite3.Connection, keys: _Keys, version: int) -> None:
    if _open_sealed(keys, _key_check_blob(conn), _ad(version, b"key_check")) != _KEY_CHECK:
        raise StorageError("wrong database key, or the key check was tampered with")


def _create_private_file(path: Path) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


# --- the data directory ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataDir:
    """The layout of a node's data directory (mode 0700).

    * ``keystore``: the sealed keystore blob, written by ``meshmsg.app.keystore.save_keystore``. Its
      secret is the identity record followed by the 32-byte database key (see docs/storage.md).
    * ``keystore.key``: default place of the 0600 key file of unattended relays
      (``keystore.create_key_file``); an operator may keep it on other media instead.
    * ``node.db`` (with ``-wal`` and ``-shm``): the :class:`Storage`.
    * ``api-token``: the bearer token of the local HTTP API.
    * ``config.toml``: the node's settings.
    * ``chunks/``: attachment chunks, one slot file per attachment
      (``meshmsg.net.chunkstore``): ciphertext under each attachment's own key, which lives
      only in ``node.db``.
    """

    root: Path

    @property
    def keystore_path(self) -> Path:
        return self.root / "keystore"

    @property
    def key_file_path(self) -> Path:
        return self.root / "keystore.key"

    @property
    def db_path(self) -> Path:
        return self.root / "node.db"

    @property
    def api_token_path(self) -> Path:
        return self.root / "api-token"

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def chunks_path(self) -> Path:
        return self.root / "chunks"

    def create(self) -> DataDir:
        """Create the directory if needed and make it 0700 (tightening a wider mode).

        Raises:
            StorageError: the path exists and is not a directory, or the OS refused.
        """
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            if stat.S_IMODE(self.root.stat().st_mode) != 0o700:
                self.root.chmod(0o700)
        except OSError as exc:
            raise StorageError(f"cannot create data directory {self.root}: {exc}") from exc
        return self


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["DB_KEY_BYTES", "SCHEMA_VERSION", "DataDir", "Storage", "new_db_key"]
