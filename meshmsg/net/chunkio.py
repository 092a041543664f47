"""The trio driver's chunk worker: carries out chunk effects in order, off the pump.

The core hands chunk bodies to the driver (``StoreChunk``) and asks for them (``LoadChunk``)
instead of keeping them (docs/architecture.md, "Chunk bodies stay out of the core"). One task
takes those effects in the order the Node issued them and runs each in a worker thread on a
:class:`ChunkSink` (the chunk store on disk in production), so a chunk is never read before
the write that stored it, nor written after the delete that dropped its attachment. Results
wait in a queue for the pump, which feeds them to the Node (``chunk_stored``, ``chunk_loaded``,
``chunk_load_failed``): the Node is only ever touched by the pump.

Group commit, pipelined: consecutive writes are one batch. A batch is written and synced with
its slots still empty; the next sync marks it committed, and when another batch of writes is
already waiting that is the same sync as the one that writes it (``ChunkSink.write_slots``),
else a sync of its own, at once. So chunks streaming in cost one sync per batch, not two. A
chunk is reported stored (``chunk_stored``) only after the sync that commits it: a crash
before it loses nothing reported, and a restart does not find the chunk, so it is fetched
again. Any other effect (a read, a delete) waits until the last batch is committed.

Pacing: a chunk read for a peer is handed to the Node (which sends it at once) only while
that link's writer has less than half of ``net.send_queue_bytes`` waiting; otherwise it waits
here, in order, until the writer empties its queue (:meth:`ChunkWorker.hand_results`). So a
peer gets chunks at the pace it reads them, and a large request cannot overflow its link's
send queue and get the link closed as a slow peer.

Memory: the effects waiting here are bounded by the protocol, not by this queue: a peer may
have at most 64 chunks asked of us (``attach.records.MAX_REQUEST``; the chunks held for its
writer are among them) and we ask at most ``attach.chunks_unstored`` per link until they are
stored, so at most ``links x (64 + chunks_unstored)`` chunk bodies wait, 112 x 60 KiB, about
6.9 MB per link.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import trio

from meshmsg.core.effects import ChunkEffect, DeleteChunks, LinkId, LoadChunk, StoreChunk
from meshmsg.errors import StorageError

_MAX_BATCH = 64  # chunk writes synced together, or reads; bounds the wait of the first one


class ChunkSink(Protocol):
    """Where chunk bodies live: ``meshmsg.net.chunkstore.ChunkStore`` in production."""

    def write_slots(
        self,
        chunks: Sequence[tuple[bytes, int, tuple[bytes, ...], bytes]],
        commit: Sequence[tuple[bytes, int]],
    ) -> None:
        """Write ``chunks`` durably but not yet committed (a read does not find them, nor a
        restart), and commit ``commit``, written by an earlier call: one sync for both."""

    def get(self, attachment_id: bytes, index: int) -> tuple[tuple[bytes, ...], bytes] | None: ...

    def delete(self, attachment_id: bytes) -> None: ...


@runtime_checkable
class ChunkInputs(Protocol):
    """The Node's chunk inputs (a node without attachments, like the bench's, has none)."""

    def chunk_stored(self, attachment_id: bytes, index: int, *, now: float) -> None: ...

    def chunk_loaded(
        self, link: LinkId, attachment_id: bytes, index: int, proof: tuple[bytes, ...],
        data: bytes, *, now: float,
    ) -> None: ...  # fmt: skip

    def chunk_load_failed(
        self, link: LinkId, attachment_id: bytes, index: int, *, now: float
    ) -> None: ...


class MemoryChunks:
    """A ``ChunkSink`` in memory: for tests and demos (nothing survives the process)."""

    def __init__(self) -> None:
        self.chunks: dict[tuple[bytes, int], tuple[tuple[bytes, ...], bytes]] = {}
        self._written: dict[tuple[bytes, int], tuple[tuple[bytes, ...], bytes]] = {}

    def put_many(self, chunks: Sequence[tuple[bytes, int, tuple[bytes, ...], bytes]]) -> None:
        self.write_slots(chunks, [(a, i) for a, i, _, _ in chunks])

    def write_slots(
        self,
        chunks: Sequence[tuple[bytes, int, tuple[bytes, ...], bytes]],
        commit: Sequence[tuple[bytes, int]],
    ) -> None:
        for attachment_id, index, proof, data in chunks:
            self._written[(attachment_id, index)] = (proof, data)
        for key in commit:
            if key in self._written:
                self.chunks[key] = self._written.pop(key)

    def get(self, attachment_id: bytes, index: int) -> tuple[tuple[bytes, ...], bytes] | None:
        return self.chunks.get((attachment_id, index))

    def delete(self, attachment_id: bytes) -> None:
        for chunks in (self.chunks, self._written):
            for key in [k for k in chunks if k[0] == attachment_id]:
                del chunks[key]


@dataclass(frozen=True, slots=True)
class Stored:
    attachment_id: bytes
    index: int


@dataclass(frozen=True, slots=True)
class Loaded:
    link: LinkId
    attachment_id: bytes
    index: int
    body: tuple[tuple[bytes, ...], bytes] | None  # None: gone or damaged


ChunkResult = Stored | Loaded


class ChunkWorker:
    """Runs chunk effects in order in a worker thread; results wait for the pump."""

    def __init__(
        self, sink: ChunkSink, wake: Callable[[], None], *, retry_s: float, attempts: int
    ) -> None:
        self._sink = sink
        self._wake = wake
        self._retry_s = retry_s
        self._attempts = attempts
        # Unbounded on purpose (the pump never blocks): bounded by the protocol, see above.
        self._in, self._out = trio.open_memory_channel[ChunkEffect](math.inf)
        self.results: deque[ChunkResult] = deque()
        self._pending: list[StoreChunk] = []  # written and synced, not yet committed
        # Chunks read for a peer whose link's writer is busy, by link, in order (see
        # :meth:`hand_results`); at most 64 per link, as ``LoadChunk`` effects are.
        self.held: dict[LinkId, deque[Loaded]] = {}

    def submit(self, effect: ChunkEffect) -> None:
        self._in.send_nowait(effect)

    def hand_results(
        self, busy: Callable[[LinkId], bool], hand: Callable[[ChunkResult], None]
    ) -> bool:
        """Pass every result to ``hand``, in order, except chunks read for a link that is
        ``busy`` (its writer has plenty queued): those wait here, in order, until it is not, so
        a peer is sent chunks at the pace it reads them and a large request (up to 64 chunks)
        never overflows the link's send queue. Call again when a busy link's writer drains.
        Returns whether anything was handed."""
        results, held, handed = self.results, self.held, False
        while results:
            result = results.popleft()
            if isinstance(result, Loaded) and (result.link in held or busy(result.link)):
                held.setdefault(result.link, deque()).append(result)
            else:
                hand(result)
                handed = True
        for link in list(held):
            waiting = held[link]
            while waiting and not busy(link):
                hand(waiting.popleft())
                handed = True
            if not waiting:
                del held[link]
        return handed

    async def run(self) -> None:
        """Carry out effects in batches: consecutive effects of one kind, so order is kept.
        Writes waiting together are one batch, and so are reads (one trip to a worker thread,
        one wake-up of the pump). A batch of writes is committed by the next batch's sync when
        one is waiting right behind it, else at once by a sync of its own (``_pending``).

        When the runner stops (cancelled), a batch written but not yet committed is committed
        before this returns, as a write in progress always finished: a restart then finds it
        and does not fetch it again (a kill -9 cannot, and loses only unreported chunks)."""
        try:
            await self._run()
        finally:
            if self._pending:
                with trio.CancelScope(shield=True), contextlib.suppress(StorageError):
                    # One attempt, no retry delays on the way out; if it fails the chunks
                    # were never reported stored and are fetched again after the restart.
                    await trio.to_thread.run_sync(self._carry_out, [])

    async def _run(self) -> None:
        ahead: ChunkEffect | None = None
        while True:
            try:
                first = ahead if ahead is not None else await self._out.receive()
            except trio.EndOfChannel:
                return
            batch, ahead = [first], None
            while type(first) is not DeleteChunks and len(batch) < _MAX_BATCH:
                try:
                    effect = self._out.receive_nowait()
                except trio.WouldBlock:
                    break
                if type(effect) is not type(first):
                    ahead = effect
                    break
                batch.append(effect)
            await self._step(batch)
            if self._pending and ahead is None:
                with contextlib.suppress(trio.WouldBlock):
                    ahead = self._out.receive_nowait()
            if self._pending and not isinstance(ahead, StoreChunk):
                await self._step([])  # nothing to ride on: commit the last batch now

    async def _step(self, batch: list[ChunkEffect]) -> None:
        self.results.extend(await self._with_retries(batch))
        self._wake()

    async def _with_retries(self, batch: list[ChunkEffect]) -> list[ChunkResult]:
        for attempt in range(1, self._attempts + 1):
            try:
                return await trio.to_thread.run_sync(self._carry_out, batch)
            except StorageError:
                if attempt == self._attempts:
                    raise  # a chunk we cannot keep must never be reported stored
                await trio.sleep(self._retry_s)
        raise AssertionError("unreachable")  # pragma: no cover

    def _carry_out(self, batch: list[ChunkEffect]) -> list[ChunkResult]:
        """One batch, in a worker thread (one at a time). Writes: this batch's bodies and the
        commit of the previous one, one sync; only the committed are reported stored, so a
        crash before the commit loses nothing reported, and those chunks are fetched again."""
        if not batch or isinstance(batch[0], StoreChunk):
            stores = [e for e in batch if isinstance(e, StoreChunk)]
            chunks = [(e.attachment_id, e.index, e.proof, e.data) for e in stores]
            committed = self._pending
            self._sink.write_slots(chunks, [(e.attachment_id, e.index) for e in committed])
            self._pending = stores  # only once the sync succeeded: a retry repeats the step
            return [Stored(e.attachment_id, e.index) for e in committed]
        results: list[ChunkResult] = []
        for effect in batch:
            match effect:
                case LoadChunk(link=link, attachment_id=aid, index=index):
                    results.append(Loaded(link, aid, index, self._sink.get(aid, index)))
                case DeleteChunks(attachment_id=aid):
                    # Nothing is pending here: ``run`` commits the last writes before any
                    # other effect, so a slot is never committed after its file was deleted.
                    self._sink.delete(aid)
        return results


def hand_chunk_result(node: ChunkInputs, result: ChunkResult, *, now: float) -> None:
    """Feed one result of the worker to the Node's chunk inputs (the pump calls this)."""
    match result:
        case Stored(attachment_id=aid, index=index):
            node.chunk_stored(aid, index, now=now)
        case Loaded(link=link, attachment_id=aid, index=index, body=None):
            node.chunk_load_failed(link, aid, index, now=now)
        case Loaded(link=link, attachment_id=aid, index=index, body=(proof, data)):
            node.chunk_loaded(link, aid, index, proof, data, now=now)
