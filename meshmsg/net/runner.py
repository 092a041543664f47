"""The trio driver: one sans-IO ``Node`` on real TCP.

Theory of operation
-------------------
:func:`open_node` (or :func:`serve_node`) runs these tasks in one nursery:

* **the pump**, the only task that touches the Node (docs/architecture.md, rule 4). It takes one
  input at a time, calls the Node with ``now``, then drains effects and events until both are
  empty, carries each effect out in order, and re-arms the timer from ``next_deadline()``.
  Inputs come from a bounded channel (readers, acceptors, dialers, discovery, the application's
  :meth:`NodeRunner.call`) and from two internal queues that never block their producers: the
  storage task's commits and the connections that ended. The pump never awaits anything but its
  next input: every effect is carried out with a ``*_nowait`` operation. While
  ``max_pending_persists`` commits are outstanding it takes no new input (only commits and the
  timer), so a slow disk pushes back on peers instead of growing memory.
* **the listener** accepts connections and admits them against the link caps (below);
* **dialers** (``max_concurrent_dials`` tasks) carry out ``Dial`` effects with a connect timeout.
  A failure is counted and published as :class:`DialFailed`; it never reaches the nursery;
* per connection, **a reader and a writer** (``meshmsg/net/tcp.py``). The Transmits of one
  drain are joined per link and queued for the writer, which joins whatever is queued into one
  ``send_all``. The queue is bounded in bytes (``send_queue_bytes`` waiting behind the write in
  progress): more means the peer reads too slowly, and only that link closes;
* **storage** commits ``Persist`` effects in order on a worker thread, grouping the ones that
  waited together into one transaction, then feeds ``storage_committed`` back to the pump.

Input order per link. A connection that ends is reported to the Node (``link_lost``) only after
the pump has processed every input the reader had queued for it, so the peer's last frames
(often its ``Close`` record) are never lost to a race.

Half-open protection (security goal S8). An accepted connection is *half-open* until the Node
reports ``PeerConnected`` for it. At most ``max_half_open`` of them exist, and at most
``max_half_open_per_address`` per peer host; a newcomer that would exceed a cap evicts the
OLDEST half-open connection (of that host, for the per-address cap), never itself: an honest
handshake needs its slot for milliseconds, an idle attacker holds it for seconds, so under a
flood the attacker's sockets are the old ones. An inbound connection must also send its first
byte within ``first_byte_timeout_s``, and the Node closes handshakes that take longer than
``handshake_timeout_s``. ``max_links`` bounds all connections; when it is reached a newcomer
evicts the oldest half-open one, or is refused if every link is established.

Time. ``clock`` gives the ``now`` passed to the Node; the timer sleeps on trio's clock for
``deadline - clock()``, re-reading ``clock`` at least every ``timer_max_sleep_s``. Production
must use wall-clock time (``time.time``, the default): end-to-end key periods, message
timestamps and TTLs are derived from ``now`` and must agree with peers and survive restarts,
which a monotonic clock (reset at boot, different on every machine) would not. Tests pass
``trio.current_time`` so that ``autojump_clock`` runs everything in virtual time.

Errors. Nothing a peer does raises out of the runner. A bug (the Node raising on an input) or
storage that keeps failing stops it, and the error leaves :func:`open_node` inside an
``ExceptionGroup`` (trio nurseries are strict); so does an exception from the ``async with`` body.

Shutdown. Leaving :func:`open_node` cancels every task and closes every socket. A commit
already running in the storage thread finishes (``trio.to_thread.run_sync`` waits for it); then
the Persist effects still queued are committed too, shielded from cancellation but for at most
``shutdown_flush_s``, so that what the Node reported (a status change) survives a clean stop.
Whatever is left after that is dropped, which the contract allows: the Node never acknowledged
it, and a restart rebuilds the node from what was committed.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections import Counter, deque
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, fields
from typing import Generic, NoReturn, Protocol, TypeVar, assert_never

import outcome
import trio

from meshmsg.config import NetConfig
from meshmsg.core.driver import DriverInterface, apply_persist
from meshmsg.core.effects import (
    CloseLink,
    DeleteChunks,
    Dial,
    Effect,
    LinkId,
    LoadChunk,
    Persist,
    RecordKind,
    StoreChunk,
    StoredRecord,
    Transmit,
)
from meshmsg.core.events import Event, PeerConnected
from meshmsg.errors import LocalProtocolError, StorageError, TransportError
from meshmsg.net.chunkio import (
    ChunkInputs,
    ChunkResult,
    ChunkSink,
    ChunkWorker,
    Loaded,
    MemoryChunks,
    Stored,
)
from meshmsg.net.tcp import Connection, format_address, parse_address

# --- interfaces ------------------------------------------------------------------------------


class PersistSink(Protocol):
    """Where Persist effects go: ``meshmsg.net.storage.Storage`` in production.

    ``apply`` runs on a worker thread, one call at a time, and returns once the effect is
    committed atomically and durably; it raises ``StorageError`` on a failure it rolled back.
    """

    def apply(self, persist: Persist) -> None: ...


class PeerHint(Protocol):
    """An address worth dialing, from discovery (``meshmsg.net.discovery.DiscoveredPeer``)."""

    @property
    def address(self) -> str: ...


H = TypeVar("H", bound=PeerHint)


class PeerSource(Protocol[H]):
    """Where peers come from: ``meshmsg.net.discovery.Discovery`` or ``StaticPeers``.

    The runner reports back whether a peer worked: a success when a link dialed to its address
    authenticates, a failure when the dial fails or that link ends (the source then offers the
    peer again after a backoff).
    """

    def peers(self) -> AsyncIterator[H]: ...

    def report_failure(self, peer: H) -> None: ...

    def report_success(self, peer: H) -> None: ...


Connect = Callable[[str, int], Awaitable[trio.abc.HalfCloseableStream]]
N = TypeVar("N", bound=DriverInterface)
T = TypeVar("T")


class MemoryStorage:
    """A ``PersistSink`` that keeps records in memory: for tests and demos, never custody.

    Nothing survives the process, so a node running on it must not promise custody to peers.
    """

    def __init__(self) -> None:
        self.records: dict[tuple[RecordKind, bytes], StoredRecord] = {}
        self.applied: list[int] = []  # tokens, in commit order

    def apply(self, persist: Persist) -> None:
        apply_persist(persist, self)  # the drivers' one order: puts, then deletes
        self.applied.append(persist.token)

    def put(self, kind: RecordKind, key: bytes, value: bytes) -> None:
        self.records[(kind, key)] = StoredRecord(kind=kind, key=key, value=value)

    def delete(self, kind: RecordKind, key: bytes) -> None:
        self.records.pop((kind, key), None)

    def load_all(self) -> list[StoredRecord]:
        return list(self.records.values())


def merge_persists(batch: Sequence[Persist]) -> Persist:
    """One Persist equivalent to applying ``batch`` in order (for a group commit).

    Each (kind, key) keeps only its last operation, so the puts and deletes of the result touch
    disjoint keys and their relative order no longer matters. The token is the last one's.
    """
    if len(batch) == 1:
        return batch[0]
    last: dict[tuple[RecordKind, bytes], StoredRecord | None] = {}
    for persist in batch:  # within one Persist, puts apply before deletes
        for record in persist.puts:
            last[(record.kind, record.key)] = record
        for key in persist.deletes:
            last[key] = None
    return Persist(
        token=batch[-1].token,
        puts=tuple(r for r in last.values() if r is not None),
        deletes=tuple(k for k, r in last.items() if r is None),
    )


# --- events and statistics -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DialFailed:
    """A ``Dial`` effect could not be carried out (a driver fact, not a Node event)."""

    address: str
    detail: str


RunnerEvent = Event | DialFailed


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerStatistics:
    """A snapshot of the driver's state (see docs/operations.md)."""

    links: int  # open connections (inbound + outbound)
    links_inbound: int
    links_outbound: int
    half_open: int  # accepted connections whose peer is not yet authenticated
    queued_frames: int  # chunks (one per drain and link) waiting in writer queues, all links
    queued_bytes: int  # queued or being written, not yet accepted by the kernel
    bytes_sent: int  # totals since start, closed links included
    bytes_received: int
    accepted: int
    refused: int  # inbound refused: max_links reached and no half-open link to evict
    evicted_half_open: int
    first_byte_timeouts: int
    closed_slow: int  # links closed because their writer queue overflowed
    dials_started: int
    dials_succeeded: int
    dial_failures: int
    dials_dropped: int  # Dial effects dropped: duplicate address or dial queue full
    dials_pending: int
    inputs_queued: int  # inputs waiting for the pump
    persists_pending: int  # Persist effects not yet committed
    persists_committed: int
    commits: int  # storage transactions (one per group of Persists)
    storage_retries: int
    timer_fires: int
    next_deadline: float | None  # the Node's, in its clock
    subscribers: int
    subscribers_dropped: int  # subscribers disconnected for falling behind


@dataclass(slots=True)
class _Counters:
    bytes_sent: int = 0
    bytes_received: int = 0
    accepted: int = 0
    refused: int = 0
    evicted_half_open: int = 0
    first_byte_timeouts: int = 0
    closed_slow: int = 0
    dials_started: int = 0
    dials_succeeded: int = 0
    dial_failures: int = 0
    dials_dropped: int = 0
    persists_committed: int = 0
    commits: int = 0
    storage_retries: int = 0
    timer_fires: int = 0
    subscribers_dropped: int = 0


# --- pump inputs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Opened:
    conn: Connection


@dataclass(frozen=True, slots=True)
class _Data:
    conn: Connection
    data: bytes


@dataclass(frozen=True, slots=True)
class _Discovered:
    address: str


@dataclass(frozen=True, slots=True)
class _Call:
    run: Callable[[float], None]
    done: trio.Event = field(default_factory=trio.Event)


_Input = _Opened | _Data | _Discovered | _Call


class _HalfOpenTable:
    """Accepted connections not yet authenticated, oldest first, with counts per host."""

    def __init__(self) -> None:
        self._conns: dict[LinkId, Connection] = {}  # insertion order is age
        self._per_host: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._conns)

    def add(self, conn: Connection) -> None:
        self._conns[conn.link] = conn
        self._per_host[conn.host] += 1

    def discard(self, conn: Connection) -> None:
        if self._conns.pop(conn.link, None) is not None:
            self._per_host[conn.host] -= 1
            if not self._per_host[conn.host]:
                del self._per_host[conn.host]

    def count_for(self, host: str) -> int:
        return self._per_host[host]

    def oldest(self, host: str | None = None) -> Connection | None:
        return next((c for c in self._conns.values() if host in (None, c.host)), None)


# --- the runner ------------------------------------------------------------------------------


class NodeRunner(Generic[N]):
    """Runs one node over TCP. Create it with :func:`open_node` or :func:`serve_node`."""

    def __init__(
        self,
        node: N,
        *,
        config: NetConfig,
        storage: PersistSink,
        clock: Callable[[], float],
        connect: Connect,
        chunks: ChunkSink,
    ) -> None:
        self._node = node
        # Checked once: only a node with attachments (the real Node) emits chunk effects.
        as_object: object = node
        self._chunk_node = as_object if isinstance(as_object, ChunkInputs) else None
        self._chunks = ChunkWorker(
            chunks, self._wake_pump, retry_s=config.storage_retry_s,
            attempts=config.storage_max_attempts,
        )  # fmt: skip
        self._config = config
        self._storage = storage
        self._clock = clock
        self._connect = connect
        self._inputs_in, self._inputs_out = trio.open_memory_channel[_Input](
            config.pump_queue_inputs
        )
        # Unbounded on purpose: the pump must never block on it. It is bounded in effect by
        # max_pending_persists, past which the pump stops taking inputs that create Persists.
        self._persists_in, self._persists_out = trio.open_memory_channel[Persist](math.inf)
        self._in_flight: list[Persist] = []  # taken by the storage task, not yet committed
        self._storage_failed = False
        self._dials_in, self._dials_out = trio.open_memory_channel[str](config.max_pending_dials)
        self._committed: deque[int] = deque()  # tokens, in commit order, for the pump
        self._ended: deque[Connection] = deque()  # connections whose loss the pump must settle
        self._conns: dict[LinkId, Connection] = {}  # every connection the pump has not settled
        self._live = 0  # connections not ended
        self._half_open = _HalfOpenTable()
        self._link_ids = itertools.count(1)
        self._dialing: set[str] = set()
        # Discovery feedback per handed-out address; bounded by the source's own peer table.
        self._hints: dict[str, Callable[[bool], None]] = {}
        self._outgoing: dict[LinkId, list[bytes]] = {}  # Transmits gathered during one drain
        self._deadline: float | None = None
        self._persists_pending = 0
        self._persists_issued = 0
        self._durable_waiters: list[tuple[int, trio.Event]] | None = []  # None: pump ended
        self._wait_scope: trio.CancelScope | None = None
        self._wake_pending = False
        self._subscribers: list[trio.MemorySendChannel[RunnerEvent]] = []
        self._listeners: list[trio.SocketListener] = []
        self._nursery: trio.Nursery | None = None
        self._counters = _Counters()

    # --- public API ------------------------------------------------------------------------

    @property
    def node(self) -> N:
        """The node. Touch it only inside :meth:`call`: the pump owns it."""
        return self._node

    @property
    def port(self) -> int:
        """The TCP port the first listener is bound to (useful after ``port=0``)."""
        return self._listeners[0].socket.getsockname()[1] if self._listeners else 0

    @property
    def addresses(self) -> list[str]:
        """Every bound listening address, as ``host:port`` / ``[ipv6]:port``."""
        return [format_address(*ln.socket.getsockname()[:2]) for ln in self._listeners]

    def link_hosts(self) -> dict[LinkId, str]:
        """The remote host of each live connection by link: an inbound link's only address
        (the core knows only the dialled ``host:port`` of links we opened)."""
        return {link: c.host for link, c in self._conns.items() if not c.retired}

    async def call(self, fn: Callable[[N, float], T]) -> T:
        """Run ``fn(node, now)`` in the pump and return its result (or raise its exception).

        Use it for every application command, e.g.
        ``await runner.call(lambda node, now: node.send_message(peer, "hi", now=now))``.
        Effects and events of the call are carried out before this returns. If the caller is
        cancelled after the call was queued, the call still runs.

        Raises:
            TransportError: the runner stopped before running the call.
            Exception: whatever ``fn`` raised (for the Node: LocalProtocolError,
                InvalidMessage, ...).
        """
        box: list[outcome.Outcome[T]] = []

        def run(now: float) -> None:
            box.append(outcome.capture(fn, self._node, now))

        request = _Call(run)
        await self._submit(request)
        await request.done.wait()
        if not box:
            raise TransportError("the node runner stopped before the call ran")
        return box[0].unwrap()

    async def wait_durable(self) -> None:
        """Wait until every Persist issued so far is committed (after :meth:`call`: its writes).

        What an application acknowledges (the API's answer to a send) must wait for this, or a
        crash right after the answer could undo what it acknowledged.

        Raises:
            TransportError: the runner stopped before the commit.
        """
        target = self._persists_issued
        if self._counters.persists_committed < target:
            if self._durable_waiters is not None:
                done = trio.Event()
                self._durable_waiters.append((target, done))
                await done.wait()
            if self._counters.persists_committed < target:
                raise TransportError("the node runner stopped before the commit")

    async def peer_discovered(self, address: str) -> None:
        """Tell the node about a peer address (``host:port``); it dials unless already linked.

        Raises:
            TransportError: the runner has stopped.
        """
        await self._submit(_Discovered(address))

    @contextmanager
    def subscribe(
        self, capacity: int | None = None
    ) -> Iterator[trio.MemoryReceiveChannel[RunnerEvent]]:
        """Receive every Node event and :class:`DialFailed` from now on, in order.

        A subscriber that lets ``capacity`` (default ``event_queue_events``) events pile up is
        disconnected: its channel ends (``EndOfChannel``) after the buffered events. The pump
        never waits for a subscriber.
        """
        send, receive = trio.open_memory_channel[RunnerEvent](
            capacity if capacity is not None else self._config.event_queue_events
        )
        self._subscribers.append(send)
        try:
            with receive:
                yield receive
        finally:
            if send in self._subscribers:
                self._subscribers.remove(send)
            send.close()

    def statistics(self) -> RunnerStatistics:
        """A snapshot of links, queues and counters."""
        live = [c for c in self._conns.values() if not c.retired]
        inbound = sum(not c.initiator for c in live)
        counters = {f.name: getattr(self._counters, f.name) for f in fields(_Counters)}
        counters["bytes_sent"] += sum(c.bytes_sent for c in self._conns.values())
        counters["bytes_received"] += sum(c.bytes_received for c in self._conns.values())
        return RunnerStatistics(
            links=len(live),
            links_inbound=inbound,
            links_outbound=len(live) - inbound,
            half_open=len(self._half_open),
            queued_frames=sum(c.queued_items for c in live),
            queued_bytes=sum(c.queued_bytes + c.writing_bytes for c in live),
            dials_pending=self._dials_in.statistics().current_buffer_used,
            inputs_queued=self._inputs_in.statistics().current_buffer_used,
            persists_pending=self._persists_pending,
            next_deadline=self._deadline,
            subscribers=len(self._subscribers),
            **counters,
        )

    # --- starting ----------------------------------------------------------------------------

    async def _start(
        self,
        nursery: trio.Nursery,
        listeners: list[trio.SocketListener],
        discovery: PeerSource[H] | None,
    ) -> None:
        self._nursery = nursery
        self._listeners = listeners
        nursery.start_soon(self._pump)
        nursery.start_soon(self._store)
        nursery.start_soon(self._chunks.run)
        for _ in range(self._config.max_concurrent_dials):
            nursery.start_soon(self._dial_worker)
        if discovery is not None:
            nursery.start_soon(self._forward_discovered, discovery)
        serve = functools.partial(
            trio.serve_listeners, self._accepted, listeners, handler_nursery=nursery
        )
        await nursery.start(serve)

    async def _forward_discovered(self, source: PeerSource[H]) -> None:
        async for peer in source.peers():

            def feedback(worked: bool, peer: H = peer) -> None:
                if worked:
                    source.report_success(peer)
                else:
                    source.report_failure(peer)

            self._hints[peer.address] = feedback
            await self.peer_discovered(peer.address)

    def _hint_result(self, address: str | None, worked: bool) -> None:
        """Tell discovery how a peer it handed out fared (see :class:`PeerSource`)."""
        if address is None:
            return
        feedback = self._hints.get(address) if worked else self._hints.pop(address, None)
        if feedback is not None:
            feedback(worked)

    async def _submit(self, item: _Input) -> None:
        try:
            await self._inputs_in.send(item)
        except trio.BrokenResourceError as exc:
            raise TransportError("the node runner has stopped") from exc

    async def _submit_for(self, conn: Connection, item: _Opened | _Data) -> None:
        """Queue a link input, counted so that the link's loss is reported after it."""
        conn.inflight += 1
        sent = False
        try:
            await self._inputs_in.send(item)
            sent = True
        finally:
            if not sent:
                conn.inflight -= 1

    # --- the pump ----------------------------------------------------------------------------

    async def _pump(self) -> None:
        try:
            self._drain(self._clock())  # a restored node may have work already
            while True:
                self._settle_internal()
                now = self._clock()
                if self._deadline is not None and now >= self._deadline:
                    self._counters.timer_fires += 1
                    self._node.handle_timer(now=now)
                    self._drain(now)
                item = await self._next_input()
                if item is not None:
                    self._dispatch(item, self._clock())
        finally:
            self._stop_inputs()

    async def _next_input(self) -> _Input | None:
        """The next input; None when the timer is due or an internal queue has work."""
        if self._wake_pending:
            self._wake_pending = False
            await trio.lowlevel.checkpoint()
            return None
        with trio.CancelScope(deadline=self._timer_at()) as scope:
            self._wait_scope = scope
            try:
                if self._persists_pending >= self._config.max_pending_persists:
                    await trio.sleep_forever()  # until a commit wakes us, or the timer
                return await self._inputs_out.receive()
            finally:
                self._wait_scope = None
        self._wake_pending = False
        return None

    def _wake_pump(self) -> None:
        """Make the pump look at its internal queues (commits, ended connections) now."""
        self._wake_pending = True
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    def _timer_at(self) -> float:
        """The trio time at which the Node's deadline falls due (see "Time" above)."""
        if self._deadline is None:
            return math.inf
        config = self._config
        delay = self._deadline - self._clock()
        delay = min(max(delay, config.timer_min_interval_s), config.timer_max_sleep_s)
        return trio.current_time() + delay

    def _dispatch(self, item: _Input, now: float) -> None:
        node = self._node
        match item:
            case _Opened(conn=conn):
                conn.inflight -= 1
                if not conn.ended:
                    node.link_opened(
                        conn.link, initiator=conn.initiator, now=now, address=conn.address
                    )
                    conn.node_open = True
                    self._drain(now)
                self._settle(conn, now)
            case _Data(conn=conn, data=data):
                conn.inflight -= 1
                if conn.node_open:
                    node.receive_data(conn.link, data, now=now)
                    self._drain(now)
                self._settle(conn, now)
            case _Discovered(address=address):
                node.peer_discovered(address, now=now)
                self._drain(now)
            case _Call(run=run, done=done):
                try:
                    run(now)
                    self._drain(now)
                finally:
                    done.set()
            case _:
                assert_never(item)

    def _settle_internal(self) -> None:
        """Feed commits to the Node, in order, and report ended connections."""
        while self._committed:
            token = self._committed.popleft()
            self._persists_pending -= 1
            self._counters.persists_committed += 1
            now = self._clock()
            self._node.storage_committed(token, now=now)
            self._drain(now)
        self._release_durable(all_of_them=False)
        while self._chunks.results:
            self._chunk_done(self._chunks.results.popleft(), self._clock())
        while self._ended:
            self._settle(self._ended.popleft(), self._clock())

    def _chunk_done(self, result: ChunkResult, now: float) -> None:
        """Hand the Node what the chunk worker did (see ``net/chunkio.py``)."""
        node = self._chunk_node
        if node is None:
            raise LocalProtocolError(f"{type(self._node).__name__} emitted a chunk effect")
        match result:
            case Stored(attachment_id=aid, index=index):
                node.chunk_stored(aid, index, now=now)
            case Loaded(link=link, attachment_id=aid, index=index, body=None):
                node.chunk_load_failed(link, aid, index, now=now)
            case Loaded(link=link, attachment_id=aid, index=index, body=(proof, data)):
                node.chunk_loaded(link, aid, index, proof, data, now=now)
        self._drain(now)

    def _settle(self, conn: Connection, now: float) -> None:
        """Forget an ended connection once no input of its own is still queued."""
        if not conn.ended or conn.inflight or conn.settled:
            return
        conn.settled = True
        self._conns.pop(conn.link, None)
        self._hint_result(conn.address, worked=False)
        self._counters.bytes_sent += conn.bytes_sent
        self._counters.bytes_received += conn.bytes_received
        if conn.node_open:
            conn.node_open = False
            self._node.link_lost(conn.link, now=now)
            self._drain(now)

    def _drain(self, now: float) -> None:
        """The driver contract: effects and events until both are empty, then the deadline.

        Transmits are gathered per link and queued once, at the end of the drain: one input can
        make the Node send many records (a sync round, a burst of transfers), and counting each
        as a queue item would let a single busy moment look like a slow peer. Order per link is
        kept: a CloseLink first queues what was gathered for its link.
        """
        node = self._node
        while True:
            effect = node.next_effect()
            if effect is not None:
                self._carry_out(effect)
                continue
            event = node.next_event()
            if event is None:
                break
            self._publish(event)
        for link in list(self._outgoing):
            self._flush_outgoing(link)
        self._deadline = node.next_deadline()

    def _flush_outgoing(self, link: LinkId) -> None:
        chunks = self._outgoing.pop(link, None)
        conn = self._conns.get(link)
        if not chunks or conn is None or conn.ended or conn.closing:
            return  # the transport is gone: link_lost is on its way, or CloseLink came
        if not conn.queue_nowait(b"".join(chunks)):
            self._counters.closed_slow += 1
            self._end(conn, "writer queue full: peer too slow")

    def _carry_out(self, effect: Effect) -> None:
        match effect:
            case Transmit(link=link, data=data):
                self._outgoing.setdefault(link, []).append(data)
            case CloseLink(link=link):
                self._flush_outgoing(link)
                conn = self._conns.get(link)
                if conn is None:
                    return
                conn.node_open = False  # the Node forgot the link: no link_lost later
                self._half_open.discard(conn)
                if not conn.ended and not conn.closing:
                    conn.close_nowait()
            case Dial(address=address):
                self._dial_nowait(address)
            case Persist():
                self._persists_pending += 1
                self._persists_issued += 1
                self._persists_in.send_nowait(effect)
            case StoreChunk() | LoadChunk() | DeleteChunks():
                self._chunks.submit(effect)
            case _:
                assert_never(effect)

    def _publish(self, event: RunnerEvent) -> None:
        if isinstance(event, PeerConnected):
            conn = self._conns.get(event.link)
            if conn is not None:
                self._half_open.discard(conn)  # authenticated: no longer evictable
                self._hint_result(conn.address, worked=True)
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError):
                self._counters.subscribers_dropped += 1
                self._subscribers.remove(channel)
                channel.close()

    def _release_durable(self, *, all_of_them: bool) -> None:
        """Wake :meth:`wait_durable` callers whose writes are committed (all: the pump ends)."""
        committed, waiting = self._counters.persists_committed, self._durable_waiters or []
        kept = [w for w in waiting if w[0] > committed]
        self._durable_waiters = None if all_of_them else kept
        for target, done in waiting:
            if target <= committed or all_of_them:
                done.set()

    def _stop_inputs(self) -> None:
        """On the way out: release callers whose call will never run."""
        self._release_durable(all_of_them=True)
        while True:
            try:
                item = self._inputs_out.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if isinstance(item, _Call):
                item.done.set()
        self._inputs_out.close()

    # --- connections -------------------------------------------------------------------------

    def _register(
        self, stream: trio.abc.HalfCloseableStream, host: str, *, address: str | None
    ) -> Connection:
        conn = Connection(
            link=next(self._link_ids),
            stream=stream,
            host=host,
            initiator=address is not None,
            address=address,
            config=self._config,
        )
        self._conns[conn.link] = conn
        self._live += 1
        return conn

    def _end(self, conn: Connection, reason: str) -> None:
        """Tear a connection down (idempotent); the pump reports the loss to the Node."""
        if conn.retired:
            return
        conn.retired = True
        conn.abort(reason or "closed")  # keeps the reason of a connection that ended itself
        self._live -= 1
        self._half_open.discard(conn)
        self._ended.append(conn)
        self._wake_pump()

    async def _run(self, conn: Connection, first_byte_timeout_s: float | None) -> None:
        try:
            await conn.run(
                opened=lambda: self._submit_for(conn, _Opened(conn)),
                deliver=lambda c, data: self._submit_for(c, _Data(c, data)),
                first_byte_timeout_s=first_byte_timeout_s,
            )
        finally:
            if conn.first_byte_timed_out:
                self._counters.first_byte_timeouts += 1
            self._end(conn, "")

    async def _accepted(self, stream: trio.SocketStream) -> None:
        try:
            host = str(stream.socket.getpeername()[0])
        except OSError:  # reset before we looked: nothing to serve
            await trio.aclose_forcefully(stream)
            return
        if not self._make_room(host):
            self._counters.refused += 1
            await trio.aclose_forcefully(stream)
            return
        self._counters.accepted += 1
        conn = self._register(stream, host, address=None)
        self._half_open.add(conn)
        await self._run(conn, self._config.first_byte_timeout_s)

    def _make_room(self, host: str | None) -> bool:
        """Admit a new connection (from ``host``, or outbound when None), evicting if needed.

        Returns False when ``max_links`` is reached and no half-open link can be evicted.
        """
        config = self._config
        if host is not None:
            if self._half_open.count_for(host) >= config.max_half_open_per_address:
                self._evict(self._half_open.oldest(host))
            if len(self._half_open) >= config.max_half_open:
                self._evict(self._half_open.oldest())
        if self._live >= config.max_links:
            victim = self._half_open.oldest()
            if victim is None:
                return False
            self._evict(victim)
        return True

    def _evict(self, conn: Connection | None) -> None:
        if conn is not None:
            self._counters.evicted_half_open += 1
            self._end(conn, "evicted: oldest half-open connection")

    # --- dialing -----------------------------------------------------------------------------

    def _dial_nowait(self, address: str) -> None:
        # A link on its way out (closing or ended) does not count: the Node may re-dial at once.
        busy = address in self._dialing or any(
            c.address == address and not (c.ended or c.closing) for c in self._conns.values()
        )
        if busy:
            self._counters.dials_dropped += 1
            return
        try:
            self._dials_in.send_nowait(address)
        except trio.WouldBlock:
            self._counters.dials_dropped += 1
            self._hint_result(address, worked=False)
            self._publish(DialFailed(address=address, detail="dial queue full"))
            return
        self._dialing.add(address)

    async def _dial_worker(self) -> None:
        async for address in self._dials_out:
            try:
                await self._dial(address)
            finally:
                self._dialing.discard(address)

    async def _dial(self, address: str) -> None:
        self._counters.dials_started += 1
        try:
            host, port = parse_address(address)
            with trio.fail_after(self._config.connect_timeout_s):
                stream = await self._connect(host, port)
        except trio.TooSlowError:
            self._dial_failed(address, "connect timed out")
            return
        except (TransportError, OSError) as exc:
            self._dial_failed(address, str(exc) or type(exc).__name__)
            return
        if not self._make_room(None):
            await trio.aclose_forcefully(stream)
            self._dial_failed(address, "max_links reached")
            return
        self._counters.dials_succeeded += 1
        conn = self._register(stream, host, address=address)
        assert self._nursery is not None
        self._nursery.start_soon(self._run, conn, None)

    def _dial_failed(self, address: str, detail: str) -> None:
        self._counters.dial_failures += 1
        self._hint_result(address, worked=False)
        self._publish(DialFailed(address=address, detail=detail))

    # --- storage -----------------------------------------------------------------------------

    async def _store(self) -> None:
        """Commit Persist effects in order; group the ones that are waiting together."""
        limit = self._config.max_persists_per_commit
        async for first in self._persists_out:
            batch = [first]
            while len(batch) < limit:
                try:
                    batch.append(self._persists_out.receive_nowait())
                except trio.WouldBlock:
                    break
            self._in_flight = batch
            try:
                await self._commit(merge_persists(batch))
            except StorageError:
                self._storage_failed = True
                raise
            # No checkpoint since the commit returned: a cancellation cannot fall in between.
            self._in_flight = []
            self._counters.commits += 1
            self._committed.extend(p.token for p in batch)
            self._wake_pump()

    async def _flush_storage(self) -> None:
        """After the tasks stopped: commit the Persists already issued, within a time bound.

        The Node reported events that go with them (a status change, say); a clean stop keeps
        those. What is left after ``shutdown_flush_s`` is dropped, which the contract allows.
        The bound is checked between commits: one commit in a worker thread cannot be
        abandoned (the connection would be used by two threads), so a disk that hangs for good
        hangs the stop.
        """
        pending = list(self._in_flight)
        while True:
            try:
                pending.append(self._persists_out.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        if not pending or self._storage_failed:
            return
        limit = self._config.max_persists_per_commit
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self._config.shutdown_flush_s
            for start in range(0, len(pending), limit):
                await self._commit(merge_persists(pending[start : start + limit]))

    async def _commit(self, persist: Persist) -> None:
        attempts = self._config.storage_max_attempts
        for attempt in range(1, attempts + 1):
            try:
                # Not abandoned on cancel: a commit in progress finishes before shutdown.
                await trio.to_thread.run_sync(self._storage.apply, persist)
                return
            except StorageError:
                if attempt >= attempts:
                    raise
                self._counters.storage_retries += 1
                await trio.sleep(self._config.storage_retry_s)


# --- entry points ----------------------------------------------------------------------------


@asynccontextmanager
async def open_node(
    node: N,
    *,
    config: NetConfig | None = None,
    storage: PersistSink | None = None,
    host: str | None = None,
    port: int = 0,
    clock: Callable[[], float] = time.time,
    discovery: PeerSource[H] | None = None,
    connect: Connect = trio.open_tcp_stream,
    chunks: ChunkSink | None = None,
) -> AsyncIterator[NodeRunner[N]]:
    """Run ``node`` on TCP for the duration of the ``async with`` block.

    Args:
        node: a freshly built or restored Node (built with ``now=clock()``); from now on only
            the runner's pump may touch it: use :meth:`NodeRunner.call`.
        config: the network limits (``NodeConfig.net``).
        storage: where Persist effects are committed, e.g. ``meshmsg.net.storage.Storage``;
            default :class:`MemoryStorage` (nothing durable: tests and demos only).
        host: the address to listen on; None listens on every interface.
        port: the TCP port; 0 picks a free one (see :attr:`NodeRunner.port`).
        clock: the Node's clock in seconds; wall-clock time in production (module docstring).
        discovery: a source of peers to dial (``meshmsg.net.discovery``), told how they fared.
        connect: how to open an outbound stream; ``trio.open_tcp_stream`` by default.
        chunks: where attachment chunks live, e.g. ``meshmsg.net.chunkstore.ChunkStore``;
            default :class:`~meshmsg.net.chunkio.MemoryChunks` (tests and demos only).

    Raises:
        TransportError: the listening socket could not be opened (port in use, bad host).
        StorageError: in an exception group on exit, when commits kept failing; on its own
            when the final commit of the queued writes (see "Shutdown") fails.
    """
    runner = NodeRunner(
        node,
        config=config if config is not None else NetConfig(),
        storage=storage if storage is not None else MemoryStorage(),
        clock=clock,
        connect=connect,
        chunks=chunks if chunks is not None else MemoryChunks(),
    )
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise TransportError(f"cannot listen on {host or '*'}:{port}: {exc}") from exc
    try:
        async with trio.open_nursery() as nursery:
            try:
                await runner._start(nursery, listeners, discovery)
                yield runner
            finally:
                nursery.cancel_scope.cancel()
    finally:
        await runner._flush_storage()


async def serve_node(
    node: N,
    *,
    config: NetConfig | None = None,
    storage: PersistSink | None = None,
    host: str | None = None,
    port: int = 0,
    clock: Callable[[], float] = time.time,
    discovery: PeerSource[H] | None = None,
    chunks: ChunkSink | None = None,
    task_status: trio.TaskStatus[NodeRunner[N]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Run ``node`` until cancelled; ``await nursery.start(serve_node, node)`` gives the runner.

    Arguments and errors are those of :func:`open_node`.
    """
    async with open_node(
        node,
        config=config,
        storage=storage,
        host=host,
        port=port,
        clock=clock,
        discovery=discovery,
        chunks=chunks,
    ) as runner:
        task_status.started(runner)
        await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover
