"""TCP pieces of the trio driver: peer addresses, and one connection's reader and writer.

Theory of operation
-------------------
A :class:`Connection` carries one link over one stream. :meth:`Connection.run` runs two tasks in
the connection's own cancel scope (the reader in ``run``'s own task, the writer in a child):

* the **reader** hands every chunk it receives to a ``deliver`` callback (the runner forwards it
  to the pump's bounded input channel, so a busy pump slows the reader and TCP pushes back on the
  peer). End of stream, a reset, or an inbound socket silent past its first-byte deadline ends
  the connection;
* the **writer** drains a queue bounded in bytes. Everything queued when it wakes is joined into one
  ``send_all`` call: one system call per batch rather than per frame is the main speed lever of
  Python networking (research: ~23 µs per ``send_all``, 14× more throughput when 32 frames are
  joined). When the writer is idle with nothing queued, :meth:`Connection.queue_nowait` first
  writes what the kernel takes at once (a non-blocking write on the socket's descriptor) and
  queues only the rest: a handshake message or a small reply then costs one system call and no
  task switch (docs/performance.md, link-setup). A close request makes it flush what was queued
  before, send EOF, and give the peer ``close_linger_s`` to finish before the socket is closed.

The runner queues with :meth:`Connection.queue_nowait`, which never blocks: a full queue means
the peer reads slower than we write, and the runner closes that link alone. Whichever way the
connection ends, ``run`` closes the stream before it returns.

This module knows nothing of the Node: links, half-open accounting and the pump are the runner's.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Awaitable, Callable

import trio

from meshmsg.config import NetConfig
from meshmsg.core import address as address_rules
from meshmsg.core.effects import LinkId
from meshmsg.errors import TransportError


def parse_address(address: str) -> tuple[str, int]:
    """Split a dialable ``host:port`` or ``[ipv6]:port`` into host and port.

    Raises:
        TransportError: anything :data:`~meshmsg.core.address.DIAL` refuses.
    """
    return address_rules.parse_address(address, address_rules.DIAL, TransportError)


format_address = address_rules.format_address


async def connect_tcp(host: str, port: int) -> trio.abc.HalfCloseableStream:
    """Open a TCP stream to ``host``: straight to it when it is an IP literal.

    Dialled peers are almost always literals (mDNS answers, static peers); for them
    ``trio.open_tcp_stream``'s resolver call and its happy-eyeballs nursery and task are pure
    overhead on every link (docs/performance.md, link-setup). Names still go through it.

    Raises:
        OSError: the connection failed.
    """
    try:
        family = (
            trio.socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else trio.socket.AF_INET
        )
    except ValueError:
        return await trio.open_tcp_stream(host, port)
    sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
    try:
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


_DIRECT_WRITES = sys.platform != "win32"  # os.write() on a socket needs POSIX descriptors

Deliver = Callable[["Connection", bytes], Awaitable[None]]


class Connection:
    """One transport stream carrying one link (see the module docstring).

    The attributes below the stream are owned by the runner (``node_open``, ``inflight``,
    ``retired``, ``settled``) or set by this class and read by the runner (``ended``,
    ``end_reason``, counters). There is no lock: trio runs one task at a time, and none of them
    awaits while it changes them.
    """

    def __init__(
        self,
        *,
        link: LinkId,
        stream: trio.abc.HalfCloseableStream,
        host: str,
        initiator: bool,
        address: str | None,
        config: NetConfig,
    ) -> None:
        self.link = link
        self.stream = stream
        self.host = host  # the peer's host: the key of the per-address half-open cap
        self.initiator = initiator
        self.address = address  # what we dialed; None when accepted
        self.node_open = False  # the Node has this link open (link_opened seen, no CloseLink)
        self.inflight = 0  # inputs for this link in the pump's channel, not yet processed
        self.retired = False  # the runner has taken it out of its link counts
        self.settled = False  # the pump has forgotten the connection
        self.ended = False  # the transport is over (or being torn down); nothing more is sent
        self.closing = False  # CloseLink received: flush, then close
        self.end_reason = ""
        self.first_byte_timed_out = False
        self.queued_bytes = 0  # waiting in the queue
        self.writing_bytes = 0  # taken by the writer, not yet accepted by the kernel
        self.bytes_sent = 0
        self.bytes_received = 0
        self._config = config
        self._scope = trio.CancelScope()
        self._queue: list[bytes] = []  # chunks waiting for the writer, in order
        self.on_dequeued: Callable[[], None] | None = None  # once, when the queue is next empty
        self._close_queued = False  # after the queued chunks: EOF, linger, close
        self._writer_idle = trio.lowlevel.ParkingLot()
        # A socket's descriptor, for writing at once while the writer is idle (module
        # docstring); -1 for other streams (tests' memory streams) and where sockets are no
        # file descriptors (Windows).
        sock = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._fd = sock.fileno() if sock is not None and _DIRECT_WRITES else -1

    @property
    def queued_items(self) -> int:
        """Transmit chunks waiting for the writer."""
        return len(self._queue)

    def queue_nowait(self, data: bytes) -> bool:
        """Queue bytes for the writer; ``False`` when the queue is full (the peer is too slow).

        The bound is on bytes waiting behind the write in progress, never on a count of
        chunks: the pump may hand over many small ones while one large write waits for the
        kernel, and that is a busy moment, not a slow peer. An empty queue takes any chunk,
        so a single large burst always goes out.
        """
        if self._fd >= 0 and not (self._queue or self.writing_bytes or self._close_queued):
            data = self._write_now(data)
            if not data:
                self._dequeued()
                return True
        limit = self._config.send_queue_bytes
        if self.queued_bytes and self.queued_bytes + len(data) > limit:
            return False
        self._queue.append(data)
        self.queued_bytes += len(data)
        self._writer_idle.unpark_all()
        return True

    def _write_now(self, data: bytes) -> bytes:
        """Write what the kernel takes at once, without waiting; return the rest.

        Only called while the writer is idle with nothing queued, so order is kept. ``ended``
        is checked because the descriptor's number is reused once ``run`` closes the stream.
        """
        if self.ended:
            return data
        try:
            sent = os.write(self._fd, data)
        except OSError:  # would block, or the socket failed: the writer's send_all reports it
            return data
        self.bytes_sent += sent
        return data[sent:]

    def close_nowait(self) -> None:
        """Ask the writer to send what is queued, then EOF, and close (after a linger)."""
        self.closing = True
        self._close_queued = True
        self._writer_idle.unpark_all()

    def abort(self, reason: str) -> None:
        """End the connection now: cancel its tasks; ``run`` then closes the stream."""
        if not self.ended:
            self.ended = True
            self.end_reason = reason
        self._scope.cancel()

    async def run(
        self,
        *,
        opened: Callable[[], Awaitable[None]],
        deliver: Deliver,
        first_byte_timeout_s: float | None,
    ) -> None:
        """Announce the link (``opened``), then read and write until the connection ends.

        Returns when the connection is over, with the stream closed. Transport errors end the
        connection and are recorded in ``end_reason``; they are not raised.
        """
        try:
            with self._scope:
                await opened()
                # The reader runs in this task: one task fewer to spawn and reap per connection
                # (a measurable share of a link's setup cost, docs/performance.md).
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop)
                    await self._read_loop(deliver, first_byte_timeout_s)
        finally:
            self.ended = True
            self._queue.clear()
            await trio.aclose_forcefully(self.stream)

    # --- tasks -------------------------------------------------------------------------------

    async def _read_loop(self, deliver: Deliver, first_byte_timeout_s: float | None) -> None:
        chunk = self._config.read_chunk_bytes
        try:
            if first_byte_timeout_s is not None:
                with trio.move_on_after(first_byte_timeout_s):
                    data = await self.stream.receive_some(chunk)
                    await self._received(data, deliver)
                    first_byte_timeout_s = None
                if first_byte_timeout_s is not None:
                    self.first_byte_timed_out = True
                    self.abort("no data before the first-byte deadline")
                    return
            while not self.ended:
                await self._received(await self.stream.receive_some(chunk), deliver)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.abort(f"receive failed: {exc or type(exc).__name__}")

    async def _received(self, data: bytes | bytearray, deliver: Deliver) -> None:
        data = bytes(data)  # free for the bytes a SocketStream returns
        if not data:
            self.abort("end of stream")
            return
        self.bytes_received += len(data)
        if not self.closing:  # after CloseLink the Node has forgotten the link
            await deliver(self, data)

    async def _write_loop(self) -> None:
        try:
            while True:
                data, close = await self._next_batch()
                if close:
                    await self._linger(data)
                    return
                await self._send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.abort(f"send failed: {exc or type(exc).__name__}")

    async def _next_batch(self) -> tuple[bytes, bool]:
        """Wait for queued bytes or a close, then take everything queued."""
        while not self._queue and not self._close_queued:
            await self._writer_idle.park()
        data = b"".join(self._queue)
        self._queue.clear()
        # Taken out of the queue: the byte bound is on what waits *behind* the send in
        # progress, so one large burst (a sync) does not make a healthy peer look slow.
        self.queued_bytes = 0
        self.writing_bytes = len(data)
        self._dequeued()
        return data, self._close_queued

    def _dequeued(self) -> None:
        """Nothing waits behind the write in progress any more: tell whoever asked."""
        if self.on_dequeued is not None:
            wake, self.on_dequeued = self.on_dequeued, None
            wake()

    async def _send(self, data: bytes) -> None:
        await self.stream.send_all(data)
        self.writing_bytes = 0
        self.bytes_sent += len(data)

    async def _linger(self, data: bytes) -> None:
        """Flush, send EOF, and wait (bounded) for the peer's EOF, which the reader sees.

        Closing a socket that still has unread input makes the kernel send a reset, which can
        destroy our last frames in flight; waiting for the peer's EOF avoids that.
        """
        with trio.move_on_after(self._config.close_linger_s):
            if data:
                await self._send(data)
            await self.stream.send_eof()
            await trio.sleep_forever()
        self.abort("closed")
