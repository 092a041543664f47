"""Hostile text from peers reaches the terminal as text (issue #11, finding 9).

A peer chooses message bodies and the name in its contact code. Before the fix, ``inbox`` and
``chat`` printed them as Rich markup (a ``[link=...]`` became a hyperlink with a hidden target,
``[red]Admin[/red]`` a red "Admin") and let raw ESC bytes through to the terminal.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from rich.console import Console

from meshmsg.app import cli_messages
from meshmsg.app.cli import cli
from meshmsg.app.safe_text import escape_controls, peer_markup, peer_text
from tests.test_cli import DaemonThread, init, mm, runner

__all__ = ["runner"]  # the fixture, shared with test_cli

HOSTILE_LINK = "[link=http://evil.example]https://it.internal/reset[/link]"
HOSTILE_BODY = (
    f"{HOSTILE_LINK} [blink]now[/blink] \x1b[31mred\x1b]8;;http://x\x07 \u202eevil\x9b\x7f"
)
HOSTILE_NAME = "[red]Admin[/red]"


def terminal_console() -> tuple[Console, io.StringIO]:
    """A console that believes it writes to a colour terminal (so it would emit links, blink)."""
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=200, highlight=False, emoji=False), out


def test_escape_controls_spells_out_every_control() -> None:
    assert escape_controls("a\x1bb") == "a\\x1bb"
    assert escape_controls("\x00\x7f\x85\x9b") == "\\x00\\x7f\\x85\\x9b"
    bidi = "\u202a\u202e\u2066\u2069\u061c"
    assert escape_controls(bidi) == "\\u202a\\u202e\\u2066\\u2069\\u061c"
    assert escape_controls("line\nnext\ttab") == "line\\x0anext\\x09tab"
    assert escape_controls("line\nnext\ttab", multiline=True) == "line\nnext\ttab"
    assert escape_controls("\u2028\ud800") == "\\u2028\\ud800"
    assert escape_controls("Zoë 日本 🙂 [x]") == "Zoë 日本 🙂 [x]"  # printable text is untouched


def test_peer_text_is_never_markup_even_on_a_terminal() -> None:
    console, out = terminal_console()
    console.print(peer_text(HOSTILE_BODY, multiline=True))
    console.print(f"[bold]{peer_markup(HOSTILE_NAME)}[/bold]")
    shown = out.getvalue()
    assert "\x1b]8;" not in shown  # no OSC 8 hyperlink: neither Rich's nor the peer's
    assert "\x1b[5m" not in shown  # no blink
    assert "\x1b[31m" not in shown  # neither the peer's red nor Rich's [red]
    assert HOSTILE_LINK in shown
    assert "[red]Admin[/red]" in shown
    assert "\\x1b[31mred\\x1b]8;;http://x\\x07 \\u202eevil\\x9b\\x7f" in shown


def test_chat_line_keeps_markup_literal_and_indents_extra_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    console, out = terminal_console()
    monkeypatch.setattr(cli_messages, "console", console)
    cli_messages._print_chat_line(HOSTILE_NAME, True, "hi\n12:00 you: fake line\x1b[2J", 0.0)
    shown = out.getvalue()
    assert "[red]Admin[/red]" in shown
    assert "\x1b[2J" not in shown
    assert "\\x1b[2J" in shown
    assert "\n    12:00 you: fake line" in shown  # cannot pass for a line of its own


def test_inbox_and_contact_list_show_hostile_text_literally(
    runner: CliRunner, tmp_path: Path
) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    init(runner, alice, "alice")
    bob_code = init(runner, bob, HOSTILE_NAME)  # a name a contact code may legitimately carry
    assert mm(runner, alice, "contact", "add", bob_code).exit_code == 0
    listed = mm(runner, alice, "contact", "list").output
    assert HOSTILE_NAME in listed
    with DaemonThread(alice):
        sent = mm(runner, alice, "send", HOSTILE_NAME, "-", stdin=HOSTILE_BODY)
        assert sent.exit_code == 0, sent.output
        for args in (("inbox",), ("inbox", HOSTILE_NAME), ("status",), ("contact", "list")):
            result = mm(runner, alice, *args)
            assert result.exit_code == 0, result.output
            assert "\x1b" not in result.output, args
            assert "\u202e" not in result.output, args
        conversation = mm(runner, alice, "inbox", HOSTILE_NAME).output
        assert HOSTILE_LINK in conversation
        assert "[blink]now[/blink]" in conversation
        assert "\\x1b[31mred" in conversation
        assert f"Messages with {HOSTILE_NAME}" in conversation


def test_piped_contact_list_is_not_cut_to_80_columns(runner: CliRunner, tmp_path: Path) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    init(runner, alice, "alice")
    long_name = "Bartholomew Longname-Example of the Field Office"
    bob_code = init(runner, bob, "bob")
    assert mm(runner, alice, "contact", "add", bob_code, "--name", long_name).exit_code == 0
    listed = mm(runner, alice, "contact", "list").output
    row = next(line for line in listed.splitlines() if long_name in line)
    assert "not yet (at first meeting)" in row  # the whole row on one line
    assert max(len(line) for line in listed.splitlines()) > 80
    assert "COLUMNS" not in os.environ  # set for the command only (bench's console reads it)


def test_other_consoles_are_not_cut_either(runner: CliRunner, tmp_path: Path) -> None:
    """bench and sim make their own rich Console: COLUMNS carries the width to them."""

    @click.command("width-probe")
    def probe() -> None:
        click.echo(f"width={Console().width}")

    cli.add_command(probe)
    try:
        shown = mm(runner, tmp_path, "width-probe").output
    finally:
        del cli.commands["width-probe"]
    assert shown.strip() == "width=240"
