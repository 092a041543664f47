"""How fast the trio driver moves messages and opens links, next to the crypto that bounds it.

Two measurements, each between two processes on loopback (this process dials; a child
process started with ``python -m meshmsg.bench.measure _serve ...`` listens), each run through
the real runner (``meshmsg/net/runner.py``: pump, writer batching, readers), and each next to
an in-process limit measured in the same run, between the repeats:

* :func:`measure_messages`: 1 KiB payloads per second over one Noise link.
  ``layer="link"`` carries them as ``Transfer`` records over the core ``Link`` alone (framing,
  Noise, CBOR, records joined into frames), acknowledged in windows like custody;
  ``layer="node"`` sends real messages between two ``Node`` contacts (sealing, store, sync,
  custody) and counts one when the sender sees it relayed or delivered. The limit is
  in-process Noise encrypt + frame + decrypt of 1 KiB payloads, 32 frames joined per batch
  (research §1: batching is the main lever).
* :func:`measure_links`: new authenticated links per second, dialed one after another (TCP
  connect, Noise XX, one confirmation record from the responder, close), against in-process
  XX handshakes per second (both sides in one process).

Each returns ``median_per_s``, ``min_per_s``, ``max_per_s`` over the repeats, ``limit_per_s``
(the median of the limit's measurements) and ``ratio`` (median / limit). The machine is shared
and noisy: compare ratios, not absolute numbers (research §1).

Run: ``python -m meshmsg.bench.measure messages --layer link`` / ``... links`` (``--help``).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

import trio

from meshmsg.config import PROLOGUE, MessageLimits, NetConfig, NodeConfig
from meshmsg.core.effects import CloseLink, Dial, Effect, LinkId, Transmit
from meshmsg.core.events import DropReason, EnvelopeDropped, Event, PeerConnected
from meshmsg.core.framing import FrameReader, encode_frame
from meshmsg.core.identity import ContactCard, Identity, PublicIdentity
from meshmsg.core.link import Link, LinkState, PeerHandshake, PeerVerdict
from meshmsg.core.node import Node
from meshmsg.core.noise import NoiseHandshake, NoiseTransport, StaticKey
from meshmsg.core.records import LINK_RECORDS, Hello, Transfer
from meshmsg.core.wire import Record
from meshmsg.errors import CloseReason, RemoteProtocolError, TransportError
from meshmsg.net.runner import open_node
from meshmsg.net.runnerevents import RunnerEvent
from meshmsg.net.tcp import format_address
from meshmsg.sysrng import SystemRng

PAYLOAD_BYTES: Final = 1_024
LIMIT_BATCH_FRAMES: Final = 32  # research §1: 32 frames per send_all
WINDOW: Final = 1_024  # payloads in flight on the link layer: ~1 MiB, like a sync burst
ACK_EVERY: Final = 64  # the receiver acknowledges in groups, as custody does
LIMIT_MIN_S: Final = 0.25  # each in-process limit runs at least this long (research §1)
LOCALHOST: Final = "127.0.0.1"
BENCH_RECORDS: Final = LINK_RECORDS.extend([Transfer])

# --- in-process limits ---------------------------------------------------------------------


def _transport_pair(rng: SystemRng) -> tuple[NoiseTransport, NoiseTransport]:
    initiator, responder = _handshake(rng, rng.randbytes(32), rng.randbytes(32))
    return initiator.into_transport(), responder.into_transport()


def _handshake(
    rng: SystemRng, static_i: bytes | StaticKey, static_r: bytes | StaticKey
) -> tuple[NoiseHandshake, NoiseHandshake]:
    """A complete Noise XX handshake, both sides in this process."""
    i = NoiseHandshake(
        initiator=True, static_private=static_i, ephemeral_private=rng.randbytes(32),
        prologue=PROLOGUE,
    )  # fmt: skip
    r = NoiseHandshake(
        initiator=False, static_private=static_r, ephemeral_private=rng.randbytes(32),
        prologue=PROLOGUE,
    )  # fmt: skip
    r.read_message(i.write_message())
    i.read_message(r.write_message())
    r.read_message(i.write_message())
    return i, r


def noise_transport_rate(
    payload_bytes: int = PAYLOAD_BYTES, batch: int = LIMIT_BATCH_FRAMES
) -> float:
    """Payloads per second through encrypt, framing, join, split and decrypt, in one process."""
    sender, receiver = _transport_pair(SystemRng())
    reader = FrameReader(NodeConfig().wire)
    payload = bytes(payload_bytes)
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < LIMIT_MIN_S:
        data = b"".join([encode_frame(sender.encrypt(payload)) for _ in range(batch)])
        for frame in reader.feed(data):
            receiver.decrypt(frame)
        done += batch
    return done / elapsed


def noise_handshake_rate(*, prepared: bool = False) -> float:
    """Complete Noise XX handshakes per second, both sides in one process.

    ``prepared``: static keys prepared once (:class:`StaticKey`), as a Node holds its own.
    """
    rng = SystemRng()
    keys = rng.randbytes(32), rng.randbytes(32)
    static_i, static_r = (StaticKey(k) for k in keys) if prepared else keys
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < LIMIT_MIN_S:
        _handshake(rng, static_i, static_r)
        done += 1
    return done / elapsed


def _summary(rates: Sequence[float], limits: Sequence[float], **extra: float) -> dict[str, float]:
    median, limit = statistics.median(rates), statistics.median(limits)
    return {
        "median_per_s": median,
        "min_per_s": min(rates),
        "max_per_s": max(rates),
        "limit_per_s": limit,
        "ratio": median / limit,
        "repeats": float(len(rates)),
        **extra,
    }


# --- a node made of bare Links (layer="link" and the link-rate measurement) -----------------


class BenchNode:
    """Core ``Link`` objects behind the driver interface, with a scripted application.

    Roles: ``sink`` counts payloads and acknowledges every ``ACK_EVERY``; ``source`` keeps
    ``WINDOW`` payloads in flight until ``total`` are acknowledged; ``acceptor`` confirms each
    new link with one record; ``dialer`` dials, waits for the confirmation, closes, and dials
    again until ``total`` links were confirmed.
    ``finished_at`` is set when a run completes.
    """

    def __init__(self, role: str) -> None:
        self.role = role
        self.config = NodeConfig()
        self.rng = SystemRng()
        self.static = StaticKey(self.rng.randbytes(32))  # prepared once, as a Node does
        self.links: dict[LinkId, Link] = {}
        self.total = 0
        self.sent = self.acked = self.confirmed = 0
        self.received: dict[LinkId, int] = {}
        self.address = ""
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.on_finished: Callable[[], None] = lambda: None
        self._effects: deque[Effect] = deque()
        self._events: deque[Event] = deque()
        self._payload = Transfer(envelope=bytes(PAYLOAD_BYTES), copies=1, hops=0, route_hint=None)

    # --- application commands (through runner.call) ---

    def start(self, address: str, total: int, now: float) -> None:
        self.address, self.total = address, total
        self.sent = self.acked = self.confirmed = 0
        self.started_at = now if self.role == "dialer" else None
        self.finished_at = None
        self._effects.append(Dial(address=address))

    # --- the driver interface ---

    def link_opened(
        self, link: LinkId, *, initiator: bool, now: float, address: str | None = None
    ) -> None:
        self.links[link] = Link(
            initiator=initiator, static_private=self.static, config=self.config, rng=self.rng,
            now=now, handshake_records=[Hello(version=1, capabilities=(), agent="bench")],
            decide=_stranger, registry=BENCH_RECORDS,
        )  # fmt: skip
        self.received[link] = 0
        self._flush(link, now)

    def receive_data(self, link: LinkId, data: bytes, *, now: float) -> None:
        core = self.links[link]
        was_handshake = core.state is LinkState.HANDSHAKE
        try:
            records = core.receive_data(data, now)
        except RemoteProtocolError:
            self._forget(link, CloseReason.MALFORMED)
            return
        if was_handshake and core.state is LinkState.ESTABLISHED:
            self._established(link, now)
        for record in records:
            self._on_record(link, record, now)
        if core.state is LinkState.CLOSED:
            self._forget(link, CloseReason.NORMAL)
            return
        self._flush(link, now)

    def link_lost(self, link: LinkId, *, now: float) -> None:
        self.links.pop(link, None)

    def peer_discovered(self, address: str, *, now: float) -> None:
        self._effects.append(Dial(address=address))

    def handle_timer(self, *, now: float) -> None:
        for link, core in list(self.links.items()):
            try:
                core.handle_timer(now)
            except RemoteProtocolError:
                self._forget(link, CloseReason.TIMEOUT)
                continue
            self._flush(link, now)

    def storage_committed(self, token: int, *, now: float) -> None:
        pass  # a BenchNode persists nothing

    def next_effect(self) -> Effect | None:
        return self._effects.popleft() if self._effects else None

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        deadlines = [d for core in self.links.values() if (d := core.next_deadline()) is not None]
        return min(deadlines, default=None)

    # --- the scripted application ---

    def _established(self, link: LinkId, now: float) -> None:
        self._events.append(PeerConnected(link=link, peer_id=b"", is_contact=False))
        if self.role == "acceptor":
            self.links[link].send([Transfer(envelope=b"\x01", copies=0, hops=0, route_hint=None)])
        elif self.role == "source":
            self.started_at = now
            self._send_payloads(link, min(WINDOW, self.total))

    def _on_record(self, link: LinkId, record: Record, now: float) -> None:
        if not isinstance(record, Transfer):
            return
        if self.role == "sink":
            self.received[link] += 1
            if self.received[link] % ACK_EVERY == 0:
                ack = Transfer(envelope=b"\x00", copies=ACK_EVERY, hops=0, route_hint=None)
                self.links[link].send([ack])
        elif self.role == "source":
            self.acked += record.copies
            self._send_payloads(link, min(record.copies, self.total - self.sent))
            if self.acked >= self.total:
                self._finish(now)
                self._close(link, now)
        elif self.role == "dialer":
            self.confirmed += 1
            self._close(link, now)
            if self.confirmed < self.total:
                self._effects.append(Dial(address=self.address))
            else:
                self._finish(now)

    def _finish(self, now: float) -> None:
        self.finished_at = now
        self.on_finished()

    def rate(self) -> float:
        """Payloads (source) or links (dialer) per second of the last run."""
        if self.started_at is None or self.finished_at is None:
            raise TransportError("the benchmark run did not finish")
        return self.total / (self.finished_at - self.started_at)

    def _send_payloads(self, link: LinkId, count: int) -> None:
        if count > 0:
            self.links[link].send([self._payload] * count)
            self.sent += count

    def _close(self, link: LinkId, now: float) -> None:
        self.links[link].close(CloseReason.NORMAL)
        self._flush(link, now)
        self._forget(link, CloseReason.NORMAL)

    def _flush(self, link: LinkId, now: float) -> None:
        core = self.links.get(link)
        if core is not None and (data := core.data_to_send(now)):
            self._effects.append(Transmit(link=link, data=data))

    def _forget(self, link: LinkId, reason: CloseReason) -> None:
        self.links.pop(link, None)
        self._effects.append(CloseLink(link=link, reason=reason))


def _stranger(peer: PeerHandshake) -> PeerVerdict:
    return PeerVerdict.STRANGER


# --- the listening child process -----------------------------------------------------------


class _Child:
    """``python -m meshmsg.bench.measure _serve ROLE``: listens, prints its port, runs until the
    parent closes its stdin."""

    def __init__(self, role: str, setup: str = "") -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "meshmsg.bench.measure", "_serve", role],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(setup + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.close()
            raise TransportError(f"benchmark child failed to start: {line!r}")
        self.address = format_address(LOCALHOST, int(line.split()[1]))

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def _serve(role: str) -> None:
    setup = sys.stdin.readline().strip()
    node: BenchNode | Node = BenchNode(role) if role != "node" else _node_from_setup(setup)

    async def main() -> None:
        async with open_node(node, host=LOCALHOST) as runner:
            print(f"PORT {runner.port}", flush=True)
            await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)

    trio.run(main)


async def _run_bench(node: BenchNode, address: str, count: int) -> None:
    """Run one stream (source) or one series of links (dialer) to ``address``."""
    finished = trio.Event()
    node.on_finished = finished.set  # called by the pump, in this thread
    async with open_node(node, host=LOCALHOST) as runner:
        await runner.call(lambda n, now: n.start(address, count, now))
        with trio.fail_after(300):
            await finished.wait()


async def _run_benches(nodes: Sequence[BenchNode], address: str, count: int) -> None:
    """Several dialers at once, each its own runner (several clients arriving together)."""
    async with trio.open_nursery() as nursery:
        for i, node in enumerate(nodes):
            share = count // len(nodes) + (i < count % len(nodes))
            nursery.start_soon(_run_bench, node, address, share)


def _rate_of(nodes: Sequence[BenchNode]) -> float:
    """Operations per second of runs that went on together: all of them over the whole span."""
    if len(nodes) == 1:
        return nodes[0].rate()
    starts = [n.started_at for n in nodes]
    ends = [n.finished_at for n in nodes]
    if None in starts or None in ends:
        raise TransportError("the benchmark run did not finish")
    span = max(e for e in ends if e is not None) - min(s for s in starts if s is not None)
    return sum(n.total for n in nodes) / span


# --- messages per second ---------------------------------------------------------------------


def measure_messages(
    *, count: int = 20_000, repeats: int = 5, layer: str = "link"
) -> dict[str, float]:
    """1 KiB payloads per second over one Noise link between two processes (module docstring).

    Raises:
        TransportError: the child process did not start.
    """
    if layer == "node":
        return _measure_node_messages(count=count, repeats=repeats)
    count -= count % ACK_EVERY
    return _measure_against(("sink", "source"), noise_transport_rate, count, repeats)


# --- links per second ------------------------------------------------------------------------


def measure_links(*, count: int = 300, repeats: int = 5, parallel: int = 1) -> dict[str, float]:
    """New authenticated links per second, ``parallel`` dials at once (module docstring).

    Raises:
        TransportError: the child process did not start.
    """
    return _measure_against(
        ("acceptor", "dialer"), noise_handshake_rate, count, repeats, parallel=parallel
    )


def _measure_against(
    roles: tuple[str, str],
    limit: Callable[[], float],
    count: int,
    repeats: int,
    *,
    parallel: int = 1,
) -> dict[str, float]:
    """Run ``count`` operations against a child process ``repeats`` times, each repeat next to
    the in-process ``limit`` measured just before it (roles: the child's, then ours)."""
    rates: list[float] = []
    limits: list[float] = []
    child = _Child(roles[0])
    try:
        for _ in range(repeats):
            limits.append(limit())
            nodes = [BenchNode(roles[1]) for _ in range(parallel)]
            trio.run(_run_benches, nodes, child.address, count)
            rates.append(_rate_of(nodes))
    finally:
        child.close()
    return _summary(rates, limits, count=float(count), parallel=float(parallel))


# --- messages between two Nodes ----------------------------------------------------------------


def _node_config(messages: int) -> NodeConfig:
    """The default profile, except that one contact may receive ``messages`` in a period
    (the default, 1,000 a day, would end a benchmark early)."""
    cap = max(messages, MessageLimits().max_messages_per_period)
    return NodeConfig(message=MessageLimits(max_messages_per_period=cap))


def _contact_node(identity: Identity, peer: PublicIdentity, config: NodeConfig) -> Node:
    node = Node(identity=identity, config=config, rng=SystemRng(), now=time.time())
    node.add_contact(ContactCard(public=peer), verified=True, now=time.time())
    return node


def _node_from_setup(setup: str) -> Node:
    fields = json.loads(setup)
    identity = Identity.from_bytes(bytes.fromhex(fields["identity"]))
    peer = PublicIdentity.from_bytes(bytes.fromhex(fields["peer"]))
    return _contact_node(identity, peer, _node_config(int(fields["messages"])))


def _measure_node_messages(*, count: int, repeats: int) -> dict[str, float]:
    rng = SystemRng()
    ours, theirs = Identity.generate(rng), Identity.generate(rng)
    messages = count * repeats
    setup = {
        "identity": theirs.to_bytes().hex(),
        "peer": ours.public.to_bytes().hex(),
        "messages": messages,
    }
    child = _Child("node", json.dumps(setup))
    rates: list[float] = []
    limits: list[float] = []
    try:
        limits.extend(noise_transport_rate() for _ in range(repeats))
        node = _contact_node(ours, theirs.public, _node_config(messages))
        trio.run(_node_runs, node, child.address, theirs.peer_id, count, repeats, rates)
    finally:
        child.close()
    return _summary(rates, limits, count=float(count))


async def _node_runs(
    node: Node, address: str, peer_id: bytes, count: int, repeats: int, rates: list[float]
) -> None:
    body = "x" * PAYLOAD_BYTES
    net = NetConfig()
    async with open_node(node, config=net, host=LOCALHOST) as runner:
        with runner.subscribe(capacity=10 * count + 1_000) as events:  # ~5 events a message
            await runner.peer_discovered(address)
            await _next(events, lambda e: b"" if isinstance(e, PeerConnected) else None)
            for _ in range(repeats):
                start = time.perf_counter()
                for first in range(0, count, LIMIT_BATCH_FRAMES):
                    batch = min(LIMIT_BATCH_FRAMES, count - first)
                    await runner.call(functools.partial(_send_many, peer_id, body, batch))
                arrived: set[bytes] = set()  # envelopes the peer took custody of
                while len(arrived) < count:
                    arrived.add(await _next(events, _arrived))
                rates.append(count / (time.perf_counter() - start))


def _send_many(peer_id: bytes, body: str, count: int, node: Node, now: float) -> None:
    for _ in range(count):
        node.send_message(peer_id, body, now=now)


def _arrived(event: RunnerEvent) -> bytes | None:
    """The envelope id of a message the peer (its recipient) committed, else None: the sender
    drops its copy as DELIVERED at the custody acknowledgement. (No status says so: a direct
    delivery is not RELAYED, and DELIVERED waits for the batched receipt.)"""
    if isinstance(event, EnvelopeDropped) and event.reason is DropReason.DELIVERED:
        return event.envelope_id
    return None


async def _next(
    events: trio.MemoryReceiveChannel[RunnerEvent], match: Callable[[RunnerEvent], bytes | None]
) -> bytes:
    """The first non-None ``match`` of the next events."""
    with trio.fail_after(300):
        async for event in events:
            found = match(event)
            if found is not None:
                return found
    raise TransportError("event subscription ended (fell behind)")


# --- command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m meshmsg.bench.measure", description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    messages = sub.add_parser("messages", help="1 KiB payloads/s over one link")
    messages.add_argument("--layer", choices=["link", "node"], default="link")
    messages.add_argument("-n", "--count", type=int, default=20_000)
    messages.add_argument("-r", "--repeats", type=int, default=5)
    links = sub.add_parser("links", help="new authenticated links/s")
    links.add_argument("-n", "--count", type=int, default=300)
    links.add_argument("-r", "--repeats", type=int, default=5)
    links.add_argument("-p", "--parallel", type=int, default=1, help="dials in flight")
    serve = sub.add_parser("_serve", help=argparse.SUPPRESS)
    serve.add_argument("role", choices=["sink", "acceptor", "node"])
    args = parser.parse_args(argv)
    if args.what == "_serve":
        _serve(args.role)
        return
    if args.what == "messages":
        result = measure_messages(count=args.count, repeats=args.repeats, layer=args.layer)
    else:
        result = measure_links(count=args.count, repeats=args.repeats, parallel=args.parallel)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
