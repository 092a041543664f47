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
* **the listener** accepts connections and admits them against the link caps
  (``net/connections.py``);
* **dialers** (``max_concurrent_dials`` tasks) carry out ``Dial`` effects with a connect timeout.
  A failure is counted and published as :class:`DialFailed`; it never reaches the nursery;
* per connection, **a reader and a writer** (``meshmsg/net/tcp.py``). The Transmits of one
  drain are joined per link and queued for the writer, which joins whatever is queued into one
  ``send_all``. The queue is bounded in bytes (``send_queue_bytes`` waiting behind the write in
  progress): more means the peer reads too slowly, and only that link closes;
* **storage** commits ``Persist`` effects in order on a worker thread, grouping the ones that
  waited together into one transaction, then feeds ``storage_committed`` back to the pump.

The parts, one module each: the connection set and its half-open protection
(``net/connections.py``), the dialers (``net/dialer.py``), the storage task with group commits
and the shutdown flush (``net/persistence.py``), the chunk worker (``net/chunkio.py``), the
subscribers (``net/runnerevents.py``), discovery's feedback (``net/peerfeedback.py``) and the
counters (``net/runnerstats.py``). This module is the pump that joins them, and the entry points.

Input order per link. A connection that ends is reported to the Node (``link_lost``) only after
the pump has processed every input the reader had queued for it, so the peer's last frames
(often its ``Close`` record) are never lost to a race.

Time. ``clock`` gives the ``now`` passed to the Node; the timer sleeps on trio's clock for
``deadline - clock()``, re-reading ``clock`` at least every ``timer_max_sleep_s``. Production
must use wall-clock time (``time.time``, the default): end-to-end key periods, message
timestamps and TTLs are derived from ``now`` and must agree with peers and survive restarts,
which a monotonic clock (reset at boot, different on every machine) would not. Tests pass
``trio.current_time`` so that ``autojump_clock`` runs everything in virtual time.

Errors. Nothing a peer does raises out of the runner. A bug (the Node raising on an input) or
storage that keeps failing stops it, and the error leaves :func:`open_node` inside an
``ExceptionGroup`` (trio nurseries are strict); so does an exception from the ``async with`` body.

Shutdown. Leaving :func:`open_node` cancels every task and closes every socket, then commits
the Persist effects still queued within ``shutdown_flush_s`` (``net/persistence.py``).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass, field, fields
from typing import Generic, NoReturn, TypeVar, assert_never

import outcome
import trio

from meshmsg.config import NetConfig
from meshmsg.core.driver import DriverInterface
from meshmsg.core.effects import (
    CloseLink,
    DeleteChunks,
    Dial,
    Effect,
    LinkId,
    LoadChunk,
    LoadEnvelope,
    Persist,
    StoreChunk,
    Transmit,
)
from meshmsg.core.events import PeerConnected
from meshmsg.errors import LocalProtocolError, TransportError
from meshmsg.net.chunkio import (
    ChunkInputs,
    ChunkResult,
    ChunkSink,
    ChunkWorker,
    MemoryChunks,
    hand_chunk_result,
)
from meshmsg.net.connections import ConnectionTable
from meshmsg.net.dialer import Connect, Dialer
from meshmsg.net.peerfeedback import H, PeerFeedback, PeerSource
from meshmsg.net.persistence import CommitQueue, MemoryStorage, PersistSink
from meshmsg.net.runnerevents import DialFailed, EventFanout, RunnerEvent
from meshmsg.net.runnerstats import RunnerCounters, RunnerStatistics
from meshmsg.net.tcp import Connection, connect_tcp, format_address

N = TypeVar("N", bound=DriverInterface)
T = TypeVar("T")


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
        self._clock = clock
        self._counters = RunnerCounters()
        self._inputs_in, self._inputs_out = trio.open_memory_channel[_Input](
            config.pump_queue_inputs
        )
        self._commits = CommitQueue(
            storage, config=config, counters=self._counters, wake_pump=self._wake_pump
        )
        self._connections = ConnectionTable(
            config=config, counters=self._counters, wake_pump=self._wake_pump,
            opened=lambda conn: self._submit_for(conn, _Opened(conn)),
            deliver=lambda conn, data: self._submit_for(conn, _Data(conn, data)),
        )  # fmt: skip
        self._dialer = Dialer(
            connect, config=config, counters=self._counters, connections=self._connections,
            on_failed=self._dial_failed, start_connection=self._start_dialed,
        )  # fmt: skip
        self._peer_feedback = PeerFeedback()
        self._events = EventFanout(config.event_queue_events)
        self._outgoing: dict[LinkId, list[bytes]] = {}  # Transmits gathered during one drain
        self._deadline: float | None = None
        self._wait_scope: trio.CancelScope | None = None
        self._wake_pending = False
        self._listeners: list[trio.SocketListener] = []
        self._nursery: trio.Nursery | None = None

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
        conns = self._connections.conns.items()
        return {link: c.host for link, c in conns if not c.retired}

    def reaches(self, address: str) -> bool:
        """Whether a dial to ``address`` is queued or running, or a connection to it is up."""
        return self._dialer.reaches(address)

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
        await self._commits.wait_durable()

    async def peer_discovered(self, address: str) -> None:
        """Tell the node about a peer address (``host:port``); it dials unless already linked.

        Raises:
            TransportError: the runner has stopped.
        """
        await self._submit(_Discovered(address))

    def subscribe(
        self, capacity: int | None = None
    ) -> AbstractContextManager[trio.MemoryReceiveChannel[RunnerEvent]]:
        """Receive every Node event and :class:`DialFailed` from now on, in order.

        A subscriber that lets ``capacity`` (default ``event_queue_events``) events pile up is
        disconnected: its channel ends (``EndOfChannel``) after the buffered events. The pump
        never waits for a subscriber.
        """
        return self._events.subscribe(capacity)

    def statistics(self) -> RunnerStatistics:
        """A snapshot of links, queues and counters."""
        counters = {f.name: getattr(self._counters, f.name) for f in fields(RunnerCounters)}
        return RunnerStatistics(
            **(counters | self._connections.figures()),
            dials_pending=self._dialer.pending,
            inputs_queued=self._inputs_in.statistics().current_buffer_used,
            persists_pending=self._commits.pending,
            next_deadline=self._deadline,
            subscribers=len(self._events),
            subscribers_dropped=self._events.dropped,
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
        nursery.start_soon(self._commits.run)
        nursery.start_soon(self._chunks.run)
        for _ in range(self._config.max_concurrent_dials):
            nursery.start_soon(self._dialer.worker)
        if discovery is not None:
            nursery.start_soon(self._peer_feedback.forward, discovery, self.peer_discovered)
        serve = functools.partial(
            trio.serve_listeners, self._connections.accepted, listeners, handler_nursery=nursery
        )
        await nursery.start(serve)

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
                if self._commits.pending >= self._config.max_pending_persists:
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
        while (token := self._commits.pop_committed()) is not None:
            now = self._clock()
            self._node.storage_committed(token, now=now)
            self._drain(now)
        self._commits.release_durable(all_of_them=False)
        self._commits.hand_loaded(self._node, self._clock, self._drain)
        busy = functools.partial(self._connections.writer_busy, gathered=self._outgoing)
        if self._chunks.hand_results(busy, self._chunk_done):
            self._end_batch()  # their Transmits leave in one write per link
        ended = self._connections.ended
        while ended:
            self._settle(ended.popleft(), self._clock())

    def _chunk_done(self, result: ChunkResult) -> None:
        """Hand the Node what the chunk worker did (see ``net/chunkio.py``)."""
        if self._chunk_node is None:
            raise LocalProtocolError(f"{type(self._node).__name__} emitted a chunk effect")
        hand_chunk_result(self._chunk_node, result, now=(now := self._clock()))
        self._drain(now, batch=True)

    def _settle(self, conn: Connection, now: float) -> None:
        """Forget an ended connection once no input of its own is still queued."""
        if not conn.ended or conn.inflight or conn.settled:
            return
        conn.settled = True
        self._connections.forget(conn)
        self._peer_feedback.result(conn.address, worked=False)
        if conn.node_open:
            conn.node_open = False
            self._node.link_lost(conn.link, now=now)
            self._drain(now)

    def _drain(self, now: float, *, batch: bool = False) -> None:
        """The driver contract: effects and events until both are empty, then the deadline.

        Transmits are queued once per link, at the end of the drain (or of the caller's ``batch``):
        a burst counted item by item would look like a slow peer. A CloseLink queues its first.
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
        if not batch:
            self._end_batch()

    def _end_batch(self) -> None:
        for link in list(self._outgoing):
            self._flush_outgoing(link)
        self._deadline = self._node.next_deadline()

    def _flush_outgoing(self, link: LinkId) -> None:
        chunks = self._outgoing.pop(link, None)
        conn = self._connections.conns.get(link)
        if not chunks or conn is None or conn.ended or conn.closing:
            return  # the transport is gone: link_lost is on its way, or CloseLink came
        if not conn.queue_nowait(b"".join(chunks)):
            self._counters.closed_slow += 1
            self._connections.end(conn, "writer queue full: peer too slow")

    def _carry_out(self, effect: Effect) -> None:
        match effect:
            case Transmit(link=link, data=data):
                self._outgoing.setdefault(link, []).append(data)
            case CloseLink(link=link):
                self._flush_outgoing(link)
                conn = self._connections.conns.get(link)
                if conn is None:
                    return
                conn.node_open = False  # the Node forgot the link: no link_lost later
                self._connections.half_open.discard(conn)
                if not conn.ended and not conn.closing:
                    conn.close_nowait()
            case Dial(address=address):
                self._dialer.dial_nowait(address)
            case Persist():
                self._commits.submit(effect)
            case LoadEnvelope():
                self._commits.load(effect)
            case StoreChunk() | LoadChunk() | DeleteChunks():
                self._chunks.submit(effect)
            case _:
                assert_never(effect)

    def _publish(self, event: RunnerEvent) -> None:
        if isinstance(event, PeerConnected):
            conn = self._connections.conns.get(event.link)
            if conn is not None:
                self._connections.half_open.discard(conn)  # authenticated: no longer evictable
                self._peer_feedback.result(conn.address, worked=True)
        self._events.publish(event)

    def _stop_inputs(self) -> None:
        """On the way out: release callers whose call will never run."""
        self._commits.release_durable(all_of_them=True)
        while True:
            try:
                item = self._inputs_out.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if isinstance(item, _Call):
                item.done.set()
        self._inputs_out.close()

    # --- connections -------------------------------------------------------------------------

    def _start_dialed(self, conn: Connection) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._connections.run, conn, None)

    def _dial_failed(self, address: str, detail: str) -> None:
        self._peer_feedback.result(address, worked=False)
        self._publish(DialFailed(address=address, detail=detail))


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
    connect: Connect = connect_tcp,
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
        connect: how to open an outbound stream; ``net.tcp.connect_tcp`` by default.
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
        await runner._commits.flush()


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
