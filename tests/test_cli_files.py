"""``meshmsg send --file``, the attachments in ``inbox WHO``, and ``meshmsg save``."""

from __future__ import annotations

import random
from pathlib import Path

from click.testing import CliRunner

from tests import test_cli
from tests.test_cli import DaemonThread, assert_one_line_error, mm

runner = test_cli.runner  # the fixtures of test_cli, used here too
two_nodes = test_cli.two_nodes


def test_send_files_list_them_and_save_one(
    runner: CliRunner, two_nodes: tuple[Path, Path], tmp_path: Path
) -> None:
    alice, _bob = two_nodes
    photo, notes = tmp_path / "photo.jpg", tmp_path / "notes.txt"
    photo.write_bytes(random.Random(1).randbytes(150_000))
    notes.write_text("agenda\n")
    with DaemonThread(alice):
        sent = mm(runner, alice, "send", "bob", "--file", str(photo), "--file", str(notes),
                  "two files")  # fmt: skip
        assert sent.exit_code == 0, sent.output
        assert "Queued" in sent.output
        inbox = mm(runner, alice, "inbox", "bob").output
        assert "two files" in inbox
        assert "photo.jpg" in inbox
        assert "146.5 KiB" in inbox
        assert "notes.txt" in inbox
        assert "100 %" in inbox
        ids = [line.split()[1] for line in inbox.splitlines() if "photo.jpg" in line]
        out = tmp_path / "out"
        out.mkdir()
        saved = mm(runner, alice, "save", ids[0], "--out", str(out))
        assert saved.exit_code == 0, saved.output
        assert (out / "photo.jpg").read_bytes() == photo.read_bytes()
        assert not (out / "photo.jpg.part").exists()
        again = mm(runner, alice, "save", ids[0], "--out", str(out))
        assert_one_line_error(again, "exists")
        assert_one_line_error(mm(runner, alice, "save", "0123"), "no single attachment")
        missing = mm(runner, alice, "send", "bob", "--file", str(tmp_path / "nope"))
        assert missing.exit_code != 0
