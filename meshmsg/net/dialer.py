"""The trio driver's dialers: ``Dial`` effects carried out with a connect timeout.

``max_concurrent_dials`` worker tasks take addresses from a bounded queue. A dial to an address
already being dialled, or already linked, is dropped; so is one that finds the queue full. A
failure is counted and reported through ``on_failed`` (the runner publishes it as
``DialFailed``); it never reaches the nursery. A dialled stream is admitted against the link
caps like an accepted one (``ConnectionTable.make_room``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from meshmsg.config import NetConfig
from meshmsg.errors import TransportError
from meshmsg.net.connections import ConnectionTable
from meshmsg.net.runnerstats import RunnerCounters
from meshmsg.net.tcp import Connection, parse_address

Connect = Callable[[str, int], Awaitable[trio.abc.HalfCloseableStream]]


class Dialer:
    """The dial queue and its workers."""

    def __init__(
        self,
        connect: Connect,
        *,
        config: NetConfig,
        counters: RunnerCounters,
        connections: ConnectionTable,
        on_failed: Callable[[str, str], None],
        start_connection: Callable[[Connection], None],
    ) -> None:
        self._connect = connect
        self._config = config
        self._counters = counters
        self._connections = connections
        self._on_failed = on_failed  # (address, detail)
        self._start_connection = start_connection
        self._dials_in, self._dials_out = trio.open_memory_channel[str](config.max_pending_dials)
        self._dialing: set[str] = set()

    @property
    def pending(self) -> int:
        """Dials queued, not yet taken by a worker."""
        return self._dials_in.statistics().current_buffer_used

    def reaches(self, address: str) -> bool:
        """Whether a dial to ``address`` is queued or running, or a connection to it is up."""
        return address in self._dialing or self._connections.linked_to(address)

    def dial_nowait(self, address: str) -> None:
        """Queue a dial (from the pump: never blocks)."""
        if self.reaches(address):
            self._counters.dials_dropped += 1
            return
        try:
            self._dials_in.send_nowait(address)
        except trio.WouldBlock:
            self._counters.dials_dropped += 1
            self._on_failed(address, "dial queue full")
            return
        self._dialing.add(address)

    async def worker(self) -> None:
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
            self._failed(address, "connect timed out")
            return
        except (TransportError, OSError) as exc:
            self._failed(address, str(exc) or type(exc).__name__)
            return
        if not self._connections.make_room(None):
            await trio.aclose_forcefully(stream)
            self._failed(address, "max_links reached")
            return
        self._counters.dials_succeeded += 1
        self._start_connection(self._connections.register(stream, host, address=address))

    def _failed(self, address: str, detail: str) -> None:
        self._counters.dial_failures += 1
        self._on_failed(address, detail)
