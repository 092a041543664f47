"""``meshmsg contact ...``: add, list, verify, rename, block, unblock and remove contacts."""

from __future__ import annotations

from collections.abc import Callable

import click
from rich.table import Table

from meshmsg.app.cli_common import (
    Ctx,
    console,
    contacts_of,
    pass_ctx,
    resolve_contact,
    two_lines,
    verified_label,
)
from meshmsg.app.cli_org import PAIRING_LABELS, org_label
from meshmsg.app.contact_ops import rename_contact
from meshmsg.app.datadir import check_name
from meshmsg.app.qr import render_terminal
from meshmsg.app.safe_text import escape_controls, peer_markup, peer_text
from meshmsg.app.views import JSON, contact_view, parse_peer_id
from meshmsg.core.contacts import Contact
from meshmsg.core.identity import decode_contact_code
from meshmsg.core.node import Node


@click.group()
def contact() -> None:
    """Add, list, verify, rename, block and remove contacts."""


@contact.command("add")
@click.argument("code")
@click.option("--name", default=None, help="Your name for this contact (default: theirs).")
@click.option("--verified", is_flag=True, help="You compared safety numbers in person already.")
@pass_ctx
def contact_add(ctx: Ctx, code: str, name: str | None, verified: bool) -> None:
    """Add a contact from their contact code (MM1:...)."""
    card = decode_contact_code(code)  # a typo fails here, before any passphrase prompt
    if name is not None:
        check_name(name, "--name")
    existing = [c for c in contacts_of(ctx) if c["peer_id"] == card.peer_id.hex()]
    if existing:
        console.print(f"Already a contact ({peer_markup(existing[0]['name'])}): nothing changed.")
        if name is not None:
            console.print("To change the name: `meshmsg contact rename OLD NEW`.")
        if verified and not existing[0]["verified"]:
            console.print("To mark them verified: `meshmsg contact verify WHO`.")
        return
    client = ctx.daemon()
    if client is not None:
        view = client.post("/contacts", {"code": code, "name": name, "verified": verified})
    else:
        with ctx.offline() as offline:

            def add(node: Node, now: float) -> JSON:
                added = node.add_contact(card, verified=verified, now=now, name=name)
                return contact_view(node, added)

            view = offline.run(add)
    name = peer_markup(view["name"])
    console.print(f"Added [bold]{name}[/bold] ({view['fingerprint']}), {verified_label(view)}.")
    if not view["verified"]:
        console.print(f"Compare safety numbers: `meshmsg contact verify {name}`")


@contact.command("list")
@pass_ctx
def contact_list(ctx: Ctx) -> None:
    """List contacts, verified or not."""
    contacts = contacts_of(ctx)
    if not contacts:
        console.print("No contacts yet: `meshmsg contact add CODE`.")
        return
    table = Table(title=f"{len(contacts)} contacts")
    for column in ("name", "fingerprint", "verified", "paired", "peer id"):
        table.add_column(column)
    for c in contacts:
        paired = PAIRING_LABELS.get(c.get("pairing", ""), "yes" if c["paired"] else "no")
        peer = c["peer_id"][:12] + "…"
        trust = verified_label(c) + org_label(c) + (", [red]blocked[/red]" if c["blocked"] else "")
        table.add_row(peer_text(c["name"]), c["fingerprint"], trust, paired, peer)
    console.print(table)


@contact.command("verify")
@click.argument("who")
@click.option("--yes", is_flag=True, help="Mark verified without asking.")
@click.option("--undo", is_flag=True, help="Mark the contact unverified again.")
@click.option("--no-qr", is_flag=True, help="Do not draw the QR code.")
@pass_ctx
def contact_verify(ctx: Ctx, who: str, yes: bool, undo: bool, no_qr: bool) -> None:
    """Compare the safety number with WHO (in person, or scan the QR) and mark them verified."""
    target = resolve_contact(contacts_of(ctx), who)
    name = peer_markup(target["name"])
    console.print(f"Safety number with [bold]{name}[/bold] ({target['fingerprint']}):")
    console.print(f"[bold]{two_lines(target['safety_number'])}[/bold]")
    if not no_qr:
        click.echo(render_terminal(target["safety_qr"]))
    verified = not undo
    if verified and not yes and not click.confirm("Do these digits match what they see?"):
        console.print("Not marked verified.")
        return
    _set_verified(ctx, target, verified)
    console.print(f"{name} is now {'verified' if verified else 'unverified'}.")


def _set_verified(ctx: Ctx, target: JSON, verified: bool) -> None:
    _change(ctx, target, "verify", {"verified": verified},
            lambda node, c, now: node.set_verified(c.peer_id, verified, now=now))  # fmt: skip


ContactChange = Callable[[Node, Contact, float], object]


def _change(ctx: Ctx, target: JSON, action: str, body: JSON, offline: ContactChange) -> None:
    """POST /contacts/{id}/{action} to the daemon, or apply ``offline`` to the node if none runs."""
    client = ctx.daemon()
    if client is not None:
        client.post(f"/contacts/{target['peer_id']}/{action}", body)
        return
    peer_id = parse_peer_id(target["peer_id"])
    with ctx.offline() as node:
        node.run(lambda n, now: offline(n, n.contacts.require(peer_id), now))


@contact.command("rename")
@click.argument("who")
@click.argument("new_name")
@pass_ctx
def contact_rename(ctx: Ctx, who: str, new_name: str) -> None:
    """Call contact WHO by NEW_NAME from now on (a local name: they are not told)."""
    check_name(new_name, "NEW_NAME")
    target = resolve_contact(contacts_of(ctx), who)
    _change(ctx, target, "rename", {"name": new_name},
            lambda node, c, now: rename_contact(node, c, new_name, now=now))  # fmt: skip
    console.print(f"Renamed {peer_markup(target['name'])} to {peer_markup(new_name)}.")


@contact.command("block")
@click.argument("who")
@pass_ctx
def contact_block(ctx: Ctx, who: str) -> None:
    """Block WHO: their links are closed and refused; nothing is sent to or taken from them."""
    _set_blocked(ctx, who, True)


@contact.command("unblock")
@click.argument("who")
@pass_ctx
def contact_unblock(ctx: Ctx, who: str) -> None:
    """Unblock WHO."""
    _set_blocked(ctx, who, False)


def _set_blocked(ctx: Ctx, who: str, blocked: bool) -> None:
    target = resolve_contact(contacts_of(ctx), who)
    _change(ctx, target, "block", {"blocked": blocked},
            lambda node, c, now: node.set_blocked(c.peer_id, blocked, now=now))  # fmt: skip
    state = "blocked" if blocked else "unblocked"
    console.print(f"{peer_markup(target['name'])} is {state}.")


@contact.command("remove")
@click.argument("who")
@click.option("--yes", is_flag=True, help="Do not ask.")
@pass_ctx
def contact_remove(ctx: Ctx, who: str, yes: bool) -> None:
    """Remove a contact (their pairwise keys are deleted; history stays)."""
    target = resolve_contact(contacts_of(ctx), who)
    name = escape_controls(target["name"])  # click prints prompts as they are
    if not yes and not click.confirm(f"Remove {name} ({target['fingerprint']})?"):
        return
    client = ctx.daemon()
    if client is not None:
        client.delete(f"/contacts/{target['peer_id']}")
    else:
        peer_id = parse_peer_id(target["peer_id"])
        with ctx.offline() as offline:
            offline.run(lambda node, now: node.remove_contact(peer_id, now=now))
    console.print(f"Removed {peer_markup(name)}.")
