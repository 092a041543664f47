"""The trio driver's connection set: every connection, and admission against the link caps.

Half-open protection (security goal S8). An accepted connection is *half-open* until the Node
reports ``PeerConnected`` for it. At most ``max_half_open`` of them exist, and at most
``max_half_open_per_address`` per peer host; a newcomer that would exceed a cap evicts the
OLDEST half-open connection (of that host, for the per-address cap), never itself: an honest
handshake needs its slot for milliseconds, an idle attacker holds it for seconds, so under a
flood the attacker's sockets are the old ones. An inbound connection must also send its first
byte within ``first_byte_timeout_s``, and the Node closes handshakes that take longer than
``handshake_timeout_s``. ``max_links`` bounds all connections; when it is reached a newcomer
evicts the oldest half-open one, or is refused if every link is established.

A connection stays in the set until the pump *settles* it (reports its loss to the Node after
the inputs it had queued): :meth:`ConnectionTable.end` only tears it down and queues it in
:attr:`ConnectionTable.ended` for the pump.
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from collections.abc import Awaitable, Callable

import trio

from meshmsg.config import NetConfig
from meshmsg.core.effects import LinkId
from meshmsg.net.runnerstats import RunnerCounters
from meshmsg.net.tcp import Connection


class HalfOpenTable:
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


class ConnectionTable:
    """Every connection the pump has not settled, the half-open ones, and the link caps."""

    def __init__(
        self,
        *,
        config: NetConfig,
        counters: RunnerCounters,
        wake_pump: Callable[[], None],
        opened: Callable[[Connection], Awaitable[None]],
        deliver: Callable[[Connection, bytes], Awaitable[None]],
    ) -> None:
        self._config = config
        self._counters = counters
        self._wake_pump = wake_pump
        self._opened = opened  # queue the pump's link_opened input
        self._deliver = deliver  # queue the pump's receive_data input
        self.conns: dict[LinkId, Connection] = {}  # every connection the pump has not settled
        self._live = 0  # connections not ended
        self.half_open = HalfOpenTable()
        self._link_ids = itertools.count(1)
        self.ended: deque[Connection] = deque()  # connections whose loss the pump must settle

    def register(
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
        self.conns[conn.link] = conn
        self._live += 1
        return conn

    async def accepted(self, stream: trio.SocketStream) -> None:
        """Serve an inbound connection, if the caps admit it, until it ends."""
        try:
            host = str(stream.socket.getpeername()[0])
        except OSError:  # reset before we looked: nothing to serve
            await trio.aclose_forcefully(stream)
            return
        if not self.make_room(host):
            self._counters.refused += 1
            await trio.aclose_forcefully(stream)
            return
        self._counters.accepted += 1
        conn = self.register(stream, host, address=None)
        self.half_open.add(conn)
        await self.run(conn, self._config.first_byte_timeout_s)

    async def run(self, conn: Connection, first_byte_timeout_s: float | None) -> None:
        """Run a connection's reader and writer until it ends, then end it here."""
        try:
            await conn.run(
                opened=lambda: self._opened(conn),
                deliver=self._deliver,
                first_byte_timeout_s=first_byte_timeout_s,
            )
        finally:
            if conn.first_byte_timed_out:
                self._counters.first_byte_timeouts += 1
            self.end(conn, "")

    def end(self, conn: Connection, reason: str) -> None:
        """Tear a connection down (idempotent); the pump reports the loss to the Node."""
        if conn.retired:
            return
        conn.retired = True
        conn.abort(reason or "closed")  # keeps the reason of a connection that ended itself
        self._live -= 1
        self.half_open.discard(conn)
        self.ended.append(conn)
        self._wake_pump()

    def writer_busy(self, link: LinkId, *, gathered: dict[LinkId, list[bytes]]) -> bool:
        """Whether ``link``'s writer has half ``send_queue_bytes`` or more waiting, counting
        what the pump ``gathered`` for it and has not queued yet; if so the pump is woken when
        the writer next empties its queue. A link that is gone is never busy."""
        conn = self.conns.get(link)
        if conn is None or conn.ended:
            return False
        waiting = conn.queued_bytes + sum(map(len, gathered.get(link, ())))
        if waiting < self._config.send_queue_bytes // 2:
            return False
        conn.on_dequeued = self._wake_pump
        return True

    def forget(self, conn: Connection) -> None:
        """Drop a settled connection, keeping its byte counts in the totals."""
        self.conns.pop(conn.link, None)
        self._counters.bytes_sent += conn.bytes_sent
        self._counters.bytes_received += conn.bytes_received

    def figures(self) -> dict[str, int]:
        """The connection fields of ``RunnerStatistics`` (byte totals include live links)."""
        live = [c for c in self.conns.values() if not c.retired]
        inbound = sum(not c.initiator for c in live)
        return {
            "links": len(live),
            "links_inbound": inbound,
            "links_outbound": len(live) - inbound,
            "half_open": len(self.half_open),
            "queued_frames": sum(c.queued_items for c in live),
            "queued_bytes": sum(c.queued_bytes + c.writing_bytes for c in live),
            "bytes_sent": self._counters.bytes_sent
            + sum(c.bytes_sent for c in self.conns.values()),
            "bytes_received": self._counters.bytes_received
            + sum(c.bytes_received for c in self.conns.values()),
        }

    def linked_to(self, address: str) -> bool:
        """Whether a connection to ``address`` is up or on its way up.

        A link on its way out (closing or ended) does not count: the Node may re-dial at once.
        """
        return any(c.address == address and not (c.ended or c.closing) for c in self.conns.values())

    def make_room(self, host: str | None) -> bool:
        """Admit a new connection (from ``host``, or outbound when None), evicting if needed.

        Returns False when ``max_links`` is reached and no half-open link can be evicted.
        """
        config = self._config
        if host is not None:
            if self.half_open.count_for(host) >= config.max_half_open_per_address:
                self._evict(self.half_open.oldest(host))
            if len(self.half_open) >= config.max_half_open:
                self._evict(self.half_open.oldest())
        if self._live >= config.max_links:
            victim = self.half_open.oldest()
            if victim is None:
                return False
            self._evict(victim)
        return True

    def _evict(self, conn: Connection | None) -> None:
        if conn is not None:
            self._counters.evicted_half_open += 1
            self.end(conn, "evicted: oldest half-open connection")
