"""Chunks read for a peer leave at the pace the peer reads them (meshmsg/net/chunkio.py).

A peer may ask up to 64 chunks at once, and ask again as they arrive. The driver hands the
Node a chunk read for a link only while that link's writer has less than half of
``send_queue_bytes`` waiting; the rest wait, read, in the chunk worker, and go out as the writer
empties its queue. The peer's end here is a lockstep memory stream: nothing is buffered in a
kernel, so every byte the writer has not sent is in its queue.
"""

from __future__ import annotations

from collections import deque

import trio
import trio.testing

from meshmsg.config import NetConfig
from meshmsg.core.effects import Dial, Effect, LinkId, LoadChunk, Transmit
from meshmsg.core.events import Event
from meshmsg.net.chunkio import MemoryChunks
from meshmsg.net.runner import open_node

AID = bytes(range(32))
BODY_BYTES = 60 * 1024
QUEUE_BYTES = 256 * 1024


class ChunkServingNode:
    """A node that dials one peer and sends every chunk it is handed on that link."""

    def __init__(self) -> None:
        self.link: LinkId | None = None
        self.loaded: list[int] = []
        self._effects: deque[Effect] = deque()

    def link_opened(
        self, link: LinkId, *, initiator: bool, now: float, address: str | None = None
    ) -> None:
        self.link = link

    def receive_data(self, link: LinkId, data: bytes, *, now: float) -> None:
        pass

    def link_lost(self, link: LinkId, *, now: float) -> None:
        self.link = None

    def peer_discovered(self, address: str, *, now: float) -> None:
        self._effects.append(Dial(address=address))

    def handle_timer(self, *, now: float) -> None:
        pass

    def storage_committed(self, token: int, *, now: float) -> None:
        pass

    def chunk_stored(self, attachment_id: bytes, index: int, *, now: float) -> None:
        raise AssertionError("nothing is stored here")

    def chunk_loaded(
        self, link: LinkId, attachment_id: bytes, index: int, proof: tuple[bytes, ...],
        data: bytes, *, now: float,
    ) -> None:  # fmt: skip
        self.loaded.append(index)
        self._effects.append(Transmit(link=link, data=data))

    def chunk_load_failed(
        self, link: LinkId, attachment_id: bytes, index: int, *, now: float
    ) -> None:
        raise AssertionError(f"chunk {index} is in the store")

    def ask(self, count: int) -> None:
        assert self.link is not None
        for index in range(count):
            self._effects.append(LoadChunk(link=self.link, attachment_id=AID, index=index))

    def next_effect(self) -> Effect | None:
        return self._effects.popleft() if self._effects else None

    def next_event(self) -> Event | None:
        return None

    def next_deadline(self) -> float | None:
        return None


def body(index: int) -> bytes:
    return index.to_bytes(2, "big") * (BODY_BYTES // 2)


async def test_chunks_for_a_slow_reader_wait_instead_of_overflowing_its_send_queue() -> None:
    """Before: each chunk read was handed to the Node as soon as the disk answered, so 64 chunks
    asked at once (60 KiB each) overflowed a 256 KiB send queue and the link was closed as a
    slow peer. Now they wait until the writer has room, and all arrive in order."""
    count = 64
    store = MemoryChunks()
    store.put_many([(AID, i, (), body(i)) for i in range(count)])
    ours, theirs = trio.testing.lockstep_stream_pair()

    async def connect(host: str, port: int) -> trio.abc.HalfCloseableStream:
        return ours  # type: ignore[return-value]  # a memory stream, half-closeable enough

    node = ChunkServingNode()
    config = NetConfig(send_queue_bytes=QUEUE_BYTES)
    async with open_node(
        node, config=config, host="127.0.0.1", connect=connect, chunks=store,
        clock=trio.current_time,
    ) as runner:  # fmt: skip
        await runner.peer_discovered("192.0.2.1:1")
        with trio.fail_after(5):
            while node.link is None:
                await trio.testing.wait_all_tasks_blocked()
        await runner.call(lambda n, now: n.ask(count))
        received = b""
        with trio.fail_after(10):
            while len(received) < count * BODY_BYTES:
                data = await theirs.receive_some(BODY_BYTES)
                assert data, "the link was closed"
                received += data
                # What the Node has been handed and not yet sent stays within the queue's bound.
                waiting = len(node.loaded) * BODY_BYTES - len(received)
                assert waiting <= QUEUE_BYTES + BODY_BYTES
        assert runner.statistics().closed_slow == 0
    assert node.loaded == list(range(count))
    assert received == b"".join(body(i) for i in range(count))
