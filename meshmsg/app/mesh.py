"""A running node: one node from its data directory on real TCP, with discovery and storage.

Theory of operation
-------------------
:func:`open_mesh_node` assembles a running node from parts other modules provide: the database
(``net/storage.py``), the Node restored from it (``core/node.py``), the trio driver
(``net/runner.py``), mDNS discovery on the trusted networks and static peers
(``net/discovery.py``). Two small adapters of its own join them:

* :class:`CheckpointingStorage`, the runner's ``PersistSink``: it commits through ``Storage`` and
  also runs the WAL checkpoint every ``StorageConfig.checkpoint_interval_s`` (docs/storage.md:
  deleted key state leaves the files only then). A lock keeps the two on one thread at a time.
* :class:`PeerBridge`: discovery hands out addresses once and expects to hear how they went
  (``report_success`` / ``report_failure``, which re-offers a peer after a backoff); the runner
  knows nothing of discovery. The bridge forwards hand-outs to the runner and watches the
  runner's events: a failed dial, or a lost link to a peer we dialled, is reported as a failure
  so that the peer is tried again (a relay that restarts is found again); a link that came up is
  a success. Duplicate links closed by the core are not failures. Events cannot see every end
  of a hand-out (a dialled connection closed before it authenticated, or before the Node saw
  it; a dial dropped because one was already under way; a duplicate whose twin, the peer's own
  dial, ends later), so the bridge also audits what it holds: a peer neither being dialled,
  nor linked, nor reached through any other link in two audits in a row is reported as a
  failure and offered again after its backoff. Without it such a peer was never dialled again
  (issue #17, the soak's node that stayed without links).

``app/daemon.py`` adds the local API and the process around it (``meshmsg run``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

import trio

from meshmsg.app.datadir import Settings, Unlocked
from meshmsg.app.warnings import ClockWatch
from meshmsg.config import NodeConfig
from meshmsg.core.effects import LinkId, Persist, RecordKind, StoredRecord
from meshmsg.core.events import LinkClosed, PeerConnected
from meshmsg.core.node import Node
from meshmsg.errors import CloseReason, StorageError, TransportError
from meshmsg.net.chunkstore import ChunkStore
from meshmsg.net.discovery import Discovery, open_discovery
from meshmsg.net.peers import DiscoveredPeer, PeerHandout, StaticPeers, TrustedNetworks
from meshmsg.net.runner import NodeRunner, open_node
from meshmsg.net.runnerevents import DialFailed
from meshmsg.net.storage import DataDir, Storage
from meshmsg.sysrng import SystemRng

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Links that end for these reasons are not a sign the peer is unreachable: do not back off.
_NOT_FAILURES: Final = frozenset({CloseReason.DUPLICATE_LINK, CloseReason.PEER_BLOCKED})


# --- storage with checkpoints ----------------------------------------------------------------


class CheckpointingStorage:
    """``Storage`` as the runner's sink, checkpointing the WAL at an interval (see module doc)."""

    def __init__(
        self, storage: Storage, interval_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._storage = storage
        self._interval_s = interval_s
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()  # Storage is for one thread at a time
        self.checkpoints = 0
        self.checkpoint_failures = 0

    def apply(self, persist: Persist) -> None:
        with self._lock:
            self._storage.apply(persist)
            if any(kind is RecordKind.CHANNEL for kind, _ in persist.deletes):
                self._checkpoint()  # removed key state: do not let the WAL keep it

    def load_one(self, kind: RecordKind, key: bytes) -> StoredRecord | None:
        """Read one record back (a carried envelope's body: ``LoadEnvelope``)."""
        with self._lock:
            return self._storage.load_one(kind, key)

    def checkpoint_if_due(self) -> None:
        """Checkpoint if the interval has passed (called from a worker thread)."""
        with self._lock:
            if self._clock() - self._last >= self._interval_s:
                self._checkpoint()

    def _checkpoint(self) -> None:
        try:
            self._storage.checkpoint()
        except StorageError as exc:  # a reader held the WAL: the next interval tries again
            self.checkpoint_failures += 1
            logger.info("WAL checkpoint postponed: %s", exc)
            return
        self.checkpoints += 1
        self._last = self._clock()


async def _checkpoint_loop(sink: CheckpointingStorage, interval_s: float) -> None:
    while True:
        await trio.sleep(interval_s)
        await trio.to_thread.run_sync(sink.checkpoint_if_due)


# --- discovery to runner -------------------------------------------------------------------------


class PeerBridge:
    """Forwards discovered peers to the runner and reports back how the dials went."""

    def __init__(self, runner: NodeRunner[Node]) -> None:
        self._runner = runner
        self._known: dict[str, tuple[PeerHandout, DiscoveredPeer]] = {}
        self._held: set[str] = set()  # handed to the node, not reported as failed since
        self._peer_of: dict[str, bytes] = {}  # address -> the peer a dial there authenticated
        self.found_by: dict[str, str] = {}  # address -> "mDNS" or "static peer"

    async def forward(self, source: PeerHandout, how: str) -> None:
        """Hand every peer ``source`` gives out to the node (it dials unless already linked)."""
        async for peer in source.peers():
            self._known[peer.address] = (source, peer)
            self._held.add(peer.address)
            self.found_by[peer.address] = how
            await self._runner.peer_discovered(peer.address)

    async def audit(self, interval_s: float) -> None:
        """Report as failed what stayed unreached for two audits in a row; never returns."""
        idle_before: set[str] = set()
        while True:
            await trio.sleep(interval_s)
            idle = await self._runner.call(self._unreached)
            for address in idle & idle_before:
                self._report(address, failed=True)
            idle_before = idle & self._held

    def _unreached(self, node: Node, _now: float) -> set[str]:
        """Held addresses with no dial under way, no connection, and no link to their peer."""
        linked = {s.peer_id for s in node.sessions.values() if s.peer_id is not None}
        return {
            address
            for address in self._held
            if not self._runner.reaches(address) and self._peer_of.get(address) not in linked
        }

    async def watch(self) -> None:
        """Turn runner events into ``report_success`` / ``report_failure``; never returns."""
        while True:
            with self._runner.subscribe() as events:
                async for event in events:
                    await self._on_event(event)
            # The pump disconnected us for falling behind (a burst): listen again.

    async def _on_event(self, event: object) -> None:
        match event:
            case DialFailed(address=failed):
                self._report(failed, failed=True)
            case PeerConnected(link=link, peer_id=peer_id):
                dialled = await self._runner.call(lambda node, _now: _address_of(node, link))
                if dialled is not None and dialled in self._known:
                    self._peer_of[dialled] = peer_id
                    self._report(dialled, failed=False)
            case LinkClosed(address=str(address), peer_id=peer_id, reason=reason):
                if peer_id is not None and address in self._held:
                    self._peer_of[address] = peer_id  # a duplicate's twin may be the peer's dial
                if reason not in _NOT_FAILURES:  # closed before it authenticated, too
                    self._report(address, failed=True)
            case _:
                pass

    def _report(self, address: str, *, failed: bool) -> None:
        known = self._known.get(address)
        if known is None or address not in self._held:
            return  # reported once already: the source offers it again after the backoff
        source, peer = known
        if failed:
            self._held.discard(address)
            source.report_failure(peer)
        else:
            source.report_success(peer)


def _address_of(node: Node, link: LinkId) -> str | None:
    session = node.sessions.get(link)
    return session.address if session is not None else None


# --- a running node --------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class NodeHandle:
    """A node running on TCP with its discovery. Touch the Node only through ``runner.call``."""

    runner: NodeRunner[Node]
    settings: Settings
    config: NodeConfig
    bridge: PeerBridge
    discovery: Discovery | None
    discovery_error: str | None
    static: StaticPeers | None
    sink: CheckpointingStorage
    chunks: ChunkStore
    data_root: Path
    clocks: ClockWatch = field(default_factory=ClockWatch)
    started_at: float = field(default_factory=time.time)

    @property
    def address(self) -> str:
        """Our first listening address, ``host:port``."""
        return self.runner.addresses[0]

    async def call_durably(self, fn: Callable[[Node, float], T]) -> T:
        """``runner.call(fn)``, returning only once what it wrote is committed.

        For commands the user is told succeeded (the API's send, contact changes, read marks):
        a crash after the answer must not undo them.

        Raises:
            TransportError: the node stopped before the call ran or before its commit.
        """
        result = await self.runner.call(fn)
        await self.runner.wait_durable()
        return result

    def discovery_state(self) -> dict[str, object]:
        if self.discovery is None:
            reason = self.discovery_error or "no trusted network is configured"
            return {"enabled": False, "reason": reason, "peers": 0, "interfaces": [],
                    "ignored_untrusted": 0}  # fmt: skip
        stats = self.discovery.statistics()
        return {
            "enabled": stats.enabled,
            "reason": stats.disabled_reason,
            "peers": stats.peers.tracked,
            "interfaces": list(stats.interfaces),
            # Adverts heard whose addresses are all outside the trusted networks: not dialled.
            "ignored_untrusted": stats.ignored_untrusted,
        }


@contextlib.asynccontextmanager
async def open_mesh_node(
    data_dir: DataDir,
    settings: Settings,
    unlocked: Unlocked,
    *,
    config: NodeConfig | None = None,
    clock: Callable[[], float] = time.time,
    mdns: bool = True,
) -> AsyncIterator[NodeHandle]:
    """Run the node of ``data_dir`` until the block exits.

    Args:
        config: overrides the profile's NodeConfig (the demo shortens nothing it shows).
        mdns: False skips mDNS even on trusted networks (static peers still work).

    Raises:
        StorageError: the database could not be opened or read.
        TransportError: the listening socket could not be opened.
        ConfigError: a bad static peer or trusted network.
    """
    config = config if config is not None else settings.node_config()
    trusted = TrustedNetworks.parse(settings.trusted_networks)
    static = StaticPeers(settings.static_peers, config.net) if settings.static_peers else None
    with Storage.open(data_dir.db_path, unlocked.db_key, config=config.storage) as storage:
        chunks = ChunkStore(data_dir.chunks_path)
        node = Node(
            identity=unlocked.identity,
            config=config,
            rng=SystemRng(),
            now=clock(),
            records=storage.iter_all(),
            chunks=await trio.to_thread.run_sync(chunks.scan),
        )
        sink = CheckpointingStorage(storage, config.storage.checkpoint_interval_s)
        async with (
            open_node(
                node,
                config=config.net,
                storage=sink,
                host=settings.listen_host,
                port=settings.listen_port,
                clock=clock,
                chunks=chunks,
            ) as runner,
            contextlib.AsyncExitStack() as stack,
        ):
            discovery, error = None, None
            if mdns and trusted:
                try:  # entered before our nursery opens, so it also closes after it
                    discovery = await stack.enter_async_context(
                        open_discovery(config.net, trusted, runner.port, SystemRng())
                    )
                except TransportError as exc:  # no multicast here: static peers still work
                    error = str(exc)
                    logger.warning("mDNS is off: %s", exc)
            async with trio.open_nursery() as nursery:
                bridge = PeerBridge(runner)
                clocks = ClockWatch()
                nursery.start_soon(bridge.watch)
                nursery.start_soon(bridge.audit, config.net.peer_audit_interval_s)
                nursery.start_soon(clocks.watch, runner)
                nursery.start_soon(_checkpoint_loop, sink, config.storage.checkpoint_interval_s)
                if discovery is not None:
                    nursery.start_soon(bridge.forward, discovery, "mDNS")
                if static is not None:
                    nursery.start_soon(bridge.forward, static, "static peer")
                try:
                    yield NodeHandle(
                        runner=runner,
                        settings=settings,
                        config=config,
                        bridge=bridge,
                        discovery=discovery,
                        discovery_error=error,
                        static=static,
                        sink=sink,
                        chunks=chunks,
                        data_root=data_dir.root,
                        clocks=clocks,
                    )
                finally:
                    nursery.cancel_scope.cancel()


__all__ = ["CheckpointingStorage", "NodeHandle", "PeerBridge", "open_mesh_node"]
