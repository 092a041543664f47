"""The ``meshmsg`` command (click + rich).

Commands talk to the running daemon through its local API when one runs (``meshmsg run``);
``init``, ``id`` and ``contact ...`` also work without one, by opening the data directory
directly (they need the passphrase then). ``send``, ``inbox``, ``chat`` and ``status`` need the
daemon, and say how to start it. Every error is one line on stderr and a non-zero exit code:
:class:`MeshCli` turns ``MeshError`` and ``OSError`` (and trio's exception groups of them) into
``click.ClickException``; nothing prints a traceback for a user's mistake.

This module holds the group, ``init``, ``id``, ``run`` and ``demo``; the other commands are in
``cli_contacts.py`` and ``cli_messages.py``, what they share in ``cli_common.py``.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any, Final, NoReturn

import click
from rich.table import Table

from meshmsg import __version__
from meshmsg.app.cli_admin import backup, config, passphrase, restore
from meshmsg.app.cli_common import (
    Ctx,
    console,
    pass_ctx,
    two_lines,
    verified_label,
    widen_piped_output,
)
from meshmsg.app.cli_contacts import contact
from meshmsg.app.cli_files import save
from meshmsg.app.cli_groups import group
from meshmsg.app.cli_messages import chat, inbox, send, status
from meshmsg.app.cli_run import run
from meshmsg.app.config_edit import local_networks
from meshmsg.app.datadir import (
    PASSPHRASE_ENV,
    check_name,
    default_data_dir,
    init_data_dir,
    kdf_fast_requested,
    own_contact_code,
)
from meshmsg.app.qr import render_terminal
from meshmsg.app.safe_text import escape_controls, peer_markup, peer_text
from meshmsg.app.views import contacts_view
from meshmsg.core.identity import fingerprint
from meshmsg.errors import KeystoreError, MeshError
from meshmsg.net.storage import DataDir

# Subcommands imported only when used: the simulator pulls in matplotlib, and the benchmark
# module may be absent from a build.
LAZY_COMMANDS: Final = {
    "sim": ("meshmsg.sim.cli", "sim"),
    "bench": ("meshmsg.bench.suite", "bench_command"),
    "ui": ("meshmsg.app.ui", "ui_command"),
    "org": ("meshmsg.app.cli_org", "org"),
    "directory": ("meshmsg.app.cli_org", "directory"),
    "request": ("meshmsg.app.cli_org", "request"),
}


class MeshCli(click.Group):
    """A click group with lazily imported subcommands and one-line errors."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy = [name for name in LAZY_COMMANDS if self._lazy(name) is not None]
        return sorted([*super().list_commands(ctx), *lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._lazy(cmd_name)

    def _lazy(self, name: str) -> click.Command | None:
        spec = LAZY_COMMANDS.get(name)
        if spec is None:
            return None
        try:
            module = importlib.import_module(spec[0])
        except ImportError:  # optional part not installed: the command is simply not offered
            return None
        command = getattr(module, spec[1], None)
        return command if isinstance(command, click.Command) else None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (MeshError, OSError) as exc:
            raise click.ClickException(_one_line(exc)) from exc
        except BaseExceptionGroup as group:  # from trio nurseries: report the first real error
            leaf = _first_leaf(group)
            if leaf is None:
                raise
            raise click.ClickException(_one_line(leaf)) from group


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> MeshError | OSError | None:
    for exc in group.exceptions:
        if isinstance(exc, MeshError | OSError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_leaf(exc)
            if found is not None:
                return found
    return None


def _one_line(exc: BaseException) -> str:
    # Errors may quote what a peer sent (a contact's name): click prints them as they are.
    text = escape_controls(str(exc) or type(exc).__name__, multiline=True)
    return " ".join(text.split())


@click.group(cls=MeshCli)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Node data directory [env MESHMSG_HOME; default: the user data directory].",
)
@click.version_option(__version__, prog_name="meshmsg")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None) -> None:
    """meshmsg: a serverless peer-to-peer mesh messenger.

    Start with `meshmsg demo`, or `meshmsg init` then `meshmsg run`.
    """
    ctx.obj = Ctx(DataDir(data_dir if data_dir is not None else default_data_dir()))
    widen_piped_output(ctx)


# --- init, id, run ---------------------------------------------------------------------------


@cli.command()
@click.option("--name", default=None, help="Display name put into your contact code.")
@click.option(
    "--key-file",
    is_flag=True,
    help="Unattended relay: seal the keystore with a new 0600 key file instead of a passphrase.",
)
@click.option("--kdf-fast", is_flag=True, hidden=True, help="Tests only: weakest Argon2id cost.")
@pass_ctx
def init(ctx: Ctx, name: str | None, key_file: bool, kdf_fast: bool) -> None:
    """Create your identity and encrypted data directory."""
    if name is not None:
        check_name(name, "--name")  # before the passphrase prompt, not after
    passphrase = None
    if not key_file:
        passphrase = os.environ.get(PASSPHRASE_ENV)
        if passphrase is None:
            if not sys.stdin.isatty():
                raise KeystoreError(f"no passphrase: set {PASSPHRASE_ENV} or run in a terminal")
            passphrase = str(
                click.prompt("New passphrase", hide_input=True, confirmation_prompt=True)
            )
    with console.status("Creating identity and sealing the keystore (Argon2id)…"):
        identity = init_data_dir(
            ctx.data_dir,
            passphrase=passphrase,
            key_file=key_file,
            name=name,
            kdf_fast=kdf_fast or kdf_fast_requested(),
        )
    console.print(f"Initialised [bold]{ctx.data_dir.root}[/bold]")
    console.print(f"Fingerprint: [bold]{fingerprint(identity.public)}[/bold]")
    if key_file:
        console.print(
            f"[yellow]Key-file mode:[/yellow] anyone who can read {ctx.data_dir.key_file_path} "
            "can read this identity. Keep it 0600, on this machine only."
        )
    _offer_networks()
    console.print("Next: `meshmsg id` shows your contact code; `meshmsg run` starts the node.")


def _offer_networks() -> None:
    """Say which networks this machine is on and how to trust one; mDNS stays off until then."""
    networks = local_networks()
    if not networks:
        return
    console.print("This machine is on: " + ", ".join(f"{n} ({i})" for n, i in networks) + ".")
    console.print(
        "mDNS is off until you trust a network; to find peers on the first one:\n"
        f"  meshmsg config set network.trusted_networks {networks[0][0]}"
    )


@cli.command("id")
@click.option("--no-qr", is_flag=True, help="Do not draw QR codes.")
@pass_ctx
def id_command(ctx: Ctx, no_qr: bool) -> None:
    """Show your contact code (text and QR) and the safety number with each contact."""
    client = ctx.daemon()
    if client is not None:
        view = client.get("/id")
    else:
        node = ctx.read_only()
        view = {
            "name": ctx.settings.name,
            "fingerprint": fingerprint(node.identity.public),
            "peer_id": node.identity.peer_id.hex(),
            "contact_code": own_contact_code(node.identity, ctx.settings),
            "contacts": contacts_view(node),
        }
    name = peer_markup(view["name"]) if view["name"] else "(none set: name = ... in config.toml)"
    console.print(f"Name:        {name}")
    console.print(f"Fingerprint: [bold]{view['fingerprint']}[/bold]")
    console.print(f"Peer id:     {view['peer_id']}")
    console.print("Contact code (give it to people who should be able to reach you):")
    click.echo(view["contact_code"])
    if not no_qr:
        click.echo(render_terminal(view["contact_code"]))
    if view["contacts"]:
        table = Table(title="Safety numbers: compare them in person, then `contact verify`")
        for column in ("contact", "safety number", "verified"):
            table.add_column(column)
        for contact in view["contacts"]:
            safety = two_lines(contact["safety_number"])
            table.add_row(peer_text(contact["name"]), safety, verified_label(contact))
        console.print(table)


# --- demo --------------------------------------------------------------------------------------


@cli.command()
@click.option("--no-mdns", is_flag=True, help="Use static peers instead of mDNS.")
def demo(no_mdns: bool) -> NoReturn:
    """Three nodes on this machine: pairing, a relay, receipts, timelines (under 30 s)."""
    from meshmsg.app.demo import run_demo

    sys.exit(run_demo(console, mdns=not no_mdns))


def main() -> None:
    """The ``meshmsg`` console script."""
    cli(prog_name="meshmsg")


for command in (contact, send, inbox, chat, status, run, passphrase, backup, restore, config,
                group, save):  # fmt: skip
    cli.add_command(command)


__all__ = ["cli", "main"]
