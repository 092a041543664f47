"""The daemon's adapters: WAL checkpoints around commits, and discovery feedback from dials."""

from __future__ import annotations

import functools
import socket
from dataclasses import replace
from pathlib import Path

import trio
import trio.testing

from meshmsg.app.datadir import Settings, init_data_dir, unlock
from meshmsg.app.mesh import CheckpointingStorage, PeerBridge, open_mesh_node
from meshmsg.core.effects import Persist, RecordKind, StoredRecord
from meshmsg.net.peers import StaticPeers
from meshmsg.net.runnerevents import DialFailed
from meshmsg.net.storage import DataDir, Storage, new_db_key


def test_checkpoints_at_the_interval_and_after_deleting_key_state(tmp_path: Path) -> None:
    now = [0.0]
    with Storage.open(tmp_path / "db", new_db_key()) as storage:
        sink = CheckpointingStorage(storage, 60.0, clock=lambda: now[0])
        put = StoredRecord(kind=RecordKind.CHANNEL, key=b"k" * 16, value=b"v")
        sink.apply(Persist(token=1, puts=(put,), deletes=()))
        sink.checkpoint_if_due()
        assert sink.checkpoints == 0  # not due yet
        now[0] = 61.0
        sink.checkpoint_if_due()
        assert sink.checkpoints == 1
        sink.apply(Persist(token=2, puts=(), deletes=((RecordKind.CHANNEL, b"k" * 16),)))
        assert sink.checkpoints == 2  # deleted key state leaves the WAL at once
        assert storage.load_all() == []


def closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: connecting to it is refused
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_failed_static_dial_is_reported_for_retry(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "node")
    init_data_dir(data_dir, passphrase="pw", kdf_fast=True)
    dead = f"127.0.0.1:{closed_port()}"
    settings = Settings(listen_host="127.0.0.1", listen_port=0, static_peers=(dead,))
    unlocked = unlock(data_dir, settings, lambda: "pw")
    async with open_mesh_node(data_dir, settings, unlocked) as handle:
        assert handle.static is not None
        with handle.runner.subscribe() as events, trio.fail_after(10):
            async for event in events:
                if isinstance(event, DialFailed):
                    break
        assert event.address == dead
        await trio.testing.wait_all_tasks_blocked()  # the bridge handled the same event
        assert handle.static.statistics().failures_reported == 1
        assert handle.bridge.found_by[dead] == "static peer"


async def test_a_static_peer_that_hangs_up_before_the_handshake_is_dialled_again(
    tmp_path: Path,
) -> None:
    """The soak's proxy accepts a connection and closes it while its node is down. Before, the
    bridge heard of a dialled link only once it authenticated, so such a peer was never dialled
    again (the soak's node that stayed without links). Now the close is reported (LinkClosed
    names the address) and, for ends no event shows, the audit reports it."""
    accepted = 0
    hung_up = trio.Event()

    async def hang_up(stream: trio.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        await stream.aclose()
        if accepted >= 3:
            hung_up.set()

    data_dir = DataDir(tmp_path / "node")
    init_data_dir(data_dir, passphrase="pw", kdf_fast=True)
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, hang_up, 0, host="127.0.0.1")
        (listener,) = await nursery.start(serve)
        port = listener.socket.getsockname()[1]
        settings = Settings(
            listen_host="127.0.0.1", listen_port=0, static_peers=(f"127.0.0.1:{port}",)
        )
        config = settings.node_config()
        config = config.replace(net=replace(config.net, peer_retry_initial_s=0.05,
                                            peer_retry_max_s=0.1))  # fmt: skip
        unlocked = unlock(data_dir, settings, lambda: "pw")
        async with open_mesh_node(data_dir, settings, unlocked, config=config) as handle:
            with trio.fail_after(10):
                await hung_up.wait()
            assert handle.static is not None
            assert handle.static.statistics().failures_reported >= 2
        nursery.cancel_scope.cancel()


async def test_the_audit_offers_again_a_peer_whose_end_no_event_showed(tmp_path: Path) -> None:
    """A hand-out the node never dialled (it was already linked to that address, or the dial
    was dropped) sat held for good before; the audit reports it after two idle checks."""
    data_dir = DataDir(tmp_path / "node")
    init_data_dir(data_dir, passphrase="pw", kdf_fast=True)
    settings = Settings(listen_host="127.0.0.1", listen_port=0)
    unlocked = unlock(data_dir, settings, lambda: "pw")
    async with open_mesh_node(data_dir, settings, unlocked) as handle:
        net = replace(handle.config.net, peer_retry_initial_s=0.01)
        static = StaticPeers([f"127.0.0.1:{closed_port()}"], net)
        bridge = PeerBridge(handle.runner)
        handouts = static.peers()
        peer = await anext(handouts)
        bridge._known[peer.address] = (static, peer)  # held, as forward() leaves it
        bridge._held.add(peer.address)  # ... without the node ever being told
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bridge.audit, 0.05)
            with trio.fail_after(10):
                again = await anext(handouts)  # handed out again only after a failure report
            nursery.cancel_scope.cancel()
        assert again.address == peer.address
        assert static.statistics().failures_reported == 1
