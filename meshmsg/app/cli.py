"""The ``meshmsg`` command (click + rich).

Commands talk to the running daemon through its local API when one runs (``meshmsg run``);
``init``, ``id`` and ``contact ...`` also work without one, by opening the data directory
directly (they need the passphrase then). ``send``, ``inbox``, ``chat`` and ``status`` need the
daemon, and say how to start it. Every error is one line on stderr and a non-zero exit code:
:class:`MeshCli` turns ``MeshError`` and ``OSError`` (and trio's exception groups of them) into
``click.ClickException``; nothing prints a traceback for a user's mistake.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar

import click
import trio
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from meshmsg import __version__
from meshmsg.app.client import NOT_RUNNING, DaemonClient, EventStream
from meshmsg.app.datadir import (
    PASSPHRASE_ENV,
    OfflineNode,
    Settings,
    Unlocked,
    default_data_dir,
    init_data_dir,
    kdf_fast_requested,
    open_offline,
    own_contact_code,
    require_initialised,
    unlock,
)
from meshmsg.app.qr import render_terminal
from meshmsg.app.views import JSON, contact_view, contacts_view, parse_peer_id
from meshmsg.config import NodeConfig
from meshmsg.core.identity import decode_contact_code, fingerprint
from meshmsg.core.node import Node
from meshmsg.errors import InvalidMessage, KeystoreError, LocalProtocolError, MeshError
from meshmsg.net.storage import DataDir

console = Console(highlight=False)
T = TypeVar("T")

# Subcommands imported only when used: the simulator pulls in matplotlib, and the benchmark
# module may be absent from a build.
LAZY_COMMANDS: Final = {
    "sim": ("meshmsg.sim.cli", "sim"),
    "bench": ("meshmsg.bench.suite", "bench_command"),
    "ui": ("meshmsg.app.ui", "ui_command"),
}
CHAT_HISTORY: Final = 10


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
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


# --- shared state ------------------------------------------------------------------------------


@dataclass
class Ctx:
    """What every command needs: the data directory, its settings, the daemon if it runs."""

    data_dir: DataDir
    _settings: Settings | None = field(default=None, repr=False)

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
        require_initialised(self.data_dir)
        settings = self.settings
        secret = _passphrase() if settings.key_file is None else ""
        with console.status("Unlocking the keystore (Argon2id)…"):
            return unlock(self.data_dir, settings, lambda: secret)

    @contextmanager
    def offline(self) -> Iterator[OfflineNode]:
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
    console.print("Next: `meshmsg id` shows your contact code; `meshmsg run` starts the node.")


@cli.command("id")
@click.option("--no-qr", is_flag=True, help="Do not draw QR codes.")
@pass_ctx
def id_command(ctx: Ctx, no_qr: bool) -> None:
    """Show your contact code (text and QR) and the safety number with each contact."""
    client = ctx.daemon()
    if client is not None:
        view = client.get("/id")
    else:
        with ctx.offline() as offline:
            node = offline.node
            view = {
                "name": ctx.settings.name,
                "fingerprint": fingerprint(node.identity.public),
                "peer_id": node.identity.peer_id.hex(),
                "contact_code": own_contact_code(node.identity, ctx.settings),
                "contacts": contacts_view(node),
            }
    console.print(f"Name:        {view['name'] or '(none set: name = ... in config.toml)'}")
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
            table.add_row(contact["name"], _two_lines(contact["safety_number"]), _verified(contact))
        console.print(table)


@cli.command()
@pass_ctx
def run(ctx: Ctx) -> None:
    """Run the node and its local API in the foreground (Ctrl-C stops it)."""
    from meshmsg.app.daemon import DaemonInfo, run_daemon
    from meshmsg.app.mesh import NodeHandle

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = ctx.settings
    unlocked = ctx.unlock()

    def ready(info: DaemonInfo) -> None:
        mdns = info.discovery
        discovery = (
            f"mDNS on {', '.join(map(str, mdns['interfaces']))}"  # type: ignore[call-overload]
            if mdns["enabled"]
            else f"mDNS off ({mdns['reason']})"
        )
        lines = [
            f"fingerprint  {fingerprint(unlocked.identity.public)}",
            f"listening    {', '.join(info.listen)}",
            f"local API    {info.api_url} (token in {ctx.data_dir.api_token_path})",
            f"discovery    {discovery}",
            f"static peers {', '.join(info.static_peers) or 'none'}",
        ]
        console.print(Panel("\n".join(lines), title="meshmsg node running", expand=False))
        console.print("Ctrl-C to stop.")

    def on_event(_handle: NodeHandle, event: object) -> None:
        line = _describe_event(event)
        if line is not None:
            console.print(f"[dim]{_clock(time.time())}[/dim] {line}")

    trio.run(
        lambda: run_daemon(ctx.data_dir, settings, unlocked, on_ready=ready, on_event=on_event)
    )
    console.print("stopped")


def _describe_event(event: object) -> str | None:
    """One line for the events a person running the daemon cares about."""
    from meshmsg.core.events import (
        ContactPaired,
        LinkClosed,
        MessageReceived,
        MessageStatusChanged,
        PeerConnected,
    )

    match event:
        case PeerConnected(peer_id=peer, is_contact=contact):
            return f"linked to {'contact' if contact else 'stranger'} {peer.hex()[:8]}"
        case LinkClosed(peer_id=peer, reason=reason) if peer is not None:
            return f"link to {peer.hex()[:8]} closed ({reason.name.lower()})"
        case ContactPaired(peer_id=peer):
            return f"paired with {peer.hex()[:8]}"
        case MessageReceived(peer_id=peer, hops=hops):
            return f"message from {peer.hex()[:8]} ({hops} hops)"
        case MessageStatusChanged(message_id=mid, status=status):
            return f"message {mid.hex()[:8]}: {status.name.lower()}"
        case _:
            return None


# --- contacts ----------------------------------------------------------------------------------


@cli.group()
def contact() -> None:
    """Add, list, verify and remove contacts."""


@contact.command("add")
@click.argument("code")
@click.option("--name", default=None, help="Your name for this contact (default: theirs).")
@click.option("--verified", is_flag=True, help="You compared safety numbers in person already.")
@pass_ctx
def contact_add(ctx: Ctx, code: str, name: str | None, verified: bool) -> None:
    """Add a contact from their contact code (MM1:...)."""
    card = decode_contact_code(code)  # a typo fails here, before any passphrase prompt
    client = ctx.daemon()
    if client is not None:
        view = client.post("/contacts", {"code": code, "name": name, "verified": verified})
    else:
        with ctx.offline() as offline:

            def add(node: Node, now: float) -> JSON:
                added = node.add_contact(card, verified=verified, now=now, name=name)
                return contact_view(node, added)

            view = offline.run(add)
    console.print(f"Added [bold]{view['name']}[/bold] ({view['fingerprint']}), {_verified(view)}.")
    if not view["verified"]:
        console.print(f"Compare safety numbers: `meshmsg contact verify {view['name']}`")


@contact.command("list")
@pass_ctx
def contact_list(ctx: Ctx) -> None:
    """List contacts, verified or not."""
    contacts = _contacts(ctx)
    if not contacts:
        console.print("No contacts yet: `meshmsg contact add CODE`.")
        return
    table = Table(title=f"{len(contacts)} contacts")
    for column in ("name", "fingerprint", "verified", "paired", "peer id"):
        table.add_column(column)
    for c in contacts:
        paired = "yes" if c["paired"] else "not yet (at first meeting)"
        table.add_row(c["name"], c["fingerprint"], _verified(c), paired, c["peer_id"][:12] + "…")
    console.print(table)


@contact.command("verify")
@click.argument("who")
@click.option("--yes", is_flag=True, help="Mark verified without asking.")
@click.option("--undo", is_flag=True, help="Mark the contact unverified again.")
@click.option("--no-qr", is_flag=True, help="Do not draw the QR code.")
@pass_ctx
def contact_verify(ctx: Ctx, who: str, yes: bool, undo: bool, no_qr: bool) -> None:
    """Compare the safety number with WHO (in person, or scan the QR) and mark them verified."""
    target = resolve_contact(_contacts(ctx), who)
    console.print(f"Safety number with [bold]{target['name']}[/bold] ({target['fingerprint']}):")
    console.print(f"[bold]{_two_lines(target['safety_number'])}[/bold]")
    if not no_qr:
        click.echo(render_terminal(target["safety_qr"]))
    verified = not undo
    if verified and not yes and not click.confirm("Do these digits match what they see?"):
        console.print("Not marked verified.")
        return
    _set_verified(ctx, target, verified)
    console.print(f"{target['name']} is now {'verified' if verified else 'unverified'}.")


def _set_verified(ctx: Ctx, target: JSON, verified: bool) -> None:
    client = ctx.daemon()
    if client is not None:
        client.post(f"/contacts/{target['peer_id']}/verify", {"verified": verified})
        return
    peer_id = parse_peer_id(target["peer_id"])
    with ctx.offline() as offline:
        offline.run(lambda node, now: node.set_verified(peer_id, verified, now=now))


@contact.command("remove")
@click.argument("who")
@click.option("--yes", is_flag=True, help="Do not ask.")
@pass_ctx
def contact_remove(ctx: Ctx, who: str, yes: bool) -> None:
    """Remove a contact (their pairwise keys are deleted; history stays)."""
    target = resolve_contact(_contacts(ctx), who)
    if not yes and not click.confirm(f"Remove {target['name']} ({target['fingerprint']})?"):
        return
    client = ctx.daemon()
    if client is not None:
        client.delete(f"/contacts/{target['peer_id']}")
    else:
        peer_id = parse_peer_id(target["peer_id"])
        with ctx.offline() as offline:
            offline.run(lambda node, now: node.remove_contact(peer_id, now=now))
    console.print(f"Removed {target['name']}.")


def _contacts(ctx: Ctx) -> list[JSON]:
    client = ctx.daemon()
    if client is not None:
        result: list[JSON] = client.get("/contacts")
        return result
    with ctx.offline() as offline:
        return contacts_view(offline.node)


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
        names = ", ".join(f"{c['name']} ({c['fingerprint']})" for c in matches)
        raise LocalProtocolError(f"{who!r} matches several contacts: {names}")
    return matches[0]


# --- messages ----------------------------------------------------------------------------------


@cli.command()
@click.argument("who")
@click.argument("message", nargs=-1, required=True)
@click.option("--ttl", type=float, default=None, help="Seconds relays keep it (default: profile).")
@pass_ctx
def send(ctx: Ctx, who: str, message: tuple[str, ...], ttl: float | None) -> None:
    """Send MESSAGE to WHO ('-' reads the message from standard input)."""
    client = ctx.require_daemon()
    body = sys.stdin.read() if message == ("-",) else " ".join(message)
    _check_size(body)
    target = resolve_contact(client.get("/contacts"), who)
    sent = client.post("/messages", {"to": target["peer_id"], "body": body, "ttl_s": ttl})
    console.print(
        f"Queued {sent['message_id'][:8]} to [bold]{target['name']}[/bold]: it leaves at the next "
        "meeting with them or a relay. `meshmsg inbox "
        f"{target['name']}` shows its progress."
    )


def _check_size(body: str) -> None:
    limit = NodeConfig().message.max_body_bytes
    size = len(body.encode("utf-8", errors="surrogatepass"))
    if size > limit:
        raise InvalidMessage(f"message too big: {size:,} bytes, the limit is {limit:,}")
    if not body.strip():
        raise InvalidMessage("message is empty")


@cli.command()
@click.argument("who", required=False)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, help="Messages to show.")
@click.option("--keep-unread", is_flag=True, help="Do not send read receipts.")
@pass_ctx
def inbox(ctx: Ctx, who: str | None, limit: int, keep_unread: bool) -> None:
    """Conversations, or the messages with WHO (which sends read receipts)."""
    client = ctx.require_daemon()
    if who is None:
        rows = client.get("/conversations")
        if not rows:
            console.print("No messages yet.")
            return
        table = Table(title="Conversations")
        for column in ("with", "messages", "last", "when", "status"):
            table.add_column(column)
        for row in rows:
            last = row["last"]
            name = row["name"] or row["peer_id"][:12]
            arrow = "→ " if last["direction"] == "out" else "← "
            table.add_row(name, str(row["messages"]), arrow + _preview(last["body"]),
                          _clock(last["sent_at"]), last["status"])  # fmt: skip
        console.print(table)
        return
    target = resolve_contact(client.get("/contacts"), who)
    messages = client.get(f"/conversations/{target['peer_id']}/messages?limit={limit}")
    console.print(_messages_table(target["name"], messages))
    unread = [m["message_id"] for m in messages if m["direction"] == "in"]
    if unread and not keep_unread:
        client.post("/messages/read", {"peer_id": target["peer_id"], "message_ids": unread})


def _messages_table(name: str, messages: list[JSON]) -> Table:
    table = Table(title=f"Messages with {name}")
    for column in ("when", "", "message", "status", "timeline"):
        table.add_column(column)
    for m in messages:
        steps = " → ".join(f"{s['status']} {_clock(s['at'])}" for s in m["timeline"])
        who = "you" if m["direction"] == "out" else name
        table.add_row(_clock(m["sent_at"]), who, m["body"], m["status"], steps)
    return table


@cli.command()
@click.argument("who")
@pass_ctx
def chat(ctx: Ctx, who: str) -> None:
    """Chat with WHO live: type lines to send, Ctrl-D or Ctrl-C to leave."""
    client = ctx.require_daemon()
    target = resolve_contact(client.get("/contacts"), who)
    history = client.get(f"/conversations/{target['peer_id']}/messages?limit={CHAT_HISTORY}")
    for m in history:
        _print_chat_line(target["name"], m["direction"] == "in", m["body"], m["sent_at"])
    console.print(f"[dim]chatting with {target['name']} ({_verified(target)}); Ctrl-D leaves[/dim]")
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how people leave a chat
        trio.run(_chat, client, target)


async def _chat(client: DaemonClient, target: JSON) -> None:
    async with EventStream(client) as events, trio.open_nursery() as nursery:
        nursery.start_soon(_chat_events, client, events, target)
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if not line:
                break
            body = line.rstrip("\n")
            if body.strip():
                _check_size(body)
                await client.apost("/messages", {"to": target["peer_id"], "body": body})
                _print_chat_line(target["name"], False, body, time.time())
        nursery.cancel_scope.cancel()


async def _chat_events(client: DaemonClient, events: EventStream, target: JSON) -> None:
    peer = target["peer_id"]
    while (event := await events.next()) is not None:
        if event.get("peer_id") != peer:
            continue
        if event["type"] == "message_received":
            _print_chat_line(target["name"], True, event["body"], event["sent_at"])
            ids = [event["message_id"]]
            await client.apost("/messages/read", {"peer_id": peer, "message_ids": ids})
        elif event["type"] == "message_status_changed":
            console.print(f"[dim]  {event['message_id'][:8]} {event['status']}[/dim]")
    console.print("[yellow]the daemon closed the event stream[/yellow]")


def _print_chat_line(name: str, incoming: bool, body: str, at: float) -> None:
    who = f"[bold cyan]{name}[/bold cyan]" if incoming else "[bold]you[/bold]"
    console.print(f"[dim]{_clock(at)}[/dim] {who}: ", end="")
    console.print(body, markup=False)


# --- status ------------------------------------------------------------------------------------


@cli.command()
@pass_ctx
def status(ctx: Ctx) -> None:
    """Peers, links, queues and relay usage of the running node."""
    s = ctx.require_daemon().get("/status")
    d = s["discovery"]
    mdns = f"on ({', '.join(d['interfaces'])})" if d["enabled"] else f"off: {d['reason']}"
    node = Table(title=f"Node {s['name'] or ''} {s['fingerprint']}", show_header=False)
    for key, value in [
        ("listening", ", ".join(s["listen"])),
        ("profile", s["profile"]),
        ("up for", f"{s['uptime_s']:.0f} s"),
        ("mDNS", f"{mdns}; {d['peers']} peers known"),
        ("static peers", ", ".join(s["static_peers"]) or "none"),
        ("contacts", str(s["contacts"])),
        ("outbox", ", ".join(f"{n} {k}" for k, n in s["outbox"].items()) or "empty"),
    ]:
        node.add_row(key, value)
    console.print(node)
    _peers_table(s["peers"])
    links = s["links"]
    queue = Table(title="Links and queues", show_header=False)
    for key in ("links", "links_inbound", "links_outbound", "half_open", "queued_frames",
                "queued_bytes", "bytes_sent", "bytes_received", "persists_pending",
                "dial_failures", "refused"):  # fmt: skip
        queue.add_row(key.replace("_", " "), f"{links[key]:,}")
    console.print(queue)
    relay = s["relay"]
    usage = Table(title="Relay store (mail carried for others and our own outbox)")
    for column in ("envelopes", "bytes", "cap", "carried for others", "by tier"):
        usage.add_column(column)
    tiers = ", ".join(f"{k} {v:,}" for k, v in relay["bytes_by_tier"].items() if v)
    usage.add_row(f"{relay['envelopes']:,}", f"{relay['bytes']:,}", f"{relay['max_bytes']:,}",
                  f"{relay['carried_for_others']:,}", tiers or "-")  # fmt: skip
    console.print(usage)


def _peers_table(peers: list[JSON]) -> None:
    if not peers:
        console.print("No peers linked right now.")
        return
    table = Table(title="Linked peers")
    for column in ("peer", "kind", "address", "direction", "synced"):
        table.add_column(column)
    for p in peers:
        kind = ("verified contact" if p["verified"] else "contact") if p["contact"] else "stranger"
        name = p["name"] or (p["peer_id"] or "(handshaking)")[:12]
        table.add_row(name, kind, p["address"] or "-", "in" if p["inbound"] else "out",
                      "yes" if p["synced"] else "no")  # fmt: skip
    console.print(table)


# --- demo --------------------------------------------------------------------------------------


@cli.command()
@click.option("--no-mdns", is_flag=True, help="Use static peers instead of mDNS.")
def demo(no_mdns: bool) -> NoReturn:
    """Three nodes on this machine: pairing, a relay, receipts, timelines (under 30 s)."""
    from meshmsg.app.demo import run_demo

    sys.exit(run_demo(console, mdns=not no_mdns))


# --- helpers -----------------------------------------------------------------------------------


def _two_lines(safety_number: str) -> str:
    """60 digits as two rows of six groups: easier to read aloud, never wrapped mid-group."""
    groups = safety_number.split()
    return " ".join(groups[:6]) + "\n" + " ".join(groups[6:])


def _verified(contact: JSON) -> str:
    return "[green]verified[/green]" if contact["verified"] else "[yellow]unverified[/yellow]"


def _clock(at: float) -> str:
    moment = datetime.fromtimestamp(at)
    today = datetime.now().date()
    return moment.strftime("%H:%M:%S" if moment.date() == today else "%Y-%m-%d %H:%M")


def _preview(body: str, width: int = 40) -> str:
    line = " ".join(body.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def main() -> None:
    """The ``meshmsg`` console script."""
    cli(prog_name="meshmsg")


__all__ = ["cli", "main", "resolve_contact"]
