"""Connection.queue_nowait writes at once while the writer is idle (meshmsg/net/tcp.py).

A real socket pair, no writer task running: whatever reaches the peer was written by
``queue_nowait`` itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from meshmsg.config import NetConfig
from meshmsg.net.tcp import Connection


@contextmanager
def _pair(config: NetConfig | None = None) -> Iterator[tuple[Connection, trio.socket.SocketType]]:
    ours, theirs = trio.socket.socketpair()
    with ours, theirs:
        conn = Connection(
            link=1, stream=trio.SocketStream(ours), host="peer", initiator=True, address=None,
            config=config or NetConfig(),
        )  # fmt: skip
        yield conn, theirs


async def _read_all(sock: trio.socket.SocketType, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await sock.recv(size - len(data))
        assert chunk, "the peer saw EOF early"
        data += chunk
    return data


async def test_an_idle_writer_means_the_bytes_leave_at_once() -> None:
    with _pair() as (conn, theirs):
        message = os.urandom(300)
        assert conn.queue_nowait(message)
        assert conn.queued_items == 0
        assert conn.bytes_sent == len(message)
        assert await _read_all(theirs, len(message)) == message


async def test_what_the_kernel_does_not_take_waits_for_the_writer_in_order() -> None:
    with _pair(NetConfig(send_queue_bytes=64 << 20)) as (conn, theirs):
        burst = os.urandom(8 << 20)  # far beyond a socket buffer
        assert conn.queue_nowait(burst)
        assert 0 < conn.bytes_sent < len(burst)
        assert conn.queued_bytes == len(burst) - conn.bytes_sent
        assert conn.queue_nowait(b"after")  # queued behind the rest, not written past it
        assert conn.queued_items == 2
        received: list[bytes] = []

        async def read() -> None:
            received.append(await _read_all(theirs, len(burst) + 5))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn._write_loop)
            await read()
            nursery.cancel_scope.cancel()
        assert received[0] == burst + b"after"


async def test_an_ended_connection_writes_nothing() -> None:
    with _pair() as (conn, theirs):
        conn.abort("gone")  # the descriptor may belong to another socket once run() closed it
        conn.queue_nowait(b"late")
        assert conn.bytes_sent == 0
        with trio.move_on_after(0.05):
            await theirs.recv(16)
            raise AssertionError("an ended connection wrote")
