"""Soak node: one real node on loopback with a clock the driver can step, reporting line by line.

Run by the soak driver (``tests/soak/driver.py``) as a subprocess::

    python -m tests.soak.node DATA_DIR --port P --peers H:P,H:P --to ID,ID --clock-file F ...

It runs what ``meshmsg run`` runs, without the local API: :func:`open_mesh_node` on the data
directory (keystore unlocked with ``MESHMSG_PASSPHRASE``, encrypted SQLite with
``synchronous=FULL``, the trio driver, static peers: here the fault proxy's ports, so every
link goes through the proxy). Its traffic is what ``POST /messages`` and ``POST /messages/read``
run (``call_durably``): a message to a random contact every ``--every`` seconds on average, of
mixed sizes (mostly short lines, some notes of a few KiB, a few near the 32 KiB limit), and
read marks for about half of what it received (read receipts travel back).

**The clock.** The node's clock is ``time.time() + offset``, where ``offset`` (seconds) is read
from ``--clock-file`` (re-read when the file changes; missing file: 0). ``open_mesh_node``
takes its clock as a parameter and gives it to the Node and the driver, so this is the whole
node's notion of wall-clock time: key periods, message timestamps, TTLs, the runner's timers
(which re-read the clock at least every ``timer_max_sleep_s``). Nothing else is patched.
Monotonic time (trio's timeouts, backoffs) is not shifted, as on a real machine whose NTP
steps the wall clock.

Lines, each printed and flushed only after the fact it reports (so a line present was true
before any kill):

* ``READY <port>``; ``LINKED <peer>``; ``PAIRED <peer>``; ``UNLINKED <peer or -> <reason>
  <detail>`` (a link ended: a node left without links is diagnosed from these);
* ``SENT <id> <to> <body>``: ``send_message`` returned and its writes are committed (the API's
  201: acknowledged);
* ``STATUS <id> <status>``; ``RECEIVED <id> <from> <body>`` (reported after the commit);
* ``PENDING <n>``: own messages not yet delivered, every write so far committed (every 0.5 s
  after SIGUSR1 stopped the traffic);
* ``STOPPED``: clean exit after SIGTERM.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import signal
import time
from pathlib import Path

import trio

from meshmsg.app.datadir import PASSPHRASE_ENV, Settings, relayed_receipts_after, unlock
from meshmsg.app.mesh import NodeHandle, open_mesh_node
from meshmsg.core.events import (
    ContactPaired,
    LinkClosed,
    MessageReceived,
    MessageStatus,
    MessageStatusChanged,
    PeerConnected,
)
from meshmsg.core.node import Node
from meshmsg.net.storage import DataDir

MAX_RUN_S = 3 * 3_600.0  # a node whose driver died stops by itself
PENDING_EVERY_S = 0.5
EVENT_BUFFER = 1_000_000  # never dropped as a slow subscriber: every event must be reported
TTL_S = 3 * 86_400.0  # above the ±24 h the driver steps clocks by (crisis profile allows it)
SIZES = ((0.80, 20, 200), (0.17, 500, 4_000), (0.03, 20_000, 30_000))  # share, bytes range


def say(line: str) -> None:
    print(line, flush=True)


class ShiftedClock:
    """``time.time()`` plus the offset in a file the driver writes (see the module doc)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._offset = 0.0

    def __call__(self) -> float:
        try:
            st = self._path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                self._offset = float(self._path.read_text() or 0)
                self._stamp = stamp
        except (OSError, ValueError):
            pass  # missing or half-written: keep the last offset
        return time.time() + self._offset


def pending(node: Node, _now: float) -> int:
    return sum(
        1
        for peer in node.conversations.peers()
        for m in node.conversations.with_peer(peer)
        if m.outgoing and m.status < MessageStatus.DELIVERED
    )


async def report(handle: NodeHandle, read_marks: trio.MemorySendChannel[tuple[bytes, bytes]],
                 rng: random.Random) -> None:  # fmt: skip
    with handle.runner.subscribe(capacity=EVENT_BUFFER) as events:
        async for event in events:
            match event:
                case PeerConnected(is_contact=True, peer_id=peer):
                    say(f"LINKED {peer.hex()}")
                case LinkClosed(peer_id=peer, reason=reason, detail=detail):
                    # Which links ended and why: a node that stays unlinked is diagnosed by it.
                    who = peer.hex() if peer is not None else "-"
                    say(f"UNLINKED {who} {reason.name.lower()} {detail.replace(' ', '_') or '-'}")
                case ContactPaired(peer_id=peer):
                    say(f"PAIRED {peer.hex()}")
                case MessageReceived(message_id=mid, peer_id=peer, body=body):
                    say(f"RECEIVED {mid.hex()} {peer.hex()} {body.split(' ', 1)[0]}")
                    if rng.random() < 0.5:
                        read_marks.send_nowait((peer, mid))
                case MessageStatusChanged(message_id=mid, status=status):
                    say(f"STATUS {mid.hex()} {status.name.lower()}")
                case _:
                    pass


async def mark_read(handle: NodeHandle,
                    marks: trio.MemoryReceiveChannel[tuple[bytes, bytes]]) -> None:  # fmt: skip
    async for peer, mid in marks:

        def mark(node: Node, now: float, peer: bytes = peer, mid: bytes = mid) -> None:
            node.mark_read(peer, [mid], now=now)

        await handle.call_durably(mark)  # as POST /messages/read


def body_of(name: str, n: int, rng: random.Random) -> str:
    _, low, high = rng.choices(SIZES, weights=[share for share, _, _ in SIZES])[0]
    head = f"{name}-{n:06d}"
    return head + " " + "x" * max(0, rng.randint(low, high) - len(head) - 1)


async def traffic(handle: NodeHandle, name: str, to: list[bytes], every: float,
                  quiet: trio.Event, rng: random.Random) -> None:  # fmt: skip
    n = 0
    while not quiet.is_set():
        peer = rng.choice(to)
        body = body_of(name, n, rng)

        def send(node: Node, now: float, peer: bytes = peer, body: str = body) -> bytes:
            return node.send_message(peer, body, now=now, ttl_s=TTL_S)

        mid = await handle.call_durably(send)  # as the API's POST /messages
        say(f"SENT {mid.hex()} {peer.hex()} {body.split(' ', 1)[0]}")
        n += 1
        await trio.sleep(rng.expovariate(1 / every))
    while True:
        say(f"PENDING {await handle.call_durably(pending)}")  # and every earlier write is on disk
        await trio.sleep(PENDING_EVERY_S)


async def run(args: argparse.Namespace) -> None:
    data_dir = DataDir(Path(args.data_dir))
    settings = Settings(
        name=args.name, profile="crisis", listen_host="127.0.0.1", listen_port=args.port,
        static_peers=tuple(p for p in args.peers.split(",") if p), api_port=0,
    )  # fmt: skip
    unlocked = unlock(data_dir, settings, lambda: os.environ[PASSPHRASE_ENV])
    rng = random.Random(args.seed)
    quiet = trio.Event()
    clock = ShiftedClock(Path(args.clock_file))
    marks_send, marks_receive = trio.open_memory_channel[tuple[bytes, bytes]](EVENT_BUFFER)
    config = settings.node_config()
    if args.retry_max_s:  # the CI variant: a short settle needs short redial backoffs
        config = config.replace(
            net=dataclasses.replace(config.net, peer_retry_max_s=args.retry_max_s)
        )
    if args.receipt_delay_s:  # the CI variant: a short settle cannot wait 30-300 s for them
        config = relayed_receipts_after(config, args.receipt_delay_s)
    with trio.move_on_after(MAX_RUN_S):
        async with (
            open_mesh_node(
                data_dir, settings, unlocked, config=config, mdns=False, clock=clock
            ) as handle,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(report, handle, marks_send, rng)
            nursery.start_soon(mark_read, handle, marks_receive)
            to = [bytes.fromhex(t) for t in args.to.split(",") if t]
            if to:
                nursery.start_soon(traffic, handle, args.name, to, args.every, quiet, rng)
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
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--peers", default="", help="static peers, host:port,...")
    parser.add_argument("--to", default="", help="peer ids (hex) to send to, comma separated")
    parser.add_argument("--every", type=float, default=0.2, help="mean seconds between sends")
    parser.add_argument("--clock-file", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retry-max-s", type=float, default=0.0, help="redial backoff ceiling")
    parser.add_argument(
        "--receipt-delay-s", type=float, default=0.0, help="relayed receipts' delay, no hold"
    )
    trio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()
