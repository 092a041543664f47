"""``meshmsg passphrase``, ``backup``, ``restore`` and ``config``: looking after the node."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Final

import click

from meshmsg.app.cli_common import Ctx, console, pass_ctx
from meshmsg.app.config_edit import SETTINGS, parse_value, set_setting, toml_value
from meshmsg.app.datadir import (
    PASSPHRASE_ENV,
    Settings,
    change_passphrase,
    daemon_running,
    is_initialised,
    kdf_fast_requested,
    unlock,
)
from meshmsg.app.safe_text import peer_markup
from meshmsg.app.snapshot import restore_backup, write_backup
from meshmsg.errors import KeystoreError
from meshmsg.net.storage import DataDir

NEW_PASSPHRASE_ENV: Final = "MESHMSG_NEW_PASSPHRASE"  # scripts and tests; a terminal prompts


@click.command()
@pass_ctx
def passphrase(ctx: Ctx) -> None:
    """Change the passphrase that unlocks this node (the keystore is replaced atomically)."""
    unlocked = ctx.unlock()  # the current passphrase (MESHMSG_PASSPHRASE or a prompt)
    new = os.environ.get(NEW_PASSPHRASE_ENV)
    if new is None:
        if not sys.stdin.isatty():
            raise KeystoreError(f"no new passphrase: set {NEW_PASSPHRASE_ENV} or use a terminal")
        new = str(click.prompt("New passphrase", hide_input=True, confirmation_prompt=True))
    with console.status("Sealing the keystore (Argon2id)…"):
        change_passphrase(ctx.data_dir, ctx.settings, unlocked, new, kdf_fast=kdf_fast_requested())
    console.print("Passphrase changed. Backups made before still open with the old one.")


@click.command()
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@pass_ctx
def backup(ctx: Ctx, path: Path) -> None:
    """Copy keystore, node.db and config.toml into the new directory PATH (daemon may run)."""
    unlocked = ctx.unlock()  # to check the copy: it is opened and every record decrypted
    records = write_backup(ctx.data_dir, path, unlocked.db_key)
    console.print(f"Backed up to {peer_markup(path)}: {records:,} records, checked.")
    if ctx.settings.key_file is not None:
        console.print(
            f"[yellow]Key-file node:[/yellow] the backup opens only with {ctx.settings.key_file}, "
            "which is not in it; keep a copy of that file apart from the backup."
        )
    console.print("Keep it as safe as the passphrase: together they are this identity.")


@click.command()
@click.argument("path", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--force", is_flag=True, help="Replace the identity this data directory holds.")
@pass_ctx
def restore(ctx: Ctx, path: Path, force: bool) -> None:
    """Restore a backup made by `meshmsg backup` into the data directory (daemon stopped)."""
    if is_initialised(ctx.data_dir) and not force:
        raise KeystoreError(
            f"{ctx.data_dir.root} already holds an identity: --force replaces it with the backup"
        )
    source = DataDir(path)
    secret = os.environ.get(PASSPHRASE_ENV)
    if secret is None and sys.stdin.isatty():
        secret = str(click.prompt("Passphrase of the backup", hide_input=True))
    with console.status("Unlocking the backup (Argon2id)…"):
        unlocked = unlock(source, Settings.load(source), (lambda: secret) if secret else None)
    records = restore_backup(path, ctx.data_dir, unlocked.db_key)
    console.print(f"Restored {records:,} records into {peer_markup(ctx.data_dir.root)}.")
    console.print("Do not run the old device with this identity any more: one identity, one node.")


@click.group()
def config() -> None:
    """Show or change config.toml (checked as `meshmsg run` checks it)."""


@config.command("set")
@click.argument("key", type=click.Choice(list(SETTINGS)))
@click.argument("value")
@pass_ctx
def config_set(ctx: Ctx, key: str, value: str) -> None:
    """Set KEY to VALUE; lists (trusted_networks, static_peers) are comma-separated."""
    set_setting(ctx.data_dir, key, value)
    shown = toml_value(parse_value(key, value)) if key != "network.site_key" else "(hidden)"
    console.print(f"{key} = {peer_markup(shown)}")
    if daemon_running(ctx.data_dir):
        console.print("The running daemon uses it after a restart (`meshmsg run`).")


@config.command("show")
@pass_ctx
def config_show(ctx: Ctx) -> None:
    """The settings in effect (defaults included); the site key is not shown."""
    s = ctx.settings
    values: dict[str, object] = {
        "name": s.name or "",
        "profile": s.profile,
        "network.listen": f"{s.listen_host}:{s.listen_port}",
        "network.trusted_networks": list(s.trusted_networks),
        "network.static_peers": list(s.static_peers),
        "network.site_key": "(set, hidden)" if s.site_key else "",
        "api.port": s.api_port,
        "keystore.key_file": str(s.key_file or ""),
        "privacy.prompt_receipts": s.prompt_receipts,
    }
    console.print(f"# {peer_markup(ctx.data_dir.config_path)}")
    for key, value in values.items():
        console.print(f"{key} = {peer_markup(toml_value(value))}")
    if not s.trusted_networks:
        console.print("# mDNS is off: no trusted network (see `meshmsg config set --help`)")


__all__ = ["backup", "config", "passphrase", "restore"]
