"""``meshmsg group ...`` and ``send``/``inbox`` with a group name, through a running daemon."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from meshmsg.app.client import DaemonClient
from meshmsg.errors import LocalProtocolError
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


def test_send_a_file_to_a_group_and_save_it(runner: CliRunner, tmp_path: Path) -> None:
    alice, bob, carol = tmp_path / "alice", tmp_path / "bob", tmp_path / "carol"
    init(runner, alice, "alice")
    for home, name in ((bob, "bob"), (carol, "carol")):
        assert mm(runner, alice, "contact", "add", init(runner, home, name)).exit_code == 0
    photo = tmp_path / "map.png"
    photo.write_bytes(random.Random(3).randbytes(70_000))
    with DaemonThread(alice) as daemon:
        client = DaemonClient.connect(daemon.data_dir)
        assert client is not None
        assert mm(runner, alice, "group", "create", "cell", "--member", "bob",
                  "--member", "carol").exit_code == 0  # fmt: skip
        sent = mm(runner, alice, "send", "cell", "--file", str(photo), "the", "map")
        assert sent.exit_code == 0, sent.output
        assert "1 file, one copy for all 2 members" in sent.output
        only_file = mm(runner, alice, "group", "send", "cell", "--file", str(photo))
        assert only_file.exit_code == 0, only_file.output
        inbox = mm(runner, alice, "inbox", "cell").output
        assert "the map" in inbox
        assert inbox.count("map.png") == 2  # both messages' files, listed under the group
        ids = [line.split()[1] for line in inbox.splitlines() if "map.png" in line]
        out = tmp_path / "out"
        out.mkdir()
        saved = mm(runner, alice, "save", ids[0], "--out", str(out))
        assert saved.exit_code == 0, saved.output
        assert (out / "map.png").read_bytes() == photo.read_bytes()
        group = client.get("/groups")[0]["group_id"]
        messages = client.get(f"/groups/{group}/messages")
        assert [m["body"] for m in messages] == ["the map", ""]
        with pytest.raises(LocalProtocolError, match="non-empty list"):
            client.post(f"/groups/{group}/messages/files", {"body": "x", "attachments": []})
        with pytest.raises(LocalProtocolError, match="upload it first"):
            client.post(f"/groups/{group}/messages/files", {"attachments": ["ab" * 32]})
        empty = mm(runner, alice, "group", "send", "cell")
        assert empty.exit_code != 0
