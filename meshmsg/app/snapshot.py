"""Consistent copies of the database: read-only views without the daemon, backups, restores.

Every copy goes through SQLite's online backup API from a **read-only** connection of our own:
it sees one committed state (the daemon may be writing meanwhile, in WAL mode readers and the
writer do not block each other), and it takes no lock of ours, so a daemon that starts during a
copy starts normally. Nothing here writes to ``node.db`` except :func:`restore_backup`, which
refuses while a daemon holds the data directory.

* :func:`read_only_node`: the Node rebuilt in memory from a snapshot, for ``inbox``,
  ``contact list``, ``id`` while no daemon runs. Its changes are never written anywhere.
* :func:`write_backup` / :func:`restore_backup`: ``meshmsg backup PATH`` / ``restore PATH``:
  ``keystore``, ``node.db`` and ``config.toml`` in a directory, checked after writing by opening
  the copy with the key and reading every record.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final
from urllib.parse import quote

from meshmsg.app import keystore
from meshmsg.app.datadir import Settings, Unlocked, daemon_lock
from meshmsg.core.node import Node
from meshmsg.errors import StorageError
from meshmsg.net.storage import DataDir, Storage
from meshmsg.sysrng import SystemRng

BACKUP_FILES: Final = ("keystore", "node.db", "config.toml")
_SIDE_FILES: Final = ("-wal", "-shm", "-journal")


def copy_database(source: Path, target: Path) -> None:
    """Copy the committed state of ``source`` into a new 0600 file ``target`` (online backup).

    Raises:
        StorageError: ``source`` cannot be read, or ``target`` exists or cannot be written.
    """
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    except OSError as exc:
        raise StorageError(f"cannot create {target}: {exc}") from exc
    uri = f"file:{quote(str(source.resolve()))}?mode=ro"
    try:
        reader = sqlite3.connect(uri, uri=True)
        try:
            writer = sqlite3.connect(target)
            try:
                reader.backup(writer)
            finally:
                writer.close()
        finally:
            reader.close()
    except sqlite3.Error as exc:
        remove_database(target)
        raise StorageError(f"cannot copy {source} to {target}: {exc}") from exc


def remove_side_files(path: Path) -> None:
    """Delete a database's WAL, shared-memory and journal files, if present."""
    for suffix in _SIDE_FILES:
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def remove_database(path: Path) -> None:
    """Delete a database file and its side files, if present."""
    remove_side_files(path)
    path.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _remove_stale_copies(data_dir: DataDir) -> None:
    """Scratch copies left by a command that was killed (their process is gone)."""
    for path in data_dir.root.glob(".snapshot-*.db"):
        pid = path.name.split("-")[1]
        if pid.isdigit() and not _process_alive(int(pid)):
            remove_database(path)


@contextmanager
def _scratch_copy(data_dir: DataDir) -> Iterator[Path]:
    """A private copy of ``node.db`` inside the data directory (0700), removed afterwards."""
    _remove_stale_copies(data_dir)
    copy = data_dir.root / f".snapshot-{os.getpid()}-{time.monotonic_ns()}.db"
    copy_database(data_dir.db_path, copy)
    try:
        yield copy
    finally:
        remove_database(copy)


def count_records(path: Path, db_key: bytes) -> int:
    """Open a database copy with its key and decrypt every record; how many there are.

    Raises:
        StorageError: not a meshmsg database, a wrong key, or a record that fails to decrypt.
    """
    with Storage.open(path, db_key, durable=False) as storage:
        if not storage.integrity_check():
            raise StorageError(f"{path} fails SQLite's integrity check")
        return len(storage.load_all())


def read_only_node(data_dir: DataDir, settings: Settings, unlocked: Unlocked) -> Node:
    """The node as last committed, in memory: for reading while no daemon runs.

    Raises:
        StorageError: the database cannot be read or decrypted.
    """
    with _scratch_copy(data_dir) as copy, Storage.open(copy, unlocked.db_key) as storage:
        records = storage.load_all()
    return Node(
        identity=unlocked.identity,
        config=settings.node_config(),
        rng=SystemRng(),
        now=time.time(),
        records=records,
    )


def write_backup(data_dir: DataDir, target: Path, db_key: bytes) -> int:
    """``meshmsg backup``: the keystore, a consistent database copy and config.toml in ``target``.

    ``target`` must not exist (a backup never overwrites). Returns the number of records the
    copy holds, counted by opening it.

    Raises:
        StorageError: ``target`` exists, a copy failed, or the copy does not open.
    """
    try:
        target.mkdir(mode=0o700, parents=True, exist_ok=False)
    except OSError as exc:
        raise StorageError(f"cannot create backup directory {target}: {exc}") from exc
    keystore.save_keystore(target / "keystore", keystore.load_keystore(data_dir.keystore_path))
    copy_database(data_dir.db_path, target / "node.db")
    if data_dir.config_path.exists():
        shutil.copy2(data_dir.config_path, target / "config.toml")
    return count_records(target / "node.db", db_key)


def restore_backup(source: Path, data_dir: DataDir, db_key: bytes) -> int:
    """``meshmsg restore``: put a checked backup's files in place of the data directory's.

    ``db_key`` comes from the backup's own keystore. The database copy is checked (opened,
    every record decrypted) before anything of the node is replaced; then ``node.db`` and the
    keystore are each replaced atomically. Returns the number of records restored.

    Raises:
        StorageError: a daemon runs, the backup is incomplete or does not open.
    """
    missing = [name for name in BACKUP_FILES[:2] if not (source / name).is_file()]
    if missing:
        raise StorageError(f"{source} is not a meshmsg backup: no {', '.join(missing)}")
    data_dir.create()
    with daemon_lock(data_dir) as held:
        if not held:
            raise StorageError("the daemon is running: stop it before restoring")
        staged = data_dir.root / f".restore-{os.getpid()}.db"
        remove_database(staged)
        copy_database(source / "node.db", staged)
        try:
            records = count_records(staged, db_key)
        except StorageError:
            remove_database(staged)
            raise
        # A WAL left by the old database (after a crash) must not be replayed into the restored
        # one: remove it first. Interrupted here, the old node.db is still whole; run it again.
        remove_side_files(data_dir.db_path)
        os.replace(staged, data_dir.db_path)
        keystore.save_keystore(data_dir.keystore_path, keystore.load_keystore(source / "keystore"))
        if (source / "config.toml").is_file() and not data_dir.config_path.exists():
            shutil.copy2(source / "config.toml", data_dir.config_path)
        return records


__all__ = [
    "copy_database",
    "count_records",
    "read_only_node",
    "restore_backup",
    "write_backup",
]
