"""Read-only snapshots, backups and restores of a data directory (meshmsg/app/snapshot.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshmsg.app.datadir import (
    Settings,
    Unlocked,
    daemon_lock,
    daemon_running,
    init_data_dir,
    open_offline,
    unlock,
)
from meshmsg.app.snapshot import read_only_node, restore_backup, write_backup
from meshmsg.core.identity import Identity, decode_contact_code, encode_contact_code
from meshmsg.errors import StorageError
from meshmsg.net.storage import DataDir
from meshmsg.sysrng import SystemRng

PASSPHRASE = "pw"


def node_with_history(root: Path) -> tuple[DataDir, Settings, Unlocked, bytes]:
    """A data directory with one contact and one queued message to it."""
    data_dir = DataDir(root / "node")
    init_data_dir(data_dir, passphrase=PASSPHRASE, name="ann", kdf_fast=True)
    settings = Settings.load(data_dir)
    unlocked = unlock(data_dir, settings, lambda: PASSPHRASE)
    bob = Identity.generate(SystemRng())
    card = decode_contact_code(encode_contact_code(bob.public, "bob"))
    with open_offline(data_dir, settings, unlocked) as offline:
        offline.run(lambda node, now: node.add_contact(card, verified=False, now=now))
        offline.run(lambda node, now: node.send_message(card.peer_id, "hello bob", now=now))
    return data_dir, settings, unlocked, card.peer_id


def test_read_only_node_takes_no_lock_and_writes_nothing(tmp_path: Path) -> None:
    data_dir, settings, unlocked, bob = node_with_history(tmp_path)
    before = data_dir.db_path.read_bytes()
    with daemon_lock(data_dir) as held:  # as a daemon that started meanwhile would hold it
        assert held
        node = read_only_node(data_dir, settings, unlocked)
    assert [c.name for c in node.contacts] == ["bob"]
    assert [m.body for m in node.conversations.with_peer(bob)] == ["hello bob"]
    assert data_dir.db_path.read_bytes() == before
    assert not daemon_running(data_dir)
    assert not list(data_dir.root.glob(".snapshot-*"))  # the scratch copy is gone
    killed = data_dir.root / ".snapshot-999999999-1.db"  # left by a command that was killed
    killed.write_bytes(b"sealed rows")
    read_only_node(data_dir, settings, unlocked)
    assert not killed.exists()


def test_backup_and_restore_round_trip(tmp_path: Path) -> None:
    data_dir, _settings, unlocked, bob = node_with_history(tmp_path)
    backup = tmp_path / "backup"
    with daemon_lock(data_dir):  # consistent while a daemon holds the directory
        records = write_backup(data_dir, backup, unlocked.db_key)
    assert records >= 2  # the contact and the message at least
    assert sorted(p.name for p in backup.iterdir()) == ["config.toml", "keystore", "node.db"]
    with pytest.raises(StorageError, match="cannot create backup directory"):
        write_backup(data_dir, backup, unlocked.db_key)  # never overwrites
    fresh = DataDir(tmp_path / "restored")
    assert restore_backup(backup, fresh, unlocked.db_key) == records
    again = unlock(fresh, Settings.load(fresh), lambda: PASSPHRASE)
    assert again.identity.peer_id == unlocked.identity.peer_id
    node = read_only_node(fresh, Settings.load(fresh), again)
    assert [m.body for m in node.conversations.with_peer(bob)] == ["hello bob"]


def test_restore_refuses_while_a_daemon_runs_and_a_backup_that_does_not_open(
    tmp_path: Path,
) -> None:
    data_dir, _settings, unlocked, _bob = node_with_history(tmp_path)
    backup = tmp_path / "backup"
    write_backup(data_dir, backup, unlocked.db_key)
    with daemon_lock(data_dir), pytest.raises(StorageError, match="daemon is running"):
        restore_backup(backup, data_dir, unlocked.db_key)
    with pytest.raises(StorageError, match="wrong database key"):
        restore_backup(backup, DataDir(tmp_path / "other"), bytes(32))
    assert not (tmp_path / "other" / "node.db").exists()
    with pytest.raises(StorageError, match="not a meshmsg backup"):
        restore_backup(tmp_path / "nothing", data_dir, unlocked.db_key)
