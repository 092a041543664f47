"""Group mail at the node, the paths a well-connected group never takes: records queued for a
member who is not paired yet (durably, across a restart, bounded), group mail carried before
its chain arrived and opened when it does, a forged group envelope under a real tag, and the
commands' refusals."""

from __future__ import annotations

import dataclasses

import pytest

from meshmsg.config import GroupLimits, NodeConfig
from meshmsg.core.effects import RecordKind, StoredRecord
from meshmsg.core.envelope import envelope_id
from meshmsg.core.events import GroupChanged
from meshmsg.core.node import Node
from meshmsg.errors import GroupError, StorageError
from meshmsg.sim.rng import SeededRng
from tests.core.node_tools import AttackMesh, own_envelopes
from tests.core.test_group_node import bodies, group_mesh, meet, members
from tests.helpers import Mesh


def _queued(mesh: Mesh, name: str) -> list[bytes]:
    return [key for kind, key in mesh.persisted[name] if kind is RecordKind.GROUP_QUEUE]


def test_records_for_an_unpaired_member_wait_durably_and_leave_after_a_restart() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=False)
    alice = mesh.nodes["alice"]
    gid = alice.create_group("night shift", [mesh.peer_id("bob")], now=mesh.now)
    mesh.run()
    assert _queued(mesh, "alice"), "no channel to bob yet: the operations wait on disk"
    mesh.advance(60)  # retries while bob is away change nothing
    assert _queued(mesh, "alice")
    mesh.stop("alice")
    alice = mesh.start("alice")
    assert alice.groups.find(gid).group.state.name == "night shift"
    meet(mesh, "alice", "bob")  # the meeting pairs them; the queue restored at start goes out
    mesh.advance(30)
    meet(mesh, "alice", "bob")
    assert _queued(mesh, "alice") == []
    assert members(mesh.nodes["bob"], gid) == members(alice, gid)
    assert any(e.group_id == gid for e in mesh.of_type("bob", GroupChanged))


def test_a_queue_record_that_does_not_decode_stops_the_start() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=False)
    mesh.nodes["alice"].create_group("g", [mesh.peer_id("bob")], now=mesh.now)
    mesh.run()
    [key, *_] = _queued(mesh, "alice")
    records = [
        StoredRecord(kind=k, key=kk, value=v) for (k, kk), v in mesh.persisted["alice"].items()
    ]
    damaged = [dataclasses.replace(r, value=b"\xff\x00") if r.key == key else r for r in records]
    with pytest.raises(StorageError, match="GROUP_QUEUE record does not decode"):
        Node(identity=mesh.identities["alice"], config=NodeConfig(), rng=SeededRng(1, "x"),
             now=mesh.now, records=damaged)  # fmt: skip


def test_the_queue_for_one_member_is_bounded_and_the_oldest_go() -> None:
    config = NodeConfig(groups=dataclasses.replace(GroupLimits(), max_queued_per_member=3))
    mesh = Mesh(["alice", "bob"], config=config)
    mesh.befriend("alice", "bob", pair=False)
    alice = mesh.nodes["alice"]
    gid = alice.create_group("g0", [mesh.peer_id("bob")], now=mesh.now)
    mesh.run()
    first = _queued(mesh, "alice")
    for n in range(1, 6):
        alice.change_group(gid, "rename", name=f"g{n}", now=mesh.now)
        mesh.run()
    queued = _queued(mesh, "alice")
    assert len(queued) == 3
    assert not set(first) & set(queued)  # the creation went first
    assert queued == sorted(queued)  # and what is left is the newest, in order


def test_group_mail_carried_before_its_chain_opens_when_the_chain_arrives() -> None:
    mesh = Mesh(["alice", "bob", "relay"])
    mesh.befriend("alice", "bob", pair=False)
    alice = mesh.nodes["alice"]
    gid = alice.create_group("g", [mesh.peer_id("bob")], now=mesh.now)
    mid = alice.send_group_message(gid, "ahead of its key", now=mesh.now)
    meet(mesh, "alice", "relay")
    meet(mesh, "relay", "bob")
    sent = alice.groups.find(gid).messages[mid].envelope_id
    assert sent in {item.envelope_id for item in mesh.nodes["bob"].store.items()}
    assert bodies(mesh, "bob") == []  # bob carries it without knowing it is his
    for _ in range(3):  # pairing, then the queued operations and chain
        meet(mesh, "alice", "bob")
        mesh.advance(15)
    assert bodies(mesh, "bob") == ["ahead of its key"]


def test_a_forged_envelope_under_a_members_tag_is_refused_and_the_real_one_opens() -> None:
    mesh = AttackMesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    alice = mesh.nodes["alice"]
    gid = alice.create_group("g", [mesh.peer_id("bob")], now=mesh.now)
    alice.send_group_message(gid, "first", now=mesh.now)
    meet(mesh, "alice", "bob")
    assert bodies(mesh, "bob") == ["first"]
    mid = alice.send_group_message(gid, "second", now=mesh.now)
    eid = alice.groups.find(gid).messages[mid].envelope_id
    [real] = [e for e in own_envelopes(alice) if envelope_id(e) == eid]
    forged = real[:-1] + bytes([real[-1] ^ 1])  # same tag, broken MAC
    injector = mesh.inject("bob", mesh.stranger("mallory"))
    injector.transfer([forged])
    accepted, refused = injector.custody()
    assert envelope_id(forged) in refused
    assert envelope_id(forged) not in accepted
    assert bodies(mesh, "bob") == ["first"]
    injector.transfer([real])
    accepted, _ = injector.custody()
    assert eid in accepted
    assert bodies(mesh, "bob") == ["first", "second"]


def test_commands_refuse_what_makes_no_sense() -> None:
    mesh = group_mesh("alice", "bob", "carol")
    alice = mesh.nodes["alice"]
    gid = alice.create_group("g", [mesh.peer_id("bob")], now=mesh.now)
    with pytest.raises(GroupError, match="unknown group change 'kick'"):
        alice.change_group(gid, "kick", member=mesh.peer_id("bob"), now=mesh.now)
    with pytest.raises(GroupError, match="add whom"):
        alice.change_group(gid, "add", now=mesh.now)
    with pytest.raises(GroupError, match="not a member of this group"):
        alice.change_group(gid, "remove", member=mesh.peer_id("carol"), now=mesh.now)
    budget = alice.config.message.latency_budget_s
    for ttl in (0.0, -1.0, budget + 1):
        with pytest.raises(GroupError, match="ttl must be within"):
            alice.send_group_message(gid, "m", ttl_s=ttl, now=mesh.now)
    assert alice.groups.find(gid).messages == {}  # nothing was sealed by a refused command
    alice.change_group(gid, "add", member=mesh.peer_id("carol"), now=mesh.now)
    meet(mesh, "alice", "carol")
    assert members(mesh.nodes["carol"], gid) == members(alice, gid)
    assert len(members(alice, gid)) == 3
