"""``meshmsg run``: the daemon in the foreground, with a line for each event worth seeing."""

from __future__ import annotations

import errno
import logging
import time

import click
import trio
from rich.panel import Panel
from rich.text import Text

from meshmsg.app.cli_common import Ctx, clock, console, pass_ctx
from meshmsg.app.datadir import Settings
from meshmsg.app.safe_text import peer_text
from meshmsg.core.events import (
    ContactHealed,
    ContactPaired,
    DirectoryUpdated,
    LinkClosed,
    MessageReceived,
    MessageRequested,
    MessageStatusChanged,
    PeerConnected,
)
from meshmsg.core.identity import fingerprint
from meshmsg.core.node import Node
from meshmsg.errors import ConfigError, TransportError

# The prefixes of the driver's and the API's bind errors (net/runner.py, app/api.py).
_LISTEN_ERROR = "cannot listen on"
_API_ERROR = "cannot serve the API on"


@click.command()
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

    def on_event(handle: NodeHandle, event: object) -> None:
        # A plain read of the contact list between two pump steps: the pump runs in this trio
        # thread and never awaits inside a node call, so the node is never seen half-changed.
        line = describe_event(event, handle.runner.node)
        if line is not None:
            console.print(Text.assemble((clock(time.time()), "dim"), " ", line))

    try:
        trio.run(
            lambda: run_daemon(ctx.data_dir, settings, unlocked, on_ready=ready, on_event=on_event)
        )
    except (TransportError, BaseExceptionGroup) as exc:
        named = _name_the_setting(exc, settings)
        if named is None:
            raise
        raise named from exc
    console.print("stopped")


def _address_in_use(exc: BaseException) -> TransportError | None:
    """The bind failure (EADDRINUSE) inside ``exc``, which may be an exception group."""
    if isinstance(exc, BaseExceptionGroup):
        found = (_address_in_use(e) for e in exc.exceptions)
        return next((f for f in found if f is not None), None)
    cause = exc.__cause__
    in_use = isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE
    return exc if isinstance(exc, TransportError) and in_use else None


def _name_the_setting(exc: BaseException, settings: Settings) -> ConfigError | None:
    """A port already in use, said with the setting that chose it; None for anything else."""
    bind = _address_in_use(exc)
    if bind is None:
        return None
    if str(bind).startswith(_API_ERROR):
        where, fix = f"api.port 127.0.0.1:{settings.api_port}", "api.port 0"
    elif str(bind).startswith(_LISTEN_ERROR):
        where = f"network.listen {settings.listen_host}:{settings.listen_port}"
        fix = f"network.listen {settings.listen_host}:PORT"
    else:
        return None
    return ConfigError(
        f"{where} is already in use (another meshmsg daemon?): "
        f"stop it, or `meshmsg config set {fix}`"
    )


def _name(node: Node, peer_id: bytes | None) -> Text:
    if peer_id is None:
        return Text("(not yet known)")
    contact = node.contacts.get(peer_id)
    return peer_text(contact.name) if contact is not None else Text(peer_id.hex()[:8])


def describe_event(event: object, node: Node) -> Text | None:
    """One line for the events a person running the daemon cares about; contacts by name."""
    match event:
        case PeerConnected(peer_id=peer, is_contact=contact):
            who = "contact " if contact else "stranger "
            return Text.assemble("linked to ", who, _name(node, peer))
        case LinkClosed(peer_id=peer, reason=reason) if peer is not None:
            return Text.assemble("link to ", _name(node, peer), f" closed ({reason.name.lower()})")
        case ContactPaired(peer_id=peer):
            return Text.assemble("paired with ", _name(node, peer))
        case ContactHealed(peer_id=peer):
            return Text.assemble("keys healed with ", _name(node, peer))
        case MessageRequested(peer_id=peer):
            return Text.assemble("message request from ", _name(node, peer),
                                 " (`meshmsg request list`)")  # fmt: skip
        case DirectoryUpdated(serial=serial, members=members, revoked=revoked):
            return Text(f"organisation directory version {serial}: {members} members, "
                        f"{revoked} revoked")  # fmt: skip
        case MessageReceived(peer_id=peer, hops=hops):
            how = "direct" if hops <= 1 else "relayed"  # counts past 1 start at random 0..3
            return Text.assemble("message from ", _name(node, peer), f" ({how})")
        case MessageStatusChanged(message_id=mid, peer_id=peer, status=status):
            to = _name(node, peer)
            return Text.assemble(f"message {mid.hex()[:8]} to ", to, f": {status.name.lower()}")
        case _:
            return None


__all__ = ["describe_event", "run"]
