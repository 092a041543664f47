"""Integration: real Nodes (meshmsg/core/node.py) driven by the trio runner over loopback TCP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import trio

from meshmsg.config import NodeConfig
from meshmsg.core.events import MessageReceived, MessageStatus, MessageStatusChanged, PeerConnected
from meshmsg.core.identity import ContactCard, Identity
from meshmsg.core.node import Node
from meshmsg.net.persistence import MemoryStorage
from meshmsg.net.runner import NodeRunner, open_node
from meshmsg.net.runnerevents import RunnerEvent
from meshmsg.net.tcp import format_address
from meshmsg.sysrng import SystemRng

LOCALHOST = "127.0.0.1"


def contacts_pair(config: NodeConfig) -> tuple[Node, Node]:
    """Two fresh nodes that are each other's verified contacts (wall-clock time, as in use)."""
    rng = SystemRng()
    alice_id, bob_id = Identity.generate(rng), Identity.generate(rng)
    now = time.time()
    alice = Node(identity=alice_id, config=config, rng=rng, now=now)
    bob = Node(identity=bob_id, config=config, rng=rng, now=now)
    alice.add_contact(ContactCard(public=bob_id.public), verified=True, now=now, name="bob")
    bob.add_contact(ContactCard(public=alice_id.public), verified=True, now=now, name="alice")
    return alice, bob


@asynccontextmanager
async def run_pair(
    config: NodeConfig,
) -> AsyncIterator[tuple[NodeRunner[Node], NodeRunner[Node], MemoryStorage]]:
    alice, bob = contacts_pair(config)
    bob_storage = MemoryStorage()
    async with AsyncExitStack() as stack:
        ra = await stack.enter_async_context(open_node(alice, config=config.net, host=LOCALHOST))
        rb = await stack.enter_async_context(
            open_node(bob, config=config.net, host=LOCALHOST, storage=bob_storage)
        )
        yield ra, rb, bob_storage


async def first(events: trio.MemoryReceiveChannel[RunnerEvent], kind: type[object]) -> object:
    with trio.fail_after(10):
        async for event in events:
            if isinstance(event, kind):
                return event
    raise AssertionError("event channel ended")


async def test_two_nodes_exchange_messages_end_to_end() -> None:
    config = NodeConfig()
    async with run_pair(config) as (ra, rb, bob_storage):
        alice_id, bob_id = ra.node.identity, rb.node.identity
        with ra.subscribe() as alice_events, rb.subscribe() as bob_events:
            message_id = await ra.call(
                lambda n, now: n.send_message(bob_id.peer_id, "hello over TCP", now=now)
            )
            await ra.peer_discovered(format_address(LOCALHOST, rb.port))
            received = await first(bob_events, MessageReceived)
            assert isinstance(received, MessageReceived)
            assert (received.body, received.peer_id) == ("hello over TCP", alice_id.peer_id)
            status = await first(alice_events, MessageStatusChanged)
            assert isinstance(status, MessageStatusChanged)
            assert status.message_id == message_id
            assert status.status >= MessageStatus.RELAYED
            # And back, on the same link.
            await rb.call(lambda n, now: n.send_message(alice_id.peer_id, "hi alice", now=now))
            reply = await first(alice_events, MessageReceived)
            assert isinstance(reply, MessageReceived)
            assert reply.body == "hi alice"
        stats = ra.statistics()
        assert (stats.links, stats.links_outbound, stats.dials_succeeded) == (1, 1, 1)
        assert rb.statistics().half_open == 0  # authenticated
        assert bob_storage.applied  # the message was committed before it was reported
        assert ra.statistics().bytes_sent > 0


async def idle_socket(port: int, source: str) -> trio.socket.SocketType:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    await sock.bind((source, 0))
    await sock.connect((LOCALHOST, port))
    return sock


async def test_handshake_completes_under_an_idle_connection_flood() -> None:
    """Security goal S8: 500 idle connections; a real handshake still completes in < 2 s."""
    config = NodeConfig()
    async with run_pair(config) as (ra, rb, _):
        sockets: list[trio.socket.SocketType] = []
        try:
            for i in range(500):  # 2 per source address: the global cap is what is tested
                sock = await idle_socket(rb.port, f"127.0.0.{2 + i // 2}")
                sockets.append(sock)  # one at a time: the finally closes what was opened
            with trio.fail_after(10):
                while rb.statistics().accepted < 500:  # noqa: ASYNC110 - polls a snapshot
                    await trio.sleep(0.005)
            assert rb.statistics().half_open <= config.net.max_half_open
            with rb.subscribe() as bob_events:
                start = trio.current_time()
                await ra.peer_discovered(format_address(LOCALHOST, rb.port))
                with trio.fail_after(2):
                    connected = await first(bob_events, PeerConnected)
                assert isinstance(connected, PeerConnected)
                assert connected.peer_id == ra.node.identity.peer_id
                assert trio.current_time() - start < 2
        finally:
            for sock in sockets:
                sock.close()
