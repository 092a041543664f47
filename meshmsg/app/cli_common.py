"""What every ``meshmsg`` command shares: the console, the context, contact lookup, formatting.

The commands live in ``cli.py`` (the group, ``init``, ``id``, ``run``, ``demo``),
``cli_contacts.py``, ``cli_messages.py`` and ``cli_admin.py``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import click
from rich.console import Console

from meshmsg.app.client import NOT_RUNNING, DaemonClient
from meshmsg.app.datadir import (
    PASSPHRASE_ENV,
    OfflineNode,
    Settings,
    Unlocked,
    open_offline,
    require_initialised,
    unlock,
)
from meshmsg.app.safe_text import escape_controls
from meshmsg.app.snapshot import read_only_node
from meshmsg.app.views import JSON, contacts_view
from meshmsg.core.node import Node
from meshmsg.errors import KeystoreError, LocalProtocolError
from meshmsg.net.storage import DataDir

# Rich cuts output that is not a terminal to 80 columns, which wraps a contact list or a benchmark
# table piped into a file or `grep` mid-row. Piped, a table is as wide as its content up to this.
PIPED_WIDTH: Final = 240
COLUMNS_ENV: Final = "COLUMNS"

# emoji=False: a body's `:warning:` is text, not an emoji the sender slipped in.
console = Console(highlight=False, emoji=False)


class Duration(click.ParamType[float]):
    """A duration: ``90s``, ``15m``, ``2h``, ``3d`` or plain seconds; in seconds, > 0."""

    name = "duration"
    UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3_600, "d": 86_400}
    _FORM: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", re.IGNORECASE)

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        match = self._FORM.fullmatch(str(value))
        seconds = float(match.group(1)) * self.UNITS[match.group(2).lower()] if match else 0.0
        if seconds <= 0:
            self.fail(f"{value!r} is not a duration: use 90s, 15m, 2h, 3d or seconds", param, ctx)
        return seconds


def widen_piped_output(ctx: click.Context) -> None:
    """Unless stdout is a terminal (or COLUMNS says otherwise), print up to :data:`PIPED_WIDTH`.

    Sets our console's width, and COLUMNS for the command's duration so that the consoles of
    lazily imported commands (``bench``, ``sim``) follow.
    """
    if console.is_terminal or os.environ.get(COLUMNS_ENV):
        return
    console.width = PIPED_WIDTH
    os.environ[COLUMNS_ENV] = str(PIPED_WIDTH)
    ctx.call_on_close(lambda: os.environ.pop(COLUMNS_ENV, None))


@dataclass
class Ctx:
    """What every command needs: the data directory, its settings, the daemon if it runs."""

    data_dir: DataDir
    _settings: Settings | None = field(default=None, repr=False)
    _snapshot: Node | None = field(default=None, repr=False)
    _unlocked: Unlocked | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.load(self.data_dir)
        return self._settings

    def daemon(self) -> DaemonClient | None:
        return DaemonClient.connect(self.data_dir)

    def require_daemon(self) -> DaemonClient:
        client = self.daemon()
        if client is None:
            raise click.ClickException(NOT_RUNNING)
        return client

    def unlock(self) -> Unlocked:
        """Ask for the passphrase (unless a key file is configured), then unlock with a spinner."""
        if self._unlocked is not None:  # one prompt and one Argon2id run per command
            return self._unlocked
        require_initialised(self.data_dir)
        settings = self.settings
        secret = _passphrase() if settings.key_file is None else ""
        with console.status("Unlocking the keystore (Argon2id)…"):
            self._unlocked = unlock(self.data_dir, settings, lambda: secret)
        return self._unlocked

    def read_only(self) -> Node:
        """The node as last committed, in memory, for reading while no daemon runs.

        Takes no lock (a daemon may start meanwhile) and writes nothing: see app/snapshot.py.
        """
        if self._snapshot is None:
            self._snapshot = read_only_node(self.data_dir, self.settings, self.unlock())
        return self._snapshot

    @contextmanager
    def offline(self) -> Iterator[OfflineNode]:
        """The node for a command that writes: holds the data directory's lock meanwhile."""
        unlocked = self.unlock()
        with open_offline(self.data_dir, self.settings, unlocked) as node:
            yield node


def _passphrase() -> str:
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        raise KeystoreError(f"no passphrase: set {PASSPHRASE_ENV} or run in a terminal")
    return str(click.prompt("Passphrase", hide_input=True))


pass_ctx = click.make_pass_decorator(Ctx)


def contacts_of(ctx: Ctx) -> list[JSON]:
    client = ctx.daemon()
    if client is not None:
        result: list[JSON] = client.get("/contacts")
        return result
    return contacts_view(ctx.read_only())


def resolve_contact(contacts: list[JSON], who: str) -> JSON:
    """The contact ``who`` names: a name (any case), a peer id prefix, or a fingerprint.

    Raises:
        LocalProtocolError: no contact, or several, match.
    """
    text = who.strip()
    exact = [c for c in contacts if c["name"].lower() == text.lower()]
    if len(exact) == 1:
        return exact[0]
    compact = text.replace("-", "").lower()
    matches = exact or [
        c
        for c in contacts
        if len(compact) >= 4
        and (
            c["peer_id"].startswith(compact)
            or c["fingerprint"].replace("-", "").lower().startswith(compact)
        )
    ]
    if not matches:
        raise LocalProtocolError(f"unknown contact {who!r}: see `meshmsg contact list`")
    if len(matches) > 1:
        names = ", ".join(f"{escape_controls(c['name'])} ({c['fingerprint']})" for c in matches)
        raise LocalProtocolError(f"{who!r} matches several contacts: {names}")
    return matches[0]


def two_lines(safety_number: str) -> str:
    """60 digits as two rows of six groups: easier to read aloud, never wrapped mid-group."""
    groups = safety_number.split()
    return " ".join(groups[:6]) + "\n" + " ".join(groups[6:])


def verified_label(contact: JSON) -> str:
    return "[green]verified[/green]" if contact["verified"] else "[yellow]unverified[/yellow]"


def clock(at: float) -> str:
    moment = datetime.fromtimestamp(at)
    today = datetime.now().date()
    return moment.strftime("%H:%M:%S" if moment.date() == today else "%Y-%m-%d %H:%M")


def preview(body: str, width: int = 40) -> str:
    line = " ".join(body.split())
    return line if len(line) <= width else line[: width - 1] + "…"
