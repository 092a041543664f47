"""``meshmsg group ...``: create and change groups, read and write group messages (the daemon).

``meshmsg send NAME [--file PATH] TEXT`` and ``meshmsg inbox NAME`` reach a group too:
:func:`group_named` tells them whether NAME is one of our groups (a group wins only where no
contact has the name).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from meshmsg.app.cli_common import Ctx, Duration, clock, console, pass_ctx, preview
from meshmsg.app.cli_files import attachments_table, send_files_to_group
from meshmsg.app.client import DaemonClient
from meshmsg.app.safe_text import peer_markup, peer_text

JSON = dict[str, Any]


@click.group()
def group() -> None:
    """Groups: signed membership, one ciphertext per message for relays.

    New members read messages sent after they were added, not the history.
    """


def group_named(client: DaemonClient, name: str) -> JSON | None:
    """The group row NAME (or a group id prefix) names, else None."""
    rows: list[JSON] = client.get("/groups")
    exact = [g for g in rows if g["name"] == name]
    if len(exact) == 1:
        return exact[0]
    prefixed = [g for g in rows if len(name) >= 8 and g["group_id"].startswith(name.lower())]
    return prefixed[0] if len(prefixed) == 1 else None


def _path(client: DaemonClient, name: str) -> str:
    found = group_named(client, name)
    if found is None:
        raise click.ClickException(f"no group {name!r}: see `meshmsg group list`")
    return f"/groups/{found['group_id']}"


@group.command("create")
@click.argument("name")
@click.option("--member", "members", multiple=True, help="A contact to add (repeat).")
@pass_ctx
def create(ctx: Ctx, name: str, members: tuple[str, ...]) -> None:
    """Create group NAME with you as its admin."""
    client = ctx.require_daemon()
    view = client.post("/groups", {"name": name, "members": list(members)})
    console.print(f"Created [bold]{peer_markup(view['name'])}[/bold] with "
                  f"{len(view['members'])} members.")  # fmt: skip
    console.print(f"[dim]{view['note']}[/dim]")


def _change(method: str, suffix: str, body: JSON | None = None) -> Any:
    def run(ctx: Ctx, name: str, **kw: str) -> None:
        client = ctx.require_daemon()
        path = _path(client, name) + suffix.format(**kw)
        view = client.post(path, body_for(kw)) if method == "POST" else client.delete(path)
        _show(view)

    def body_for(kw: dict[str, str]) -> JSON:
        return dict(kw) if body is None else body

    return run


@group.command("add")
@click.argument("name")
@click.argument("who")
@pass_ctx
def add(ctx: Ctx, name: str, who: str) -> None:
    """Add contact WHO to group NAME (admins only)."""
    _change("POST", "/members")(ctx, name, who=who)


@group.command("remove")
@click.argument("name")
@click.argument("who")
@pass_ctx
def remove(ctx: Ctx, name: str, who: str) -> None:
    """Remove WHO from group NAME: a new epoch starts, WHO reads nothing sent after it."""
    _change("DELETE", "/members/{who}")(ctx, name, who=who)


@group.command("promote")
@click.argument("name")
@click.argument("who")
@pass_ctx
def promote(ctx: Ctx, name: str, who: str) -> None:
    """Make member WHO an admin of group NAME."""
    _change("POST", "/admins")(ctx, name, who=who)


@group.command("demote")
@click.argument("name")
@click.argument("who")
@pass_ctx
def demote(ctx: Ctx, name: str, who: str) -> None:
    """Take admin rights from WHO in group NAME."""
    _change("DELETE", "/admins/{who}")(ctx, name, who=who)


@group.command("rename")
@click.argument("name")
@click.argument("new_name")
@pass_ctx
def rename(ctx: Ctx, name: str, new_name: str) -> None:
    """Rename group NAME to NEW_NAME (admins only)."""
    _change("POST", "/rename", {"name": new_name})(ctx, name)


@group.command("leave")
@click.argument("name")
@pass_ctx
def leave(ctx: Ctx, name: str) -> None:
    """Leave group NAME: the others start a new epoch without you."""
    _change("POST", "/leave", {})(ctx, name)


@group.command("list")
@pass_ctx
def listing(ctx: Ctx) -> None:
    """Your groups."""
    rows: list[JSON] = ctx.require_daemon().get("/groups")
    if not rows:
        console.print("No groups yet: `meshmsg group create NAME --member WHO`.")
        return
    table = Table(title="Groups")
    for column in ("name", "members", "epoch", "unread", "last", "id"):
        table.add_column(column)
    for g in rows:
        name = Text.assemble(peer_text(g["name"]), "" if g["member"] else " (left)")
        last = clock(g["last_at"]) if g["last_at"] else ""
        table.add_row(name, str(g["members"]), str(g["epoch"]), str(g["unread"]), last,
                      g["group_id"][:12])  # fmt: skip
    console.print(table)


@group.command("show")
@click.argument("name")
@pass_ctx
def show(ctx: Ctx, name: str) -> None:
    """Members, admins, epoch and pending changes of group NAME."""
    client = ctx.require_daemon()
    _show(client.get(_path(client, name)))


def _show(view: JSON) -> None:
    table = Table(title=Text.assemble("Group ", peer_text(view["name"])))
    for column in ("member", "role", "peer id", "keys"):
        table.add_column(column)
    for m in view["members"]:
        role = "admin" if m["admin"] else "member"
        keys = "yes" if m["keys"] else "[dim]not yet[/dim]"
        table.add_row(peer_text(m["name"]), role, m["peer_id"][:16], keys)
    console.print(table)
    status = "you are an admin" if view["admin"] else (
        "you are a member" if view["member"] else "[red]you are not a member[/red]")  # fmt: skip
    counts = f"{view['pending_changes']} pending changes · {view['operations']} operations"
    console.print(f"epoch {view['epoch']} · {len(view['members'])} members · {status} · {counts}")
    if view["removed"]:
        console.print(f"removed: {', '.join(r[:16] for r in view['removed'])}")
    console.print(f"[dim]{view['note']}[/dim]")


@group.command("send")
@click.argument("name")
@click.argument("message", nargs=-1, required=False)
@click.option("--ttl", type=Duration(), default=None, help="How long relays keep it.")
@click.option(
    "--file", "files", multiple=True, help="A file to attach (repeat for several).",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)  # fmt: skip
@pass_ctx
def send(
    ctx: Ctx, name: str, message: tuple[str, ...], ttl: float | None, files: tuple[Path, ...]
) -> None:
    """Send MESSAGE to group NAME ('-' reads it from standard input), with --file PATHs."""
    client = ctx.require_daemon()
    body = sys.stdin.read() if message == ("-",) else " ".join(message)
    if not files and not body.strip():
        raise click.UsageError("a message, a --file, or both")
    send_to_group(client, name, body, ttl, files)


def send_to_group(
    client: DaemonClient, name: str, body: str, ttl: float | None, files: tuple[Path, ...] = ()
) -> None:
    """Send to group NAME; with ``files``, one encrypted copy of each for every member."""
    if files:  # uploads: meshmsg/app/cli_files.py
        sent = send_files_to_group(client, _path(client, name), files, body, ttl)
    else:
        sent = client.post(_path(client, name) + "/messages", {"body": body, "ttl_s": ttl})
    what = f"{len(files)} file{'s' if len(files) != 1 else ''}, " if files else ""
    console.print(f"Queued {sent['message_id'][:8]} to group [bold]{peer_markup(name)}[/bold]: "
                  f"{what}one copy for all {sent['recipients']} members.")  # fmt: skip


@group.command("inbox")
@click.argument("name")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, help="Messages to show.")
@click.option("--keep-unread", is_flag=True, help="Do not send read receipts.")
@pass_ctx
def inbox(ctx: Ctx, name: str, limit: int, keep_unread: bool) -> None:
    """The messages of group NAME (sends read receipts)."""
    group_inbox(ctx.require_daemon(), name, limit, keep_unread=keep_unread)


def group_inbox(client: DaemonClient, name: str, limit: int, *, keep_unread: bool) -> None:
    path = _path(client, name)
    messages: list[JSON] = client.get(f"{path}/messages?limit={limit}")
    table = Table(title=Text.assemble("Group ", peer_text(name)))
    for column in ("when", "from", "message", "status"):
        table.add_column(column)
    for m in messages:
        table.add_row(clock(m["sent_at"]), peer_text(m["sender"]),
                      peer_text(m["body"], multiline=True), m["status"])  # fmt: skip
    console.print(table if messages else f"No messages in {preview(name)} yet.")
    ids = {m["message_id"] for m in messages}
    if messages and (files := attachments_table(client, None, message_ids=ids)):
        console.print(files)
    unread = [m["message_id"] for m in messages if m["direction"] == "in"]
    if unread and not keep_unread:
        client.post(f"{path}/messages/read", {"message_ids": unread})
