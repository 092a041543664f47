"""The trio driver's persistence: where Persist effects go, group commits, durability waits.

:class:`CommitQueue` is the runner's storage task. It commits ``Persist`` effects in the order
the Node issued them, on a worker thread, grouping the ones that waited together into one
transaction (:func:`merge_persists`), and hands the committed tokens back to the pump, which
feeds them to the Node (``storage_committed``). It also reads back carried envelopes' bodies
(``LoadEnvelope``, ``StoreConfig.bodies_on_disk``) in the same order, so a read always comes
after the commits issued before it, and hands them to the pump (``envelope_loaded``).

Shutdown. A commit already running in the storage thread finishes (``trio.to_thread.run_sync``
waits for it); then the Persist effects still queued are committed too, shielded from
cancellation but for at most ``shutdown_flush_s``, so that what the Node reported (a status
change) survives a clean stop. Whatever is left after that is dropped, which the contract
allows: the Node never acknowledged it, and a restart rebuilds the node from what was committed.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import trio

from meshmsg.config import NetConfig
from meshmsg.core.driver import EnvelopeInputs, apply_persist
from meshmsg.core.effects import LoadEnvelope, Persist, RecordKind, StoredRecord
from meshmsg.errors import LocalProtocolError, StorageError, TransportError
from meshmsg.net.runnerstats import RunnerCounters


class PersistSink(Protocol):
    """Where Persist effects go: ``meshmsg.net.storage.Storage`` in production.

    ``apply`` runs on a worker thread, one call at a time, and returns once the effect is
    committed atomically and durably; it raises ``StorageError`` on a failure it rolled back.
    """

    def apply(self, persist: Persist) -> None: ...


@runtime_checkable
class RecordSource(Protocol):
    """A sink that can read one committed record back (for ``LoadEnvelope``); it runs on the
    same worker thread as ``apply``, one call at a time."""

    def load_one(self, kind: RecordKind, key: bytes) -> StoredRecord | None: ...


logger = logging.getLogger(__name__)


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

    def load_one(self, kind: RecordKind, key: bytes) -> StoredRecord | None:
        return self.records.get((kind, key))


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


class CommitQueue:
    """Persist effects from the pump to storage and their tokens back, in order."""

    def __init__(
        self,
        storage: PersistSink,
        *,
        config: NetConfig,
        counters: RunnerCounters,
        wake_pump: Callable[[], None],
    ) -> None:
        self._storage = storage
        self._config = config
        self._counters = counters
        self._wake_pump = wake_pump
        # Unbounded on purpose: the pump must never block on it. It is bounded in effect by
        # max_pending_persists, past which the pump stops taking inputs that create Persists.
        # Loads (LoadEnvelope) go in the same channel: read after the commits before them.
        self._persists_in, self._persists_out = trio.open_memory_channel[Persist | LoadEnvelope](
            math.inf
        )
        self._in_flight: list[Persist] = []  # taken by the storage task, not yet committed
        self._failed = False
        self._committed: deque[int] = deque()  # tokens, in commit order, for the pump
        # Bodies read back, for the pump: (envelope id, record value or None if unreadable).
        # Bounded by the Node: one load per carried item at a time.
        self.loaded: deque[tuple[bytes, bytes | None]] = deque()
        self.pending = 0  # issued, not yet handed back by pop_committed
        self._issued = 0
        self._durable_waiters: list[tuple[int, trio.Event]] | None = []  # None: pump ended

    def submit(self, persist: Persist) -> None:
        """Queue a Persist effect (never blocks: see ``max_pending_persists``)."""
        self.pending += 1
        self._issued += 1
        self._persists_in.send_nowait(persist)

    def load(self, effect: LoadEnvelope) -> None:
        """Queue a read of an ENVELOPE record, behind the Persists issued before it."""
        self._persists_in.send_nowait(effect)

    def hand_loaded(
        self, node: object, clock: Callable[[], float], drain: Callable[[float], None]
    ) -> None:
        """Feed the bodies read back to the Node, draining after each (the pump calls this).

        Raises:
            LocalProtocolError: a node without ``envelope_loaded`` emitted ``LoadEnvelope``.
        """
        while self.loaded:
            if not isinstance(node, EnvelopeInputs):
                raise LocalProtocolError(f"{type(node).__name__} emitted LoadEnvelope")
            now = clock()
            node.envelope_loaded(*self.loaded.popleft(), now=now)
            drain(now)

    def pop_committed(self) -> int | None:
        """The token of the oldest commit the Node has not been told about, or None."""
        if not self._committed:
            return None
        token = self._committed.popleft()
        self.pending -= 1
        self._counters.persists_committed += 1
        return token

    async def wait_durable(self) -> None:
        """Wait until every Persist issued so far is committed (``NodeRunner.wait_durable``)."""
        target = self._issued
        if self._counters.persists_committed < target:
            if self._durable_waiters is not None:
                done = trio.Event()
                self._durable_waiters.append((target, done))
                await done.wait()
            if self._counters.persists_committed < target:
                raise TransportError("the node runner stopped before the commit")

    def release_durable(self, *, all_of_them: bool) -> None:
        """Wake :meth:`wait_durable` callers whose writes are committed (all: the pump ends)."""
        committed, waiting = self._counters.persists_committed, self._durable_waiters or []
        kept = [w for w in waiting if w[0] > committed]
        self._durable_waiters = None if all_of_them else kept
        for target, done in waiting:
            if target <= committed or all_of_them:
                done.set()

    async def run(self) -> None:
        """Commit Persist effects in order; group the ones that are waiting together."""
        limit = self._config.max_persists_per_commit
        async for first in self._persists_out:
            if isinstance(first, LoadEnvelope):
                await self._load(first)
                continue
            batch, tail = [first], None
            while len(batch) < limit:
                try:
                    following = self._persists_out.receive_nowait()
                except trio.WouldBlock:
                    break
                if isinstance(following, LoadEnvelope):
                    tail = following  # read after this batch's commit
                    break
                batch.append(following)
            self._in_flight = batch
            try:
                await self._commit(merge_persists(batch))
            except StorageError:
                self._failed = True
                raise
            # No checkpoint since the commit returned: a cancellation cannot fall in between.
            self._in_flight = []
            self._counters.commits += 1
            self._committed.extend(p.token for p in batch)
            self._wake_pump()
            if tail is not None:
                await self._load(tail)

    async def _load(self, effect: LoadEnvelope) -> None:
        """Read one body back; a missing or unreadable row is reported as None (the Node ends
        the transfers waiting for it), never raised: it closes nothing else."""
        storage, name = self._storage, effect.envelope_id.hex()
        record = None
        if not isinstance(storage, RecordSource):
            logger.warning("envelope %s: %s cannot read records back", name, type(storage))
        else:
            try:
                record = await trio.to_thread.run_sync(
                    storage.load_one, RecordKind.ENVELOPE, effect.envelope_id
                )
            except StorageError as exc:
                logger.warning("envelope %s unreadable: %s", name, exc)
            else:
                if record is None:
                    logger.warning("envelope %s: its record is gone from the database", name)
        self.loaded.append((effect.envelope_id, None if record is None else record.value))
        self._wake_pump()

    async def flush(self) -> None:
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
                queued = self._persists_out.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            if isinstance(queued, Persist):  # a read no one will be told of is skipped
                pending.append(queued)
        if not pending or self._failed:
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
