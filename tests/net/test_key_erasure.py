"""Deleted period keys leave the files at rollover (issue #11, finding 6).

A period rollover replaces a contact's channel record: before the fix that was a plain put, no
checkpoint followed, and the old sealed channel state (with the keys of the deleted period)
stayed in the SQLite WAL until the next interval checkpoint or longer. Here a real node writes
through a real ``Storage``; the test reads the raw database and WAL files.
"""

from __future__ import annotations

import math
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from meshmsg.config import NodeConfig
from meshmsg.core.effects import Persist, RecordKind
from meshmsg.core.envelope import parse_envelope
from meshmsg.core.identity import ContactCard, Identity
from meshmsg.core.node import Node
from meshmsg.core.offlinepair import pair_offline
from meshmsg.errors import InvalidMessage
from meshmsg.net.storage import Storage
from meshmsg.sim.rng import SeededRng
from tests.helpers import T0

KEY = bytes(range(32))
DAY = NodeConfig().message.period_s


def drain(node: Node, storage: Storage | None, now: float) -> list[Persist]:
    """Carry out the node's Persist effects (into ``storage`` if given); drop the rest."""
    done: list[Persist] = []
    while (effect := node.next_effect()) is not None:
        if isinstance(effect, Persist):
            if storage is not None:
                storage.apply(effect)
            node.storage_committed(effect.token, now=now)
            done.append(effect)
    return done


def sealed_channels(db: Path) -> list[bytes]:
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT sealed FROM records WHERE kind = ?", (int(RecordKind.CHANNEL),)
        ).fetchall()
    return [bytes(r[0]) for r in rows]


def chunks(blob: bytes, size: int = 32) -> list[bytes]:
    return [blob[i : i + size] for i in range(0, len(blob) - size + 1, size)]


def paired(storage: Storage | None, now: float) -> tuple[Node, Node]:
    ids = {n: Identity.generate(SeededRng(3, f"identity:{n}")) for n in ("alice", "bob")}
    nodes = {
        n: Node(identity=ids[n], config=NodeConfig(), rng=SeededRng(3, n), now=now) for n in ids
    }
    for me, other in (("alice", "bob"), ("bob", "alice")):
        card = ContactCard(public=ids[other].public, name=other)
        nodes[me].add_contact(card, verified=True, now=now)
    pair_offline(nodes["alice"], nodes["bob"], now=now)
    drain(nodes["alice"], storage, now)
    drain(nodes["bob"], None, now)
    return nodes["alice"], nodes["bob"]


def test_period_rollover_checkpoints_the_old_key_state_out_of_both_files(
    tmp_path: Path,
) -> None:
    db = tmp_path / "node.db"
    wal = db.with_name(db.name + "-wal")
    now = T0
    with Storage.open(db, KEY, durable=False) as storage:
        alice, bob = paired(storage, now)
        storage.checkpoint()  # start clean: the state below is written after this
        alice.send_message(bob.identity.peer_id, "x", now=now)
        drain(alice, storage, now)
        (old,) = sealed_channels(db)
        assert any(c in wal.read_bytes() for c in chunks(old))  # the test can see it
        rollover = (math.floor(now / DAY) + 1) * DAY + 1.0
        alice.handle_timer(now=rollover)
        persists = drain(alice, storage, rollover)
        assert any(put.kind is RecordKind.CHANNEL for p in persists for put in p.puts), (
            "the rollover writes the new key state"
        )
        (new,) = sealed_channels(db)
        assert new != old
        files = db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
        assert not [c for c in chunks(old) if c in files]


def test_a_rollover_moved_by_a_forged_envelope_is_written_and_erased(tmp_path: Path) -> None:
    """open() moves the channel clock before authentication fails: the keys it deleted in
    memory must not stay on disk because nothing was written (before the fix the timer saw
    no change and wrote nothing)."""
    db = tmp_path / "node.db"
    now = T0
    with Storage.open(db, KEY, durable=False) as storage:
        alice, bob = paired(storage, now)
        bob.send_message(alice.identity.peer_id, "x", now=now)
        drain(bob, None, now)
        (item,) = bob.store.items()
        forged = bytearray(item.envelope)
        forged[-1] ^= 1  # a tag alice recognises, a ciphertext that fails
        storage.checkpoint()
        (old,) = sealed_channels(db)
        rollover = (math.floor(now / DAY) + 1) * DAY + 1.0
        channel = alice.contacts.require(bob.identity.peer_id).channel
        assert channel is not None
        envelope = parse_envelope(bytes(forged), buckets=NodeConfig().message.envelope_size_buckets)
        with pytest.raises(InvalidMessage):
            channel.open(envelope, rollover)
        alice.handle_timer(now=rollover)
        persists = drain(alice, storage, rollover)
        assert any(p.erases_keys for p in persists)
        (new,) = sealed_channels(db)
        assert new != old
        wal = db.with_name(db.name + "-wal")
        files = db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
        assert not [c for c in chunks(old) if c in files]


def test_writes_that_replace_deleted_keys_are_marked_and_others_are_not() -> None:
    now = T0
    alice, bob = paired(None, now)
    alice.send_message(bob.identity.peer_id, "x", now=now)  # a new counter: no key deleted
    assert not any(p.erases_keys for p in drain(alice, None, now))
    pair_offline(alice, bob, now=now + 60)  # a new pairing replaces every key of the old one
    assert any(p.erases_keys for p in drain(alice, None, now + 60))
    drain(bob, None, now + 60)
    rollover = (math.floor(now / DAY) + 1) * DAY + 1.0
    alice.handle_timer(now=rollover)
    assert any(p.erases_keys for p in drain(alice, None, rollover))
