"""A user-space TCP proxy on loopback that can cut connections: the soak's network faults.

One :class:`FaultProxy` serves several *routes*: it listens on a port of its own for each
target (``127.0.0.1:<front>`` -> ``127.0.0.1:<back>``). A node whose static peers are the
proxy's front ports has every link it dials go through the proxy, so the driver can:

* :meth:`cut` connections (all of them, those of one target, or a random share): both sockets
  are closed at once, with RST (``SO_LINGER`` 0) or a plain FIN, so each side sees what a
  dropped Wi-Fi or a NAT timeout gives it: a reset or an EOF in the middle of a stream;
* :meth:`block` a target for a while: new connections to it are accepted and closed at once
  (a partition seen from the dialer's side: the TCP handshake succeeds, the peer never speaks).

It forwards bytes as they come (no buffering beyond one 64 KiB read per direction) and counts
connections and bytes. It runs as trio tasks in the caller's loop (:meth:`serve`).
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
from dataclasses import dataclass, field

import trio

CHUNK = 65_536


@dataclass
class _Conn:
    target: str
    client: trio.SocketStream
    server: trio.SocketStream
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


@dataclass
class ProxyStats:
    accepted: int = 0
    refused_blocked: int = 0
    connect_failures: int = 0
    cut: int = 0
    bytes_forwarded: int = 0


class FaultProxy:
    """Routes ``name -> (front port, back port)``; see the module doc."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, int]] = {}
        self.stats = ProxyStats()
        self._conns: list[_Conn] = []
        self._blocked_until: dict[str, float] = {}
        self._listeners: dict[str, trio.SocketListener] = {}

    async def add_route(self, nursery: trio.Nursery, name: str, back_port: int) -> int:
        """Listen for ``name`` (forwarding to 127.0.0.1:``back_port``); return the front port."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        listener = listeners[0]
        front = int(listener.socket.getsockname()[1])
        self.routes[name] = (front, back_port)
        self._listeners[name] = listener
        nursery.start_soon(self._accept_loop, nursery, name, listener)
        return front

    def connections(self, target: str | None = None) -> int:
        return sum(1 for c in self._conns if target is None or c.target == target)

    def cut(self, *, target: str | None = None, share: float = 1.0, rng: random.Random,
            reset: bool = True) -> int:  # fmt: skip
        """Close a ``share`` of the connections (of ``target``, or all); return how many."""
        chosen = [c for c in self._conns
                  if (target is None or c.target == target) and rng.random() < share]  # fmt: skip
        for conn in chosen:
            self._close(conn, reset=reset)
        self.stats.cut += len(chosen)
        return len(chosen)

    def block(self, target: str, seconds: float) -> None:
        self._blocked_until[target] = trio.current_time() + seconds

    def _close(self, conn: _Conn, *, reset: bool) -> None:
        if conn in self._conns:
            self._conns.remove(conn)
        for stream in (conn.client, conn.server):
            if reset:
                with _ignore_oserror():
                    stream.socket.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
            else:
                with _ignore_oserror():
                    stream.socket.shutdown(socket.SHUT_RDWR)
        conn.scope.cancel()

    async def _accept_loop(self, nursery: trio.Nursery, name: str,
                           listener: trio.SocketListener) -> None:  # fmt: skip
        async with listener:
            while True:
                client = await listener.accept()
                if self._blocked_until.get(name, 0.0) > trio.current_time():
                    self.stats.refused_blocked += 1
                    with trio.CancelScope(shield=True):
                        await client.aclose()
                    continue
                nursery.start_soon(self._serve, name, client)

    async def _serve(self, name: str, client: trio.SocketStream) -> None:
        try:
            with trio.fail_after(5):
                server = await trio.open_tcp_stream("127.0.0.1", self.routes[name][1])
        except (OSError, trio.TooSlowError):
            self.stats.connect_failures += 1  # the target is down (killed): so is the dial
            with trio.CancelScope(shield=True):
                await client.aclose()
            return
        self.stats.accepted += 1
        conn = _Conn(name, client, server)
        self._conns.append(conn)
        try:
            with conn.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pipe, client, server, nursery.cancel_scope)
                    nursery.start_soon(self._pipe, server, client, nursery.cancel_scope)
        finally:
            if conn in self._conns:
                self._conns.remove(conn)
            with trio.CancelScope(shield=True):  # both closed, even when the proxy is stopping
                await client.aclose()
                await server.aclose()

    async def _pipe(self, src: trio.SocketStream, dst: trio.SocketStream,
                    scope: trio.CancelScope) -> None:  # fmt: skip
        try:
            while data := await src.receive_some(CHUNK):
                await dst.send_all(data)
                self.stats.bytes_forwarded += len(data)
            with _ignore_oserror():
                await dst.send_eof()  # half-close, as TCP would pass it on
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        scope.cancel()  # one direction broke: the connection is over


def _ignore_oserror() -> contextlib.suppress:
    return contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError)
