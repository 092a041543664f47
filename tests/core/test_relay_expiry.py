"""Relays keep an envelope's expiry in their own clock (issue #11, finding 2's relay case).

A ``TimedTransfer`` carries the envelope's remaining lifetime, so a relay never compares the
originator's clock with its own; what a peer claims is capped at ``max_ttl_s``. A peer without
capability 3 still sends ``Transfer``, judged by the envelope's absolute expiry as before.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmsg.config import NodeConfig
from meshmsg.core import e2e
from meshmsg.core.envelope import envelope_id, parse_envelope
from meshmsg.core.events import MessageReceived
from meshmsg.core.records import MAX_LIFETIME_MS, TextMessage, TimedTransfer, Transfer
from meshmsg.core.wire import encode_records
from meshmsg.sim.rng import SeededRng
from tests.core.node_tools import AttackMesh, own_envelopes

HOUR = 3_600.0
DAY = 24 * HOUR
CONFIG = NodeConfig()
MAX_TTL = CONFIG.message.max_ttl_s


def sealed_envelope(mesh: AttackMesh) -> bytes:
    """An envelope alice sealed to bob with the default TTL, as a relay would be handed it."""
    mesh.befriend("alice", "bob", pair=True)
    mesh.nodes["alice"].send_message(mesh.peer_id("bob"), "via a relay", now=mesh.now)
    mesh.run()
    (envelope,) = own_envelopes(mesh.nodes["alice"])
    return envelope


def timed(envelope: bytes, lifetime_ms: int) -> TimedTransfer:
    return TimedTransfer(
        envelope=envelope, copies=3, hops=1, route_hint=None, lifetime_ms=lifetime_ms
    )


def test_a_relay_whose_clock_is_past_the_envelope_expiry_keeps_it_for_its_lifetime() -> None:
    """Carol's clock is past the envelope's absolute expiry (as a relay's is when the sender's
    clock is slow), yet the copy has a day to live: she takes it and keeps it a day."""
    mesh = AttackMesh(["alice", "bob", "carol"])
    envelope = sealed_envelope(mesh)
    expiry_at = parse_envelope(envelope, buckets=CONFIG.message.envelope_size_buckets).expiry_at
    mesh.now = expiry_at + HOUR  # carol's clock (all nodes share the mesh's) is past it
    alice_as_peer = mesh.inject("carol", mesh.identities["alice"])
    alice_as_peer.send([timed(envelope, int(DAY * 1000))])
    env_id = envelope_id(envelope)
    assert alice_as_peer.custody() == ({env_id}, set())
    item = mesh.nodes["carol"].store.get(env_id)
    assert item is not None
    assert item.expiry_at == pytest.approx(mesh.now + DAY)
    mesh.advance(DAY - 60)
    assert env_id in mesh.nodes["carol"].store
    mesh.advance(120)
    assert env_id not in mesh.nodes["carol"].store


def test_a_transfer_without_a_lifetime_is_still_judged_by_the_envelope_expiry() -> None:
    """A peer without capability 3 sends ``Transfer``: its absolute expiry decides."""
    mesh = AttackMesh(["alice", "bob", "carol"])
    envelope = sealed_envelope(mesh)
    expiry_at = parse_envelope(envelope, buckets=CONFIG.message.envelope_size_buckets).expiry_at
    mesh.now = expiry_at + 1
    old_peer = mesh.inject("carol", mesh.identities["alice"])
    old_peer.send([Transfer(envelope=envelope, copies=3, hops=1, route_hint=None)])
    assert old_peer.custody() == (set(), {envelope_id(envelope)})


@settings(max_examples=25, deadline=None)
@given(lifetime_ms=st.integers(min_value=0, max_value=MAX_LIFETIME_MS))
def test_a_claimed_lifetime_never_pins_storage_beyond_max_ttl(lifetime_ms: int) -> None:
    """Whatever lifetime a peer claims, the copy lives at most ``max_ttl_s`` by our clock, and
    a lifetime of zero is refused as expired."""
    mesh = AttackMesh(["alice", "bob", "carol"])
    envelope = sealed_envelope(mesh)
    env_id = envelope_id(envelope)
    peer = mesh.inject("carol", mesh.stranger("liar"))
    peer.send([timed(envelope, lifetime_ms)])
    item = mesh.nodes["carol"].store.get(env_id)
    if lifetime_ms == 0:
        assert item is None
        assert peer.custody() == (set(), {env_id})
        return
    assert item is not None
    assert item.expiry_at == pytest.approx(mesh.now + min(lifetime_ms / 1000, MAX_TTL))


def test_a_relayed_copy_keeps_its_own_expiry_across_a_restart() -> None:
    mesh = AttackMesh(["alice", "bob", "carol"])
    envelope = sealed_envelope(mesh)
    expiry_at = parse_envelope(envelope, buckets=CONFIG.message.envelope_size_buckets).expiry_at
    mesh.now = expiry_at + HOUR
    mesh.inject("carol", mesh.identities["alice"]).send([timed(envelope, int(5 * HOUR * 1000))])
    env_id = envelope_id(envelope)
    before = mesh.nodes["carol"].store.get(env_id)
    assert before is not None
    mesh.stop("carol")
    carol = mesh.start("carol")
    after = carol.store.get(env_id)
    assert after is not None
    assert after.expiry_at == pytest.approx(before.expiry_at, abs=0.001)
    assert after.expiry_at == pytest.approx(mesh.now + 5 * HOUR, abs=0.001)


def test_nodes_send_the_remaining_lifetime_by_their_own_clock() -> None:
    """Between two current nodes the relay's copy expires when the sender's would: the
    lifetime left at the hand-over (20 h here), measured from it by the relay's clock."""
    mesh = AttackMesh(["alice", "bob", "carol"])
    envelope = sealed_envelope(mesh)
    alice_item = mesh.nodes["alice"].store.get(envelope_id(envelope))
    assert alice_item is not None
    mesh.advance(4 * HOUR)
    left = alice_item.expiry_at - mesh.now
    mesh.connect("alice", "carol")
    item = mesh.nodes["carol"].store.get(envelope_id(envelope))
    assert item is not None
    assert item.expiry_at == pytest.approx(mesh.now + left, abs=0.001)


def test_a_transfer_dated_at_the_end_of_time_is_kept_at_most_max_ttl() -> None:
    """Any u64 expiry parses. Before the cap, ``2**64 - 1`` seconds went into the stored
    record as milliseconds and the relay's ``Persist`` raised (found by the node fuzz
    target); group mail took the same date. Now the envelope's own date is capped at
    ``max_ttl_s`` from now, as a ``TimedTransfer``'s lifetime is."""
    mesh = AttackMesh(["alice", "bob", "carol"])
    forged = bytearray(sealed_envelope(mesh))
    forged[18:26] = (2**64 - 1).to_bytes(8, "big")  # after version, suite and the 16-byte tag
    assert parse_envelope(bytes(forged), buckets=CONFIG.message.envelope_size_buckets).expiry_at
    old_peer = mesh.inject("carol", mesh.identities["alice"])
    old_peer.send([Transfer(envelope=bytes(forged), copies=3, hops=1, route_hint=None)])
    env_id = envelope_id(bytes(forged))
    assert old_peer.custody() == ({env_id}, set())
    item = mesh.nodes["carol"].store.get(env_id)
    assert item is not None
    assert item.expiry_at == pytest.approx(mesh.now + MAX_TTL)


def test_mail_a_contact_dated_at_the_end_of_time_leaves_a_capped_tombstone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The envelope's date is authenticated, but its sender chose it: a contact's mail dated
    ``2**62`` s opened, and its tombstone (the purge token kept to stop copies) took that
    date, which overflows the stored milliseconds. Capped like a relay's copy now."""
    mesh = AttackMesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    channel = mesh.nodes["alice"].contacts.get(mesh.peer_id("bob")).channel
    assert channel is not None
    text = TextMessage(message_id=bytes(16), sent_at=int(mesh.now * 1000), body="forever")
    monkeypatch.setattr(e2e, "expiry_from", lambda now, ttl_s: 2**62)  # alice's own client
    sealed = channel.seal(encode_records([text]), mesh.now, HOUR, SeededRng(1, "forever"))
    monkeypatch.undo()
    alice = mesh.inject("bob", mesh.identities["alice"])
    alice.send([Transfer(envelope=sealed.envelope, copies=1, hops=1, route_hint=None)])
    mesh.run()  # raised in bob's Persist before
    assert [e.body for e in mesh.of_type("bob", MessageReceived)] == ["forever"]
    stones = list(mesh.nodes["bob"]._state.tombstones)
    assert [stone.tag for stone in stones] == [sealed.tag]
    assert all(stone.expiry_at <= mesh.now + MAX_TTL for stone in stones)
