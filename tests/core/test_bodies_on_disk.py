"""Carried envelopes' bodies live on disk once committed (StoreConfig.bodies_on_disk, #13).

The relay keeps each carried item's id, tag, size and routing state in memory; the body comes
back from the committed record (LoadEnvelope) for a transfer or an opening.
"""

from __future__ import annotations

import dataclasses

from meshmsg.config import NodeConfig
from meshmsg.core.effects import RecordKind
from meshmsg.core.envelope import envelope_id
from meshmsg.core.events import DropReason, EnvelopeDropped, MessageReceived
from meshmsg.core.records import STORAGE_RECORDS, CarriedEnvelopeState
from meshmsg.core.store import Tier
from meshmsg.core.wire import decode_records
from tests.core.node_tools import notes_beyond_a_window
from tests.helpers import Mesh

BODIES_ON_DISK = NodeConfig().replace(
    store=dataclasses.replace(NodeConfig().store, bodies_on_disk=True)
)


def _mesh() -> Mesh:
    return Mesh(["alice", "relay", "bob"], configs={"relay": BODIES_ON_DISK})


def _carried(mesh: Mesh, count: int = 3) -> list[bytes]:
    """Alice writes ``count`` messages to offline bob and hands them to the relay."""
    mesh.befriend("alice", "bob", pair=True)
    mesh.stop("bob")
    for n in range(count):
        mesh.nodes["alice"].send_message(mesh.peer_id("bob"), f"message {n}", now=mesh.now)
    mesh.connect("alice", "relay")
    mesh.disconnect("alice", "relay")
    ids = [item.envelope_id for item in mesh.nodes["relay"].store.items()]
    assert len(ids) == count
    return ids


def _record_body(mesh: Mesh, name: str, envelope_id: bytes) -> bytes:
    value = mesh.persisted[name][(RecordKind.ENVELOPE, envelope_id)]
    (state,) = decode_records(value, STORAGE_RECORDS, NodeConfig().wire)
    assert isinstance(state, CarriedEnvelopeState)
    return state.envelope


def test_a_committed_carried_body_leaves_memory_and_reaches_the_recipient_intact() -> None:
    mesh = _mesh()
    ids = _carried(mesh)
    relay = mesh.nodes["relay"]
    items = list(relay.store.items())
    assert all(i.tier is not Tier.OWN and i.envelope is None for i in items)  # on disk only
    assert all(i.size == len(_record_body(mesh, "relay", i.envelope_id)) for i in items)
    mesh.start("bob")
    mesh.connect("relay", "bob")
    assert sorted(mesh.envelopes_loaded["relay"]) == sorted(ids)  # read back for the transfer
    # Opened and authenticated by bob: the bytes read back are the bytes alice sealed.
    got = sorted(r.body for r in mesh.of_type("bob", MessageReceived))
    assert got == ["message 0", "message 1", "message 2"]
    assert all(i.envelope is None for i in relay.store.items())
    assert all(s.in_flight == {} for s in relay._state.sessions.values())


def test_a_relay_hands_a_body_read_back_to_another_carrier_byte_identical() -> None:
    mesh = Mesh(["alice", "relay", "carol", "bob"], configs={"relay": BODIES_ON_DISK})
    ids = _carried(mesh, count=2)
    mesh.connect("relay", "carol")  # carol is a carrier: she takes copies (spray)
    carol = mesh.nodes["carol"]
    taken = [i for i in ids if i in carol.store]
    assert taken, "the relay gave the other carrier no copy"
    for taken_id in taken:
        item = carol.store.get(taken_id)
        assert item is not None
        assert item.envelope == _record_body(mesh, "relay", taken_id)
    left = [mesh.nodes["relay"].store.get(i) for i in ids]
    assert all(i is None or i.envelope is None for i in left)  # back on disk after custody
    for item in left:  # the copies it kept were written again, with the body read back
        if item is not None:
            value = mesh.persisted["relay"][(RecordKind.ENVELOPE, item.envelope_id)]
            (state,) = decode_records(value, STORAGE_RECORDS, NodeConfig().wire)
            assert isinstance(state, CarriedEnvelopeState)
            assert state.copies == item.copies
            assert state.envelope == _record_body(mesh, "carol", item.envelope_id)


def test_a_restart_keeps_carried_mail_with_its_body_on_disk() -> None:
    mesh = _mesh()
    ids = _carried(mesh)
    mesh.stop("relay")
    relay = mesh.start("relay")
    assert [i.envelope_id for i in relay.store.items()] == ids
    assert all(i.envelope is None for i in relay.store.items())
    mesh.start("bob")
    mesh.connect("relay", "bob")
    assert len(mesh.of_type("bob", MessageReceived)) == 3


def test_a_body_gone_from_disk_ends_that_transfer_only_with_a_clear_drop() -> None:
    mesh = _mesh()
    ids = _carried(mesh)
    gone = ids[1]
    del mesh.persisted["relay"][(RecordKind.ENVELOPE, gone)]  # a damaged store: the row is gone
    mesh.start("bob")
    mesh.connect("relay", "bob")
    assert mesh.linked("relay", "bob")  # nothing was closed
    drops = [(e.envelope_id, e.reason) for e in mesh.of_type("relay", EnvelopeDropped)]
    assert (gone, DropReason.UNREADABLE) in drops
    assert gone not in mesh.nodes["relay"].store
    assert len(mesh.of_type("bob", MessageReceived)) == 2  # the others went through
    relay = mesh.nodes["relay"]
    assert not any(gone in s.in_flight for s in relay._state.sessions.values())


def test_carried_mail_that_becomes_ours_is_opened_from_disk() -> None:
    """Counters 4 and 5 reach bob first, beyond his window of 4: he carries them (their bodies
    on disk once committed). Counters 0-3 slide his window over them: he opens them from the
    records read back, and lets the carried copies go."""
    mesh, envelopes, bob = notes_beyond_a_window(BODIES_ON_DISK)
    relay = mesh.inject("bob", mesh.stranger("relay"))
    relay.transfer(envelopes[4:])
    carried = [envelope_id(e) for e in envelopes[4:]]
    assert all(bob.store.get(i) is not None for i in carried)
    assert all(bob.store.get(i).envelope is None for i in carried)  # type: ignore[union-attr]
    relay.transfer(envelopes[:4])
    assert sorted(mesh.envelopes_loaded["bob"]) == sorted(carried)
    got = sorted(r.body for r in mesh.of_type("bob", MessageReceived))
    assert got == [f"note {n}" for n in range(6)]
    assert not any(i in bob.store for i in carried)
    assert bob._state.body_loads == {}
