"""``meshmsg org ...``, ``meshmsg directory ...`` and ``meshmsg request ...`` (issue #12).

Administrator commands work on an *admin folder* (``--admin-dir``, default ``./meshmsg-org``)
and never need a node: ``org init`` makes the organisation key (sealed with a passphrase,
Argon2id, like a keystore), ``org sign`` signs a member's contact code, ``org revoke`` a
revocation, ``org publish`` writes the next signed directory. Keep that folder offline.

Member commands talk to the daemon (or open the data directory): ``org join ORG_CODE``,
``org import FILE`` (the administrator's directory file; it then spreads through the mesh),
``org list``, ``directory search TEXT``, ``directory add PEER_ID``, ``request list|accept|
decline``. Every error is one line.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import click
from rich.table import Table

from meshmsg.app import firstcontact_ops as ops
from meshmsg.app.cli_common import Ctx, console, pass_ctx
from meshmsg.app.datadir import PASSPHRASE_ENV, kdf_fast_requested
from meshmsg.app.keystore import load_keystore, open_keystore, save_keystore, seal_keystore
from meshmsg.app.safe_text import peer_markup, peer_text
from meshmsg.app.views import JSON
from meshmsg.config import OrgLimits
from meshmsg.core.identity import decode_contact_code
from meshmsg.core.node import Node
from meshmsg.core.org.directory import build_directory
from meshmsg.core.org.keys import OrgSecret, Revocation, decode_entry_text, decode_org_code
from meshmsg.errors import DirectoryError
from meshmsg.sysrng import SystemRng

ADMIN_DIR: Final = Path("meshmsg-org")
PAIRING_LABELS: Final = {
    "paired": "yes",
    "first_contact": "first contact (not met yet)",
    "waiting_for_them": "[yellow]waiting for them to add you[/yellow]",
}


def org_label(contact: JSON) -> str:
    """ ", verified by X" / ", revoked by X": the organisations' word, apart from in person."""
    out = ""
    if contact.get("org_verified"):
        out += f", [cyan]verified by {peer_markup(', '.join(contact['org_verified']))}[/cyan]"
    if contact.get("org_revoked"):
        out += f", [red]revoked by {peer_markup(', '.join(contact['org_revoked']))}[/red]"
    return out


_MIN_OPS, _MIN_MEM = 1, 8192  # --kdf-fast: tests only


def _admin_passphrase(confirm: bool = False) -> str:
    given = os.environ.get(PASSPHRASE_ENV)
    if given is not None:
        return given
    return str(click.prompt("Organisation key passphrase", hide_input=True,
                            confirmation_prompt=confirm))  # fmt: skip


def _load_org(folder: Path) -> OrgSecret:
    path = folder / "org.key"
    if not path.exists():
        raise DirectoryError(f"no organisation key in {folder} (run `meshmsg org init` there)")
    return OrgSecret.from_bytes(open_keystore(load_keystore(path), _admin_passphrase()))


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _daemon_or_offline(
    ctx: Ctx, path: str, body: JSON | None, fn: Callable[[Node, float], Any]
) -> Any:
    client = ctx.daemon()
    if client is not None:
        return client.get(path) if body is None else client.post(path, body)
    with ctx.offline() as node:
        return node.run(fn)


@click.group()
def org() -> None:
    """Organisations: an offline key vouches for its members (admin and member commands)."""


admin_dir = click.option(
    "--admin-dir",
    type=click.Path(path_type=Path),
    default=ADMIN_DIR,
    show_default=True,
    help="The administrator's (offline) folder.",
)


@org.command("init")
@click.argument("name")
@admin_dir
def org_init(name: str, admin_dir: Path) -> None:
    """Create an organisation key NAME in the admin folder; print the organisation code."""
    if (admin_dir / "org.key").exists():
        raise DirectoryError(f"{admin_dir} already holds an organisation key")
    secret = OrgSecret.generate(SystemRng(), name)
    passphrase = _admin_passphrase(confirm=True)
    if kdf_fast_requested():  # tests only: the weakest Argon2id cost
        blob = seal_keystore(secret.to_bytes(), passphrase, ops_limit=_MIN_OPS, mem_limit=_MIN_MEM)
    else:
        blob = seal_keystore(secret.to_bytes(), passphrase)
    admin_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    save_keystore(admin_dir / "org.key", blob)
    (admin_dir / "serial").write_text("0\n")
    console.print(f"Organisation [bold]{peer_markup(name)}[/bold] created in {admin_dir}.")
    console.print("Give members this code (`meshmsg org join CODE`):")
    click.echo(secret.public.code())


@org.command("sign")
@click.argument("code")
@click.option("--name", required=True, help="The member's name as the directory shows it.")
@click.option("--unit", default="", help="Unit or department.")
@click.option("--role", default="", help="Role.")
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True)
@admin_dir
def org_sign(code: str, name: str, unit: str, role: str, days: int, admin_dir: Path) -> None:
    """Sign a member's contact CODE (MM1:...) into the next directory."""
    card = decode_contact_code(code)
    secret = _load_org(admin_dir)
    entry = secret.sign_entry(card.public, name=name, unit=unit, role=role,
                              expires_at=int(time.time()) + days * 86_400)  # fmt: skip
    with (admin_dir / "members").open("a") as out:
        out.write(entry.text() + "\n")
    console.print(f"Signed {peer_markup(name)} until {days} days from now; "
                  "`meshmsg org publish` writes the directory.")  # fmt: skip


@org.command("revoke")
@click.argument("code")
@admin_dir
def org_revoke(code: str, admin_dir: Path) -> None:
    """Revoke the member with contact CODE: the next directory lists it as revoked."""
    card = decode_contact_code(code)
    revocation = _load_org(admin_dir).revoke(card.public.identity_key, revoked_at=int(time.time()))
    with (admin_dir / "revoked").open("a") as out:
        out.write(revocation.data.hex() + "\n")
    console.print("Revoked; `meshmsg org publish` writes the directory that carries it.")


@org.command("publish")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Directory file.")
@admin_dir
def org_publish(out: Path, admin_dir: Path) -> None:
    """Write the next signed directory (serial + 1) to OUT, for `meshmsg org import`."""
    secret = _load_org(admin_dir)
    key = secret.public.key
    signed = [decode_entry_text(t, key) for t in _lines(admin_dir / "members")]
    entries = {e.peer_id: e for e in signed}  # a member signed again: the newest entry
    revocations = [Revocation.parse(bytes.fromhex(t), key) for t in _lines(admin_dir / "revoked")]
    serial = int((admin_dir / "serial").read_text().strip() or "0") + 1
    directory = build_directory(secret, serial=serial, issued_at=int(time.time()),
                                entries=list(entries.values()), revocations=revocations,
                                limits=OrgLimits())  # fmt: skip
    out.write_bytes(directory.data)
    (admin_dir / "serial").write_text(f"{serial}\n")
    console.print(
        f"Directory version {serial}: {len(directory.entries)} members, "
        f"{len(directory.revocations)} revoked, {len(directory.data)} bytes → {out}"
    )


@org.command("code")
@admin_dir
def org_code(admin_dir: Path) -> None:
    """Print the organisation code again."""
    click.echo(_load_org(admin_dir).public.code())


@org.command("join")
@click.argument("org_code")
@pass_ctx
def org_join(ctx: Ctx, org_code: str) -> None:
    """Join an organisation by its code (MMORG1:...): accept its directories from now on."""
    decode_org_code(org_code)  # a typo fails here, before any passphrase prompt
    view = _daemon_or_offline(ctx, "/orgs", {"code": org_code},
                              lambda n, now: ops.join_org(n, now, org_code))  # fmt: skip
    console.print(f"Joined [bold]{peer_markup(view['name'])}[/bold]; its directory arrives "
                  "from any member you meet, or `meshmsg org import FILE`.")  # fmt: skip


@org.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--org", "org_name", default=None, help="Organisation name (if in several).")
@pass_ctx
def org_import(ctx: Ctx, file: Path, org_name: str | None) -> None:
    """Take a directory file the administrator published; it then travels through the mesh."""
    if file.stat().st_size > OrgLimits().max_directory_bytes:
        raise DirectoryError(f"{file} is larger than any directory")
    blob = base64.b64encode(file.read_bytes()).decode()
    view = _daemon_or_offline(
        ctx,
        "/orgs/directory",
        {"directory": blob, "org": org_name},
        lambda n, now: ops.import_directory(n, now, blob, org_name),
    )
    console.print(f"Directory version {view['serial']}: {view['members']} members, "
                  f"{view['revoked']} revoked.")  # fmt: skip


@org.command("list")
@pass_ctx
def org_list(ctx: Ctx) -> None:
    """Organisations joined and the directory version held of each."""
    client = ctx.daemon()
    rows = client.get("/orgs") if client is not None else ops.orgs_view(ctx.read_only())
    if not rows:
        console.print("No organisation joined: `meshmsg org join ORG_CODE`.")
    for row in rows:
        console.print(f"{peer_markup(row['name'])}: directory version {row['serial']}, "
                      f"{row['members']} members, {row['revoked']} revoked")  # fmt: skip


@click.group()
def directory() -> None:
    """Search the directories of organisations you joined; write to any member."""


@directory.command("search")
@click.argument("text")
@pass_ctx
def directory_search(ctx: Ctx, text: str) -> None:
    """Members whose name, unit or role contains TEXT."""
    client = ctx.daemon()
    if client is not None:
        rows = client.get(f"/directory?q={_quote(text)}")
    else:
        node = ctx.read_only()
        rows = ops.search_directory(node, time.time(), text)
    if not rows:
        console.print("Nobody found.")
        return
    table = Table(title=f"{len(rows)} found")
    for column in ("name", "unit", "role", "organisation", "peer id"):
        table.add_column(column)
    for r in rows:
        table.add_row(peer_text(r["name"]), peer_text(r["unit"]), peer_text(r["role"]),
                      peer_text(r["org"]), r["peer_id"])  # fmt: skip
    console.print(table)
    console.print("Write to one: `meshmsg directory add PEER_ID`, then `meshmsg send NAME ...`.")


@directory.command("add")
@click.argument("peer_id")
@pass_ctx
def directory_add(ctx: Ctx, peer_id: str) -> None:
    """Add a directory member as a contact: mail goes at once, by first contact."""
    view = _daemon_or_offline(
        ctx,
        f"/directory/{peer_id}/contact",
        {},
        lambda n, now: ops.contact_from_directory(n, now, peer_id),
    )
    orgs = peer_markup(", ".join(view.get("org_verified", [])))
    console.print(f"Added [bold]{peer_markup(view['name'])}[/bold], verified by {orgs} "
                  "(not in person).")  # fmt: skip


@click.group()
def request() -> None:
    """Message requests: mail from people who have your code but whom you have not added."""


@request.command("list")
@pass_ctx
def request_list(ctx: Ctx) -> None:
    client = ctx.daemon()
    rows = client.get("/requests") if client is not None else ops.requests_view(ctx.read_only())
    if not rows:
        console.print("No message requests.")
    for r in rows:
        revoked = peer_markup(", ".join(r["org_revoked"]))
        mark = f" [red]revoked by {revoked}[/red]" if revoked else ""
        console.print(f"[bold]{r['peer_id'][:12]}[/bold] ({r['fingerprint']}){mark}")
        for m in r["messages"]:
            console.print(f"  {peer_markup(m['body'])}")
    if rows:
        console.print("`meshmsg request accept ID`, `... decline ID` or `... decline ID --block`.")


@request.command("accept")
@click.argument("who")
@pass_ctx
def request_accept(ctx: Ctx, who: str) -> None:
    """Accept: the sender becomes a contact and its messages a conversation."""
    view = _daemon_or_offline(ctx, f"/requests/{who}/accept", {},
                              lambda n, now: ops.accept_request(n, now, who))  # fmt: skip
    console.print(f"Accepted: {peer_markup(view['name'])} is now a contact.")


@request.command("decline")
@click.argument("who")
@click.option("--block", is_flag=True, help="Also drop all later mail from them on arrival.")
@pass_ctx
def request_decline(ctx: Ctx, who: str, block: bool) -> None:
    """Delete a request (and with --block, refuse the sender from now on)."""
    _daemon_or_offline(ctx, f"/requests/{who}/decline", {"block": block},
                       lambda n, now: ops.decline_request(n, now, who, block=block))  # fmt: skip
    console.print("Blocked." if block else "Declined.")


def _quote(text: str) -> str:
    return quote(text, safe="")
