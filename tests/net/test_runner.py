"""Tests of the trio driver (meshmsg/net/runner.py, tcp.py) with a fake node on loopback TCP.

The fake node implements the driver half of ``Node`` and enforces its contract: data or a loss
for a link it does not have open raises ``LocalProtocolError``, as the real Node does, which
would crash the runner and fail the test. Its "handshake" is a line: an initiator sends
``HELLO\\n`` when its link opens; a node that receives it reports ``PeerConnected`` and answers
``WELCOME\\n``.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from meshmsg.config import NetConfig
from meshmsg.core.effects import (
    CloseLink,
    Dial,
    Effect,
    LinkId,
    Persist,
    RecordKind,
    StoredRecord,
    Transmit,
)
from meshmsg.core.events import Event, LinkClosed, PeerConnected
from meshmsg.errors import CloseReason, LocalProtocolError, StorageError, TransportError
from meshmsg.net.persistence import MemoryStorage, merge_persists
from meshmsg.net.runner import NodeRunner, open_node, serve_node
from meshmsg.net.runnerevents import DialFailed, RunnerEvent
from meshmsg.net.tcp import format_address, parse_address

HELLO = b"HELLO\n"
WELCOME = b"WELCOME\n"
LOCALHOST = "127.0.0.1"


class FakeNode:
    """Records every input; emits scripted effects; enforces the link contract."""

    def __init__(self, *, deadline: float | None = None) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.open: dict[LinkId, bool] = {}  # link -> initiator
        self.established: set[LinkId] = set()
        self.received: dict[LinkId, bytes] = {}
        self.committed: list[int] = []
        self.timer_calls: list[float] = []
        self.deadline = deadline
        self.on_timer: Callable[[FakeNode, float], None] | None = None
        self.storage: MemoryStorage | None = None  # when set: check commit-before-answer
        self._effects: deque[Effect] = deque()
        self._events: deque[Event] = deque()

    # --- the driver interface ---

    def link_opened(
        self, link: LinkId, *, initiator: bool, now: float, address: str | None = None
    ) -> None:
        if link in self.open:
            raise LocalProtocolError(f"link {link} is already open")
        self.calls.append(("opened", link, initiator, address))
        self.open[link] = initiator
        self.received[link] = b""
        if initiator:
            self._effects.append(Transmit(link=link, data=HELLO))

    def receive_data(self, link: LinkId, data: bytes, *, now: float) -> None:
        if link not in self.open:
            raise LocalProtocolError(f"data for unknown link {link}")
        self.calls.append(("data", link, data))
        self.received[link] += data
        if link not in self.established and HELLO in self.received[link]:
            self.established.add(link)
            self._events.append(PeerConnected(link=link, peer_id=bytes(16), is_contact=True))
            if not self.open[link]:
                self._effects.append(Transmit(link=link, data=WELCOME))

    def link_lost(self, link: LinkId, *, now: float) -> None:
        if link not in self.open:
            raise LocalProtocolError(f"loss of unknown link {link}")
        self.calls.append(("lost", link))
        del self.open[link]
        self._events.append(LinkClosed(link=link, reason=CloseReason.LINK_LOST, peer_id=None))

    def peer_discovered(self, address: str, *, now: float) -> None:
        self.calls.append(("discovered", address))
        self._effects.append(Dial(address=address))

    def handle_timer(self, *, now: float) -> None:
        self.timer_calls.append(now)
        if self.on_timer is not None:
            self.on_timer(self, now)

    def storage_committed(self, token: int, *, now: float) -> None:
        if self.storage is not None:
            # Committed before it is answered (a group commit carries its last token).
            assert self.storage.applied
            assert token <= self.storage.applied[-1]
        self.committed.append(token)

    def next_effect(self) -> Effect | None:
        return self._effects.popleft() if self._effects else None

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        return self.deadline

    # --- scripting (called through runner.call) ---

    def script(self, *effects: Effect) -> None:
        for effect in effects:
            if isinstance(effect, CloseLink):
                del self.open[effect.link]  # the Node forgets a link it closes
            self._effects.append(effect)

    def link_of(self, initiator: bool) -> LinkId:
        return next(link for link, init in self.open.items() if init is initiator)


@dataclass
class Harness:
    runner: NodeRunner[FakeNode]
    node: FakeNode
    events: trio.MemoryReceiveChannel[RunnerEvent]

    @property
    def address(self) -> str:
        return format_address(LOCALHOST, self.runner.port)

    async def next_event(self, kind: type[object]) -> RunnerEvent:
        with trio.fail_after(5):
            async for event in self.events:
                if isinstance(event, kind):
                    return event
        raise AssertionError("event channel ended")

    async def connect(self, *, hello: bool = True) -> trio.SocketStream:
        """A raw client; with ``hello`` it completes the fake handshake."""
        stream = await trio.open_tcp_stream(LOCALHOST, self.runner.port)
        if hello:
            await stream.send_all(HELLO)
            assert await read_exactly(stream, len(WELCOME)) == WELCOME
            await self.next_event(PeerConnected)
        return stream


@asynccontextmanager
async def running(
    node: FakeNode | None = None, *, storage: MemoryStorage | None = None, **config: object
) -> AsyncIterator[Harness]:
    node = node if node is not None else FakeNode()
    async with open_node(
        node,
        config=NetConfig(**config),  # type: ignore[arg-type]
        storage=storage,
        host=LOCALHOST,
        clock=trio.current_time,
    ) as runner:
        with runner.subscribe(capacity=1_000) as events:
            yield Harness(runner, node, events)


async def read_exactly(stream: trio.abc.ReceiveStream, n: int) -> bytes:
    data = b""
    with trio.fail_after(5):
        while len(data) < n:
            chunk = await stream.receive_some(n - len(data))
            assert chunk, f"EOF after {data!r}"
            data += chunk
    return data


async def read_to_eof(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some():
            data += chunk
    return data


async def wait_until(predicate: Callable[[], bool], limit_s: float = 5.0) -> None:
    """A bounded wait for something real sockets do (polls: statistics are snapshots)."""
    with trio.fail_after(limit_s):
        while not predicate():  # noqa: ASYNC110 - nothing to wait on but a snapshot
            await trio.sleep(0.002)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.2:7400", ("10.0.0.2", 7400)),
        ("node.local:1", ("node.local", 1)),
        ("[::1]:65535", ("::1", 65535)),
        ("[fe80::1%eth0]:7400", ("fe80::1%eth0", 7400)),
    ],
)
def test_parse_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected
    assert format_address(*expected) == address


@pytest.mark.parametrize(
    "address",
    ["", "host", ":7400", "host:", "host:0", "host:65536", "host:+1", "::1:7400", "[::1]7400",
     "[::1", "[nothost]:1", "host:٣"],
)  # fmt: skip
def test_parse_address_rejects(address: str) -> None:
    with pytest.raises(TransportError):
        parse_address(address)


# --- effects, in order -------------------------------------------------------------------------


async def test_effects_are_carried_out_in_order_and_close_flushes() -> None:
    storage = MemoryStorage()
    node = FakeNode()
    node.storage = storage
    async with running(node, storage=storage) as h:
        client = await h.connect()
        link = node.link_of(False)
        record = StoredRecord(kind=RecordKind.META, key=b"k", value=b"v")
        await h.runner.call(
            lambda n, now: n.script(
                Transmit(link=link, data=b"one,"),
                Persist(token=1, puts=(record,)),
                Transmit(link=link, data=b"two,"),
                Transmit(link=link, data=b"three"),
                CloseLink(link=link, reason=CloseReason.NORMAL),
            )
        )
        assert await read_to_eof(client) == b"one,two,three"  # flushed before the close
        await client.aclose()
        await wait_until(lambda: node.committed == [1])
        await wait_until(lambda: h.runner.statistics().links == 0)
        assert storage.records == {(RecordKind.META, b"k"): record}
        # The node closed the link itself: the runner must not report it lost afterwards.
        assert ("lost", link) not in node.calls
        assert node.calls[0] == ("opened", link, False, None)


async def test_dial_reaches_the_peer_and_passes_the_address() -> None:
    async with running() as h:
        listeners = await trio.open_tcp_listeners(0, host=LOCALHOST)
        async with listeners[0]:
            address = format_address(LOCALHOST, listeners[0].socket.getsockname()[1])
            await h.runner.peer_discovered(address)
            with trio.fail_after(5):
                server = await listeners[0].accept()
            async with server:
                assert await read_exactly(server, len(HELLO)) == HELLO
                link = h.node.link_of(True)
                assert ("opened", link, True, address) in h.node.calls
                await server.send_all(HELLO)  # the fake treats HELLO as the peer's answer
                connected = await h.next_event(PeerConnected)
                assert isinstance(connected, PeerConnected)
                assert connected.link == link
                stats = h.runner.statistics()
                assert (stats.dials_succeeded, stats.links_outbound, stats.half_open) == (1, 1, 0)


async def test_batches_many_transmits_into_few_sends() -> None:
    async with running() as h:
        client = await h.connect()
        link = h.node.link_of(False)
        chunks = [b"%05d;" % i for i in range(1_000)]
        await h.runner.call(lambda n, now: n.script(*(Transmit(link=link, data=c) for c in chunks)))
        assert await read_exactly(client, 6_000) == b"".join(chunks)
        await client.aclose()


async def test_input_order_is_kept_when_the_peer_closes() -> None:
    async with running() as h:
        client = await h.connect()
        link = h.node.link_of(False)
        await client.send_all(b"last words")
        await client.aclose()
        await wait_until(lambda: ("lost", link) in h.node.calls)
        link_calls = [c for c in h.node.calls if c[1] == link]
        assert link_calls[-1] == ("lost", link)
        assert h.node.received[link].endswith(b"last words")
        closed = await h.next_event(LinkClosed)
        assert isinstance(closed, LinkClosed)
        assert closed.reason is CloseReason.LINK_LOST


# --- slow peers --------------------------------------------------------------------------------


async def test_slow_peer_overflow_closes_only_that_link() -> None:
    async with running(send_queue_bytes=256 * 1024) as h:
        slow = await h.connect()
        slow_link = h.node.link_of(False)
        fast = await h.connect()
        fast_link = next(k for k, init in h.node.open.items() if not init and k != slow_link)
        block = b"x" * 128 * 1024
        received = 0
        for _ in range(800):  # at most 100 MiB; kernel buffers hold a few MiB
            await h.runner.call(
                lambda n, now: n.script(
                    Transmit(link=slow_link, data=block), Transmit(link=fast_link, data=b"ok")
                )
            )
            received += len(await read_exactly(fast, 2))
            if h.runner.statistics().closed_slow:
                break
        assert h.runner.statistics().closed_slow == 1
        await wait_until(lambda: ("lost", slow_link) in h.node.calls)
        assert fast_link in h.node.open
        await h.runner.call(lambda n, now: n.script(Transmit(link=fast_link, data=b"still")))
        assert await read_exactly(fast, 5) == b"still"
        assert h.runner.statistics().links == 1
        await slow.aclose()
        await fast.aclose()


async def test_many_small_sends_during_one_slow_write_are_not_a_slow_peer() -> None:
    # A burst larger than the kernel's buffers blocks the writer; meanwhile the pump hands over
    # hundreds of small chunks (one per input). Only bytes count, so the link stays up.
    async with running(send_queue_bytes=256 * 1024) as h:
        client = await h.connect()
        link = h.node.link_of(False)
        burst = b"b" * (16 << 20)

        def send(data: bytes) -> Callable[[FakeNode, float], None]:
            return lambda n, now: n.script(Transmit(link=link, data=data))

        await h.runner.call(send(burst))
        for i in range(500):
            await h.runner.call(send(b"%03d" % i))
        stats = h.runner.statistics()
        assert stats.queued_bytes > len(burst) // 2  # the writer is still on the burst
        assert stats.queued_frames > 64  # more chunks than the old per-item cap allowed
        data = await read_exactly(client, len(burst) + 1_500)
        assert data[len(burst) :] == b"".join(b"%03d" % i for i in range(500))
        assert h.runner.statistics().closed_slow == 0
        await client.aclose()


# --- storage -----------------------------------------------------------------------------------


class GatedStorage(MemoryStorage):
    """Applies in a worker thread; the first apply waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.started = threading.Event()
        self.batches: list[int] = []  # tokens of each apply call
        self.failures_left = 0

    def apply(self, persist: Persist) -> None:
        self.started.set()
        assert self.gate.wait(10)
        if self.failures_left:
            self.failures_left -= 1
            raise StorageError("database is locked")
        self.batches.append(persist.token)
        super().apply(persist)


def put(key: bytes, value: bytes) -> StoredRecord:
    return StoredRecord(kind=RecordKind.ENVELOPE, key=key, value=value)


async def test_persists_commit_in_order_grouped_and_before_their_answer() -> None:
    storage = GatedStorage()
    node = FakeNode()
    node.storage = storage
    async with running(node, storage=storage) as h:
        await h.runner.call(lambda n, now: n.script(Persist(token=1, puts=(put(b"a", b"1"),))))
        await trio.to_thread.run_sync(storage.started.wait)
        later = [
            Persist(token=2, puts=(put(b"b", b"2"),)),
            Persist(token=3, deletes=((RecordKind.ENVELOPE, b"b"),)),
            Persist(token=4, puts=(put(b"a", b"4"), put(b"c", b"4"))),
            Persist(token=5, deletes=((RecordKind.ENVELOPE, b"c"),)),
        ]
        await h.runner.call(lambda n, now: n.script(*later))
        assert node.committed == []  # nothing is answered before its commit
        assert h.runner.statistics().persists_pending == 5
        storage.gate.set()
        await wait_until(lambda: len(node.committed) == 5)
        assert node.committed == [1, 2, 3, 4, 5]
        assert storage.batches == [1, 5]  # 2..5 waited together: one transaction
        assert storage.records == {(RecordKind.ENVELOPE, b"a"): put(b"a", b"4")}
        stats = h.runner.statistics()
        assert (stats.commits, stats.persists_committed, stats.persists_pending) == (2, 5, 0)


# Storage runs in a worker thread, which autojump_clock cannot see: these use short real delays.


async def test_failed_commits_are_retried() -> None:
    storage = GatedStorage()
    storage.gate.set()
    storage.failures_left = 2
    node = FakeNode()
    async with running(node, storage=storage, storage_retry_s=0.01) as h:
        await h.runner.call(lambda n, now: n.script(Persist(token=7, puts=(put(b"a", b"1"),))))
        await wait_until(lambda: node.committed == [7])
        assert h.runner.statistics().storage_retries == 2


async def test_commits_that_keep_failing_stop_the_runner() -> None:
    storage = GatedStorage()
    storage.gate.set()
    storage.failures_left = 3
    node = FakeNode()
    with pytest.RaisesGroup(StorageError, flatten_subgroups=True), trio.fail_after(5):
        async with running(
            node, storage=storage, storage_max_attempts=3, storage_retry_s=0.01
        ) as h:
            await h.runner.call(lambda n, now: n.script(Persist(token=1)))
            await trio.sleep_forever()
    assert node.committed == []  # never acknowledged


async def test_the_pump_pauses_inputs_while_the_disk_is_behind() -> None:
    storage = GatedStorage()
    async with running(storage=storage, max_pending_persists=2) as h:
        await h.runner.call(lambda n, now: n.script(Persist(token=1), Persist(token=2)))
        with trio.move_on_after(0.2) as waited:
            await h.runner.call(lambda n, now: None)
        assert waited.cancelled_caught  # the pump took no input while 2 were pending
        storage.gate.set()
        with trio.fail_after(5):
            await h.runner.call(lambda n, now: None)
        assert h.node.committed == [1, 2]


@st.composite
def persist_batches(draw: st.DrawFn) -> list[Persist]:
    keys = st.sampled_from([b"a", b"b", b"c"])
    kinds = st.sampled_from([RecordKind.ENVELOPE, RecordKind.MESSAGE])
    batch = []
    for token in range(1, draw(st.integers(1, 6)) + 1):
        puts = draw(st.lists(st.builds(StoredRecord, kind=kinds, key=keys, value=st.binary())))
        deletes = draw(st.lists(st.tuples(kinds, keys)))
        batch.append(Persist(token=token, puts=tuple(puts), deletes=tuple(deletes)))
    return batch


@given(persist_batches())
def test_merged_persists_equal_applying_them_in_order(batch: list[Persist]) -> None:
    one_by_one, merged = MemoryStorage(), MemoryStorage()
    for persist in batch:
        one_by_one.apply(persist)
    merged.apply(merge_persists(batch))
    assert merged.records == one_by_one.records


# --- the timer ---------------------------------------------------------------------------------


async def test_timer_is_rearmed_from_next_deadline(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    node = FakeNode(deadline=start + 10)

    def on_timer(n: FakeNode, now: float) -> None:
        n.deadline = now + 5 if len(n.timer_calls) < 3 else None

    node.on_timer = on_timer
    async with running(node) as h:
        await trio.sleep(100)
        assert [round(t - start, 6) for t in node.timer_calls] == [10, 15, 20]
        # An input that sets a deadline re-arms a timer that had none.

        def soon(n: FakeNode, now: float) -> None:
            n.deadline = now + 1

        called_at = trio.current_time()
        await h.runner.call(soon)
        await trio.sleep(10)
        assert round(node.timer_calls[3] - called_at, 6) == 1
        assert h.runner.statistics().timer_fires == 4


async def test_timer_never_sleeps_past_the_recheck_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A wall clock that jumps forward (NTP, suspend) is noticed within timer_max_sleep_s.
    offset = [0.0]
    node = FakeNode()

    def clock() -> float:
        return trio.current_time() + offset[0]

    node.deadline = clock() + 3_600
    node.on_timer = lambda n, now: setattr(n, "deadline", None)
    async with open_node(node, host=LOCALHOST, clock=clock):
        await trio.sleep(1)
        offset[0] = 3_600.0
        await trio.sleep(NetConfig().timer_max_sleep_s + 0.1)
        assert len(node.timer_calls) == 1


# --- dialing -----------------------------------------------------------------------------------


async def test_dial_failures_are_reported_and_harmless(
    autojump_clock: trio.testing.MockClock,
) -> None:
    listeners = await trio.open_tcp_listeners(0, host=LOCALHOST)
    closed_port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()  # nothing listens there any more: connection refused

    async def hang(host: str, port: int) -> trio.SocketStream:
        if port == 9:
            await trio.sleep_forever()
        return await trio.open_tcp_stream(host, port)

    node = FakeNode()
    async with open_node(node, host=LOCALHOST, clock=trio.current_time, connect=hang) as runner:
        with runner.subscribe() as events:
            for address in (f"127.0.0.1:{closed_port}", "no-port", "192.0.2.1:9"):
                await runner.peer_discovered(address)
            failures = [await events.receive() for _ in range(3)]
        assert {f.address for f in failures if isinstance(f, DialFailed)} == {
            f"127.0.0.1:{closed_port}",
            "no-port",
            "192.0.2.1:9",
        }
        timed_out = next(f for f in failures if isinstance(f, DialFailed) and ":9" in f.address)
        assert "timed out" in timed_out.detail
        stats = runner.statistics()
        assert (stats.dial_failures, stats.dials_succeeded, stats.links) == (3, 0, 0)
        assert await runner.call(lambda n, now: len(n.calls)) == 3  # the pump is alive


async def test_duplicate_dials_are_dropped(autojump_clock: trio.testing.MockClock) -> None:
    async def hang(host: str, port: int) -> trio.SocketStream:
        await trio.sleep_forever()

    async with open_node(FakeNode(), host=LOCALHOST, clock=trio.current_time, connect=hang) as r:
        for _ in range(3):
            await r.peer_discovered("192.0.2.1:9")
        await r.call(lambda n, now: None)
        assert r.statistics().dials_dropped == 2


# --- half-open protection ----------------------------------------------------------------------


async def idle_socket(port: int, source: str) -> trio.socket.SocketType:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    await sock.bind((source, 0))
    await sock.connect((LOCALHOST, port))
    return sock


async def test_idle_flood_evicts_the_oldest_and_a_real_client_gets_through() -> None:
    async with running() as h:
        config = NetConfig()
        sockets: list[trio.socket.SocketType] = []
        try:
            for i in range(100):  # 2 per source address: only the global cap applies
                sock = await idle_socket(h.runner.port, f"127.0.0.{2 + i // 2}")
                sockets.append(sock)  # one at a time: the finally closes what was opened
            await wait_until(lambda: h.runner.statistics().accepted == 100)
            stats = h.runner.statistics()
            assert stats.half_open == config.max_half_open
            assert stats.evicted_half_open == 100 - config.max_half_open
            with trio.fail_after(2):  # security goal S8
                client = await h.connect()
            assert h.runner.statistics().evicted_half_open == 100 - config.max_half_open + 1
            # The oldest sockets were evicted (EOF), the newest still hold their slot.
            with trio.fail_after(5):
                assert await sockets[0].recv(1) == b""
            with trio.move_on_after(0.05) as still_open:
                await sockets[-1].recv(1)
            assert still_open.cancelled_caught
            await client.aclose()
        finally:
            for sock in sockets:
                sock.close()


async def test_per_address_cap_evicts_that_addresses_oldest() -> None:
    async with running(max_half_open_per_address=3) as h:
        sockets = [await idle_socket(h.runner.port, LOCALHOST) for _ in range(5)]
        await wait_until(lambda: h.runner.statistics().accepted == 5)
        assert h.runner.statistics().half_open == 3
        with trio.fail_after(5):
            assert await sockets[0].recv(1) == b""
            assert await sockets[1].recv(1) == b""
        for sock in sockets:
            sock.close()


async def test_silent_inbound_socket_hits_the_first_byte_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as h:
        client = await trio.open_tcp_stream(LOCALHOST, h.runner.port)
        start = trio.current_time()
        assert await client.receive_some() == b""  # closed by the runner
        assert trio.current_time() - start == pytest.approx(NetConfig().first_byte_timeout_s)
        await wait_until(lambda: h.runner.statistics().links == 0, limit_s=60)
        assert h.runner.statistics().first_byte_timeouts == 1
        assert h.node.calls[-1][0] == "lost"
        await client.aclose()


async def test_max_links_refuses_when_every_link_is_established() -> None:
    async with running(max_links=2) as h:
        clients = [await h.connect(), await h.connect()]
        extra = await trio.open_tcp_stream(LOCALHOST, h.runner.port)
        assert await read_to_eof(extra) == b""
        assert h.runner.statistics().refused == 1
        assert h.runner.statistics().links == 2
        for stream in [*clients, extra]:
            await stream.aclose()


# --- events and calls --------------------------------------------------------------------------


async def test_slow_subscriber_is_disconnected_not_waited_for() -> None:
    async with running() as h:
        with h.runner.subscribe(capacity=2) as slow:
            clients = [await h.connect() for _ in range(3)]  # 3 PeerConnected events
            received = [event async for event in slow]  # ends after the buffered events
        assert len(received) == 2
        for client in clients:
            await client.aclose()
        assert h.runner.statistics().subscribers_dropped == 1


async def test_call_returns_results_and_raises_the_nodes_errors() -> None:
    async with running() as h:
        assert await h.runner.call(lambda n, now: now) <= trio.current_time()

        def bad(n: FakeNode, now: float) -> None:
            n.link_lost(999, now=now)

        with pytest.raises(LocalProtocolError):
            await h.runner.call(bad)
        assert await h.runner.call(lambda n, now: "alive") == "alive"


# --- shutdown ----------------------------------------------------------------------------------


async def test_shutdown_closes_everything_and_finishes_the_commit_in_progress() -> None:
    fds_before = open_fds()
    storage = GatedStorage()
    listeners = await trio.open_tcp_listeners(0, host=LOCALHOST)
    async with listeners[0]:
        async with running(storage=storage) as h:
            established = await h.connect()
            idle = await trio.open_tcp_stream(LOCALHOST, h.runner.port)
            port = listeners[0].socket.getsockname()[1]
            await h.runner.peer_discovered(f"127.0.0.1:{port}")
            with trio.fail_after(5):
                dialed = await listeners[0].accept()
            await h.runner.call(lambda n, now: n.script(Persist(token=1, puts=(put(b"a", b""),))))
            await trio.to_thread.run_sync(storage.started.wait)
            queued = (Persist(token=2, puts=(put(b"b", b""),)), Persist(token=3))
            await h.runner.call(lambda n, now: n.script(*queued))
            threading.Timer(0.1, storage.gate.set).start()
            runner = h.runner
        # The commit in progress was finished, not abandoned; then the queued ones, together.
        assert storage.applied == [1, 3]
        assert set(storage.records) == {(RecordKind.ENVELOPE, b"a"), (RecordKind.ENVELOPE, b"b")}
        for stream in (established, idle, dialed):
            assert await read_to_eof(stream) in (b"", HELLO)
            await stream.aclose()
    with pytest.raises(TransportError):
        await runner.call(lambda n, now: None)
    assert open_fds() == fds_before


class SlowStorage(MemoryStorage):
    """Every commit takes ``delay_s`` of real time in the worker thread."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.started = threading.Event()

    def apply(self, persist: Persist) -> None:
        self.started.set()
        time.sleep(self.delay_s)
        super().apply(persist)


async def test_shutdown_flush_is_bounded_by_shutdown_flush_s() -> None:
    storage = SlowStorage(0.15)
    async with running(storage=storage, shutdown_flush_s=0.2, max_persists_per_commit=1) as h:
        await h.runner.call(lambda n, now: n.script(Persist(token=1)))
        await trio.to_thread.run_sync(storage.started.wait)
        await h.runner.call(lambda n, now: n.script(*(Persist(token=t) for t in (2, 3, 4))))
    # 1 was running and finished; the flush committed 2 (and maybe 3, started before the
    # deadline); the deadline passed before 4 could start: dropped.
    assert storage.applied[:2] == [1, 2]
    assert 4 not in storage.applied


async def test_wait_durable_returns_once_earlier_writes_are_committed() -> None:
    storage = GatedStorage()
    async with running(storage=storage) as h:
        await h.runner.wait_durable()  # nothing issued: returns at once
        await h.runner.call(lambda n, now: n.script(Persist(token=1), Persist(token=2)))
        with trio.move_on_after(0.1) as waited:
            await h.runner.wait_durable()
        assert waited.cancelled_caught
        storage.gate.set()
        with trio.fail_after(5):
            await h.runner.wait_durable()
        assert storage.applied[-1] == 2


async def test_serve_node_runs_until_cancelled() -> None:
    async with trio.open_nursery() as nursery:
        runner = await nursery.start(
            lambda task_status: serve_node(
                FakeNode(), host=LOCALHOST, clock=trio.current_time, task_status=task_status
            )
        )
        assert isinstance(runner, NodeRunner)
        stream = await trio.open_tcp_stream(LOCALHOST, runner.port)
        await stream.send_all(HELLO)
        assert await read_exactly(stream, len(WELCOME)) == WELCOME
        await stream.aclose()
        nursery.cancel_scope.cancel()


# --- discovery feedback ------------------------------------------------------------------------


@dataclass(frozen=True)
class Hint:
    address: str


class FakeSource:
    """A PeerSource handing out fixed hints and recording the runner's reports."""

    def __init__(self, *addresses: str) -> None:
        self.hints = [Hint(a) for a in addresses]
        self.reports: list[tuple[str, bool]] = []

    async def _generate(self) -> AsyncIterator[Hint]:
        for hint in self.hints:
            yield hint
        await trio.sleep_forever()

    def peers(self) -> AsyncIterator[Hint]:
        return self._generate()

    def report_failure(self, peer: Hint) -> None:
        self.reports.append((peer.address, False))

    def report_success(self, peer: Hint) -> None:
        self.reports.append((peer.address, True))


async def test_discovered_peers_are_dialed_and_their_fate_reported() -> None:
    listeners = await trio.open_tcp_listeners(0, host=LOCALHOST)
    good = format_address(LOCALHOST, listeners[0].socket.getsockname()[1])
    source = FakeSource(good, "bad-address")
    node = FakeNode()
    async with (
        listeners[0],
        open_node(node, host=LOCALHOST, clock=trio.current_time, discovery=source) as runner,
    ):
        with trio.fail_after(5):
            server = await listeners[0].accept()
        assert await read_exactly(server, len(HELLO)) == HELLO
        await server.send_all(HELLO)
        await wait_until(lambda: (good, True) in source.reports)
        assert ("bad-address", False) in source.reports
        await server.aclose()  # the link ends: discovery may offer the peer again later
        await wait_until(lambda: (good, False) in source.reports)
        assert runner.statistics().dial_failures == 1
