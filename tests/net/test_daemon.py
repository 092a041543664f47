"""The daemon's adapters: WAL checkpoints around commits, and discovery feedback from dials."""

from __future__ import annotations

import socket
from pathlib import Path

import trio
import trio.testing

from meshmsg.app.datadir import Settings, init_data_dir, unlock
from meshmsg.app.mesh import CheckpointingStorage, open_mesh_node
from meshmsg.core.effects import Persist, RecordKind, StoredRecord
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
