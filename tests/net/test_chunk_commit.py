"""The chunk worker's pipelined group commit (meshmsg/net/chunkio.py, net/chunkstore.py).

A batch of chunks is written and synced with its slots still empty; the next sync marks them
committed, the sync of the next batch when one waits right behind it (one sync per batch), or
a sync of their own. Only then are they reported stored, so a crash before that commit loses
nothing reported: a restart does not find those chunks and the core fetches them again.

The store here blocks in each write until the test lets it go, so the test sees each step
from the outside; it waits for the worker thread with a semaphore, never with a sleep.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

from meshmsg.core.effects import DeleteChunks, LoadChunk, StoreChunk
from meshmsg.net.chunkio import ChunkWorker, Loaded, Stored
from meshmsg.net.chunkstore import ChunkStore

AID = bytes(range(32))


class SteppedStore(ChunkStore):
    """A chunk store on disk whose writes wait for the test, one ``step()`` each."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: list[tuple[list[int], list[int]]] = []
        self._entered = threading.Semaphore(0)
        self._go = threading.Semaphore(0)

    def write_slots(
        self,
        chunks: Sequence[tuple[bytes, int, tuple[bytes, ...], bytes]],
        commit: Sequence[tuple[bytes, int]],
    ) -> None:
        self.calls.append(([i for _, i, _, _ in chunks], [i for _, i in commit]))
        self._entered.release()
        self._go.acquire()
        super().write_slots(chunks, commit)

    async def entered(self) -> tuple[list[int], list[int]]:
        """Wait until the worker is in a write (not yet done); what it writes and commits."""
        # Abandoned on a timeout, so a worker that never writes fails the test, not hangs it.
        await trio.to_thread.run_sync(self._entered.acquire, abandon_on_cancel=True)
        return self.calls[-1]

    def step(self) -> None:
        self._go.release()


class Wakes:
    """The worker's ``wake`` callback (called after each step): lets the test wait for it."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def __call__(self) -> None:
        self._event.set()

    async def until(self, done: Callable[[], bool]) -> None:
        while not done():
            await self._event.wait()
            self._event = trio.Event()


def store(index: int) -> StoreChunk:
    return StoreChunk(attachment_id=AID, index=index, proof=(), data=bytes([index]) * 100)


def stored(worker: ChunkWorker) -> list[int]:
    return [r.index for r in worker.results if isinstance(r, Stored)]


async def test_a_batch_is_reported_stored_only_after_the_sync_that_commits_it(
    tmp_path: Path,
) -> None:
    disk, wakes = SteppedStore(tmp_path), Wakes()
    worker = ChunkWorker(disk, wakes, retry_s=0.0, attempts=1)
    async with trio.open_nursery() as nursery:
        for i in range(4):
            worker.submit(store(i))
        nursery.start_soon(worker.run)
        assert await disk.entered() == ([0, 1, 2, 3], [])  # bodies first, slots empty
        for i in (4, 5):
            worker.submit(store(i))  # the next batch arrives while the first one syncs
        disk.step()
        # The second batch's sync carries the first batch's commit: one sync per batch.
        assert await disk.entered() == ([4, 5], [0, 1, 2, 3])
        assert stored(worker) == []  # synced, not committed: not reported
        disk.step()
        # Nothing waits behind the second batch: its commit gets a sync of its own.
        assert await disk.entered() == ([], [4, 5])
        assert stored(worker) == [0, 1, 2, 3]
        # A crash now: bodies 4 and 5 are on the disk, but a restart does not find them, so
        # the core, which was never told they were stored, fetches them again.
        assert ChunkStore(tmp_path).scan() == {AID: [0, 1, 2, 3]}
        assert ChunkStore(tmp_path).get(AID, 4) is None
        disk.step()
        await wakes.until(lambda: len(stored(worker)) == 6)
        assert stored(worker) == [0, 1, 2, 3, 4, 5]
        assert ChunkStore(tmp_path).scan() == {AID: [0, 1, 2, 3, 4, 5]}
        nursery.cancel_scope.cancel()
    assert len(disk.calls) == 3  # two batches, three syncs (four before: two per batch)


async def test_writes_are_committed_before_a_read_or_a_delete_behind_them(tmp_path: Path) -> None:
    """Only consecutive writes share a sync: a read or a delete waiting behind a batch of
    writes comes after that batch's commit, so a delete never leaves a commit for later."""
    disk, wakes = SteppedStore(tmp_path), Wakes()
    worker = ChunkWorker(disk, wakes, retry_s=0.0, attempts=1)
    async with trio.open_nursery() as nursery:
        worker.submit(store(0))
        worker.submit(LoadChunk(link=1, attachment_id=AID, index=0))
        worker.submit(DeleteChunks(attachment_id=AID))
        nursery.start_soon(worker.run)
        assert await disk.entered() == ([0], [])
        disk.step()
        assert await disk.entered() == ([], [0])  # committed at once: a read waits behind it
        disk.step()
        await wakes.until(lambda: not (tmp_path / AID.hex()).exists())  # read, then deleted
        nursery.cancel_scope.cancel()
    assert stored(worker) == [0]
    loaded = [r for r in worker.results if isinstance(r, Loaded)]
    assert loaded == [Loaded(1, AID, 0, ((), bytes([0]) * 100))]
    assert ChunkStore(tmp_path).scan() == {}


async def test_a_stop_commits_the_batch_written_so_far(tmp_path: Path) -> None:
    """The runner stops while a batch's bodies sync: the worker commits it on the way out, as a
    write in progress always finished, so a restart finds it and does not fetch it again.
    Before, the batch stayed uncommitted and was fetched and written again after the restart
    (tests/net/test_attach_runner.py counted 37 writes for 35 chunks)."""
    disk, wakes = SteppedStore(tmp_path), Wakes()
    worker = ChunkWorker(disk, wakes, retry_s=0.0, attempts=1)
    scope = trio.CancelScope()

    async def run_worker() -> None:
        with scope:
            await worker.run()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            worker.submit(store(0))
            nursery.start_soon(run_worker)
            assert await disk.entered() == ([0], [])
            scope.cancel()  # the runner stops while the bodies sync
            disk.step()
            assert await disk.entered() == ([], [0])  # the commit, shielded
            disk.step()
    assert ChunkStore(tmp_path).scan() == {AID: [0]}
