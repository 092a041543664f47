"""Kill -9 harness node: one real node on loopback that reports what it was told, line by line.

Run as a subprocess by ``test_kill9.py``::

    python kill9_node.py DATA_DIR --port P --peer 127.0.0.1:Q [--to PEER_ID --prefix P --every S]

It is what ``meshmsg run`` runs, without the local API: :func:`open_mesh_node` on the data
directory (keystore unlocked with ``MESHMSG_PASSPHRASE``, encrypted SQLite committed with
``synchronous=FULL``, the trio driver, the other node as its one static peer). With ``--to`` it
sends a text message to that contact every ``--every`` seconds until SIGUSR1 (bodies
``<prefix>-<n>``). SIGTERM stops it cleanly. Every line is flushed at once, so a line in the
output was written before the kill; each is printed only *after* the fact it reports:

* ``READY <port>``: listening;
* ``LINKED`` / ``PAIRED``: a link to the contact authenticated / pairwise keys made;
* ``SENT <id> <body>``: ``send_message`` returned and its writes are committed (what the API's
  ``POST /messages`` waits for before it answers 201);
* ``STATUS <id> <status>``: the Node reported a status change, which for ``relayed`` means the
  peer acknowledged custody after its durable commit;
* ``RECEIVED <id> <body>``: the Node reported a received message, which it does only after the
  message was committed;
* ``PENDING <n>``: own messages not yet delivered, with every write so far committed (every
  0.2 s once sending stopped);
* ``STOPPED``: clean exit after SIGTERM.
"""

from __future__ import annotations

import argparse
import enum
import os
import signal
from pathlib import Path

import trio

from meshmsg.app.datadir import PASSPHRASE_ENV, Settings, unlock
from meshmsg.app.mesh import NodeHandle, open_mesh_node
from meshmsg.core.events import (
    ContactPaired,
    MessageReceived,
    MessageStatus,
    MessageStatusChanged,
    PeerConnected,
)
from meshmsg.core.node import Node
from meshmsg.net.storage import DataDir

MAX_RUN_S = 180.0  # a node whose test died stops by itself
PENDING_EVERY_S = 0.2
EVENT_BUFFER = 1_000_000  # never dropped as a slow subscriber: every event must be reported


def say(line: str) -> None:
    print(line, flush=True)


def pending(node: Node, _now: float) -> int:
    return sum(
        1
        for peer in node.conversations.peers()
        for m in node.conversations.with_peer(peer)
        if m.outgoing and m.status < MessageStatus.DELIVERED
    )


def describe(event: object) -> str:
    """One line for any other event: its type and fields, ids in hex."""
    fields = getattr(event, "__dataclass_fields__", {})
    parts = [type(event).__name__]
    for name in fields:
        value = getattr(event, name)
        if isinstance(value, bytes):
            text = value.hex()
        else:
            text = value.name if isinstance(value, enum.Enum) else str(value)
        parts.append(f"{name}={text}".replace(" ", "_"))
    return " ".join(parts)


async def report(handle: NodeHandle) -> None:
    with handle.runner.subscribe(capacity=EVENT_BUFFER) as events:
        async for event in events:
            match event:
                case PeerConnected(is_contact=True):
                    say("LINKED")
                case ContactPaired():
                    say("PAIRED")
                case MessageReceived(message_id=mid, body=body):
                    say(f"RECEIVED {mid.hex()} {body}")
                case MessageStatusChanged(message_id=mid, status=status):
                    say(f"STATUS {mid.hex()} {status.name.lower()}")
                case _:
                    say(f"EVENT {describe(event)}")  # context for a failure message


async def send_until(handle: NodeHandle, to: bytes, prefix: str, every: float,
                     quiet: trio.Event) -> None:  # fmt: skip
    n = 0
    while not quiet.is_set():
        body = f"{prefix}-{n:05d}"

        def send(node: Node, now: float, body: str = body) -> bytes:
            return node.send_message(to, body, now=now)

        mid = await handle.call_durably(send)  # as the API's POST /messages
        say(f"SENT {mid.hex()} {body}")
        n += 1
        await trio.sleep(every)
    while True:
        say(f"PENDING {await handle.call_durably(pending)}")  # and every earlier write is on disk
        await trio.sleep(PENDING_EVERY_S)


async def run(args: argparse.Namespace) -> None:
    data_dir = DataDir(Path(args.data_dir))
    settings = Settings(
        listen_host="127.0.0.1", listen_port=args.port, static_peers=(args.peer,), api_port=0
    )
    passphrase = os.environ[PASSPHRASE_ENV]
    unlocked = unlock(data_dir, settings, lambda: passphrase)
    quiet = trio.Event()
    with trio.move_on_after(MAX_RUN_S):
        async with (
            open_mesh_node(data_dir, settings, unlocked, mdns=False) as handle,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(report, handle)
            if args.to:
                nursery.start_soon(send_until, handle, bytes.fromhex(args.to), args.prefix,
                                   args.every, quiet)  # fmt: skip
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGUSR1) as signals:
                say(f"READY {handle.runner.port}")  # signals are handled from here on
                async for signum in signals:
                    if signum == signal.SIGUSR1:
                        quiet.set()
                    else:
                        break
            nursery.cancel_scope.cancel()
    say("STOPPED")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("data_dir")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--peer", required=True, help="the other node, 127.0.0.1:PORT")
    parser.add_argument("--to", default="", help="peer id (hex) to send to; empty: only receive")
    parser.add_argument("--prefix", default="m", help="message bodies are <prefix>-<n>")
    parser.add_argument("--every", type=float, default=0.02, help="seconds between messages")
    trio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()
