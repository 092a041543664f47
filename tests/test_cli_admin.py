"""``meshmsg passphrase``, ``backup``, ``restore`` (issue #15, everyday use)."""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner

from tests.test_cli import DaemonThread, assert_one_line_error, init, mm, runner

__all__ = ["runner"]  # the fixture, shared with test_cli


def test_passphrase_change(runner: CliRunner, tmp_path: Path) -> None:
    alice = tmp_path / "alice"
    init(runner, alice, "alice")
    changed = mm(runner, alice, "passphrase", env={"MESHMSG_NEW_PASSPHRASE": "another one"})
    assert changed.exit_code == 0, changed.output
    assert "Passphrase changed" in changed.output
    assert stat.S_IMODE((alice / "keystore").stat().st_mode) == 0o600
    assert not list(alice.glob(".keystore.*"))  # no temporary file left behind
    assert_one_line_error(mm(runner, alice, "id", "--no-qr"), "wrong passphrase")
    new = mm(runner, alice, "id", "--no-qr", env={"MESHMSG_PASSPHRASE": "another one"})
    assert new.exit_code == 0, new.output
    empty = mm(runner, alice, "passphrase", env={
        "MESHMSG_PASSPHRASE": "another one", "MESHMSG_NEW_PASSPHRASE": ""})  # fmt: skip
    assert_one_line_error(empty, "empty passphrase")


def test_backup_while_the_daemon_runs_then_restore(runner: CliRunner, tmp_path: Path) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    init(runner, alice, "alice")
    assert mm(runner, alice, "contact", "add", init(runner, bob, "bob")).exit_code == 0
    saved = tmp_path / "saved"
    with DaemonThread(alice):
        assert mm(runner, alice, "send", "bob", "kept in the backup").exit_code == 0
        made = mm(runner, alice, "backup", str(saved))
        assert made.exit_code == 0, made.output
        assert "records, checked" in made.output
        assert_one_line_error(mm(runner, alice, "backup", str(saved)), "cannot create backup")
        assert_one_line_error(mm(runner, alice, "restore", str(saved), "--force"), "daemon")
    assert_one_line_error(mm(runner, alice, "restore", str(saved)), "--force replaces it")
    copy = tmp_path / "copy"
    restored = mm(runner, copy, "restore", str(saved))
    assert restored.exit_code == 0, restored.output
    assert "Restored" in restored.output
    assert "kept in the backup" in mm(runner, copy, "inbox", "bob").output
    wrong = mm(runner, tmp_path / "other", "restore", str(saved), env={
        "MESHMSG_PASSPHRASE": "not it"})  # fmt: skip
    assert_one_line_error(wrong, "wrong passphrase")
    assert not (tmp_path / "other" / "node.db").exists()
