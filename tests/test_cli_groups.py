"""``meshmsg group ...`` and ``send``/``inbox`` with a group name, through a running daemon."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from tests.test_cli import DaemonThread, assert_one_line_error, init, mm, runner

__all__ = ["runner"]  # the fixture, used by name


def test_group_commands_through_the_daemon(runner: CliRunner, tmp_path: Path) -> None:
    alice, bob, carol = tmp_path / "alice", tmp_path / "bob", tmp_path / "carol"
    init(runner, alice, "alice")
    for home, name in ((bob, "bob"), (carol, "carol")):
        code = init(runner, home, name)
        assert mm(runner, alice, "contact", "add", code).exit_code == 0
    with DaemonThread(alice):
        created = mm(runner, alice, "group", "create", "cell", "--member", "bob",
                     "--member", "carol")  # fmt: skip
        assert created.exit_code == 0, created.output
        assert "3 members" in created.output
        assert "not the history" in created.output
        listed = mm(runner, alice, "group", "list")
        assert "cell" in listed.output
        shown = mm(runner, alice, "group", "show", "cell")
        assert shown.exit_code == 0, shown.output
        for text in ("bob", "carol", "you", "admin", "epoch 0", "you are an admin"):
            assert text in shown.output
        sent = mm(runner, alice, "send", "cell", "hello", "all")  # a group name works
        assert sent.exit_code == 0, sent.output
        assert "one copy for all 2 members" in sent.output
        inbox = mm(runner, alice, "inbox", "cell")
        assert "hello all" in inbox.output
        removed = mm(runner, alice, "group", "remove", "cell", "carol")
        assert removed.exit_code == 0, removed.output
        assert "epoch 1" in removed.output
        assert "carol" not in removed.output.split("removed:")[0]
        assert_one_line_error(mm(runner, alice, "group", "add", "cell", "zed"), "unknown contact")
        assert_one_line_error(mm(runner, alice, "group", "add", "cell", "bob"), "already a member")
        assert_one_line_error(mm(runner, alice, "group", "show", "nope"), "no group 'nope'")
        left = mm(runner, alice, "group", "leave", "cell")
        assert left.exit_code == 0, left.output
        assert "you are not a member" in left.output
        assert_one_line_error(mm(runner, alice, "send", "cell", "x"), "no longer a member")
