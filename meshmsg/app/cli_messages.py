"""``meshmsg send``, ``inbox``, ``chat`` and ``status``: the commands that need the daemon."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Final

import click
import trio
from rich.table import Table
from rich.text import Text

from meshmsg.app.cli_common import (
    Ctx,
    Duration,
    clock,
    console,
    pass_ctx,
    preview,
    resolve_contact,
    verified_label,
)
from meshmsg.app.cli_files import attachments_table, send_files
from meshmsg.app.cli_groups import group_inbox, group_named, send_to_group
from meshmsg.app.client import DaemonClient, EventStream
from meshmsg.app.safe_text import peer_markup, peer_text
from meshmsg.app.views import (
    JSON,
    contacts_view,
    conversations_view,
    message_view,
    parse_peer_id,
)
from meshmsg.config import NodeConfig
from meshmsg.core.node import Node
from meshmsg.errors import InvalidMessage, LocalProtocolError

CHAT_HISTORY: Final = 10


@click.command()
@click.argument("who")
@click.argument("message", nargs=-1, required=False)
@click.option(
    "--file", "files", multiple=True, help="A file to attach (repeat for several).",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)  # fmt: skip
@click.option(
    "--ttl",
    type=Duration(),
    default=None,
    help="How long relays keep it: 90s, 2h, 3d or seconds (default: the profile's).",
)
@pass_ctx
def send(
    ctx: Ctx, who: str, message: tuple[str, ...], ttl: float | None, files: tuple[Path, ...]
) -> None:
    """Send MESSAGE to WHO ('-' reads the message from standard input), with --file PATHs."""
    client = ctx.require_daemon()
    body = sys.stdin.read() if message == ("-",) else " ".join(message)
    try:
        target = resolve_contact(client.get("/contacts"), who)
    except LocalProtocolError:
        if group_named(client, who) is None:  # a group by that name: send to the group
            raise
        if not files:
            _check_size(body)
        send_to_group(client, who, body, ttl, files)
        return
    if files:  # attachments: meshmsg/app/cli_files.py
        sent = send_files(client, target, files, body, ttl)
    else:
        _check_size(body)
        sent = client.post("/messages", {"to": target["peer_id"], "body": body, "ttl_s": ttl})
    name = peer_markup(target["name"])
    how = ("by first contact: any relay carries it" if sent.get("first_contact")
           else "to the next relay or to them")  # fmt: skip
    waiting = " They have not added you yet: it reaches them as a request." if target.get(
        "pairing") == "waiting_for_them" else ""  # fmt: skip
    console.print(
        f"Queued {sent['message_id'][:8]} to [bold]{name}[/bold]: it leaves {how}.{waiting} "
        f"`meshmsg inbox {name}` shows its progress."
    )


def _check_size(body: str) -> None:
    limit = NodeConfig().message.max_body_bytes
    size = len(body.encode("utf-8", errors="surrogatepass"))
    if size > limit:
        raise InvalidMessage(f"message too big: {size:,} bytes, the limit is {limit:,}")
    if not body.strip():
        raise InvalidMessage("message is empty")


@click.command()
@click.argument("who", required=False)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, help="Messages to show.")
@click.option("--keep-unread", is_flag=True, help="Do not send read receipts.")
@pass_ctx
def inbox(ctx: Ctx, who: str | None, limit: int, keep_unread: bool) -> None:
    """Conversations, or the messages with WHO (which sends read receipts).

    Without the daemon it shows what is stored, read-only (no receipts go out).
    """
    client = ctx.daemon()
    if client is None:
        console.print("[dim]daemon not running: stored messages, read-only[/dim]")
    if who is None:
        _conversations_table(client.get("/conversations") if client else _stored(ctx))
        return
    contacts = client.get("/contacts") if client else contacts_view(ctx.read_only())
    try:
        target = resolve_contact(contacts, who)
    except LocalProtocolError:
        if client is None or group_named(client, who) is None:
            raise
        group_inbox(client, who, limit, keep_unread=keep_unread)  # a group by that name
        return
    if client is None:
        messages = _stored_messages(ctx.read_only(), target["peer_id"], limit)
    else:
        messages = client.get(f"/conversations/{target['peer_id']}/messages?limit={limit}")
    console.print(_messages_table(target["name"], messages))
    if client is not None and (files := attachments_table(client, target["peer_id"])):
        console.print(files)
    unread = [m["message_id"] for m in messages if m["direction"] == "in"]
    if client is not None and unread and not keep_unread:
        client.post("/messages/read", {"peer_id": target["peer_id"], "message_ids": unread})


def _stored(ctx: Ctx) -> list[JSON]:
    return conversations_view(ctx.read_only())


def _stored_messages(node: Node, peer_id: str, limit: int) -> list[JSON]:
    stored = node.conversations.with_peer(parse_peer_id(peer_id))
    return [message_view(m) for m in stored[-limit:]]


def _conversations_table(rows: list[JSON]) -> None:
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
        table.add_row(peer_text(name), str(row["messages"]),
                      peer_text(arrow + preview(last["body"])),
                      clock(last["sent_at"]), last["status"])  # fmt: skip
    console.print(table)


def _messages_table(name: str, messages: list[JSON]) -> Table:
    table = Table(title=Text.assemble("Messages with ", peer_text(name)))
    for column in ("when", "", "message", "status", "timeline"):
        table.add_column(column)
    for m in messages:
        steps = " → ".join(f"{s['status']} {clock(s['at'])}" for s in m["timeline"])
        who = "you" if m["direction"] == "out" else name
        body = peer_text(m["body"], multiline=True)
        table.add_row(clock(m["sent_at"]), peer_text(who), body, m["status"], steps)
    return table


@click.command()
@click.argument("who")
@pass_ctx
def chat(ctx: Ctx, who: str) -> None:
    """Chat with WHO live: type lines to send, Ctrl-D or Ctrl-C to leave."""
    client = ctx.require_daemon()
    target = resolve_contact(client.get("/contacts"), who)
    history = client.get(f"/conversations/{target['peer_id']}/messages?limit={CHAT_HISTORY}")
    for m in history:
        _print_chat_line(target["name"], m["direction"] == "in", m["body"], m["sent_at"])
    trust = verified_label(target)
    name = peer_markup(target["name"])
    console.print(f"[dim]chatting with {name} ({trust}); Ctrl-D leaves[/dim]")
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
    who = peer_text(name, "bold cyan") if incoming else Text("you", "bold")
    # Continuation lines are indented: a body cannot fake a line of its own from someone else.
    text = peer_text(body, multiline=True)
    lines = text.split("\n")
    shown = Text("\n    ").join(lines)
    console.print(Text.assemble((clock(at), "dim"), " ", who, ": ", shown))


# --- status ------------------------------------------------------------------------------------


@click.command()
@pass_ctx
def status(ctx: Ctx) -> None:
    """Peers, links, queues and relay usage of the running node; warnings first."""
    s = ctx.require_daemon().get("/status")
    for warning in s.get("warnings", []):  # names of contacts inside: peer text, not markup
        console.print(Text.assemble(("warning: ", "bold yellow"), peer_text(warning)))
    d = s["discovery"]
    mdns = f"on ({', '.join(d['interfaces'])})" if d["enabled"] else f"off: {d['reason']}"
    title = Text.assemble("Node ", peer_text(s["name"] or ""), f" {s['fingerprint']}")
    node = Table(title=title, show_header=False)
    for key, value in [
        ("listening", ", ".join(s["listen"])),
        ("profile", s["profile"]),
        ("up for", f"{s['uptime_s']:.0f} s"),
        ("mDNS", f"{mdns}; {d['peers']} peers known"),
        ("static peers", ", ".join(s["static_peers"]) or "none"),
        ("contacts", str(s["contacts"])),
        ("outbox", ", ".join(f"{n} {k}" for k, n in s["outbox"].items()) or "empty"),
    ]:
        node.add_row(key, peer_text(value))
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
        table.add_row(peer_text(name), kind, peer_text(p["address"] or "-"),
                      "in" if p["inbound"] else "out", "yes" if p["synced"] else "no")  # fmt: skip
    console.print(table)
