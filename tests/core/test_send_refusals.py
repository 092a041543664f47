"""Sending refuses what it cannot send and lets go of what waited too long: an oversized body
or a TTL out of range leaves nothing behind, and mail that expired while it waited for pairing
is never sealed."""

from __future__ import annotations

import pytest

from meshmsg.core.events import MessageReceived
from meshmsg.errors import InvalidMessage, LocalProtocolError
from tests.helpers import Mesh


def test_an_oversized_body_or_a_bad_ttl_is_refused_and_nothing_is_kept() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    alice = mesh.nodes["alice"]
    limits = alice.config.message
    with pytest.raises(InvalidMessage, match=f"message body over {limits.max_body_bytes} bytes"):
        alice.send_message(mesh.peer_id("bob"), "x" * (limits.max_body_bytes + 1), now=mesh.now)
    for ttl in (0.0, -5.0, limits.max_ttl_s + 1):
        with pytest.raises(LocalProtocolError, match="ttl must be within"):
            alice.send_message(mesh.peer_id("bob"), "hi", ttl_s=ttl, now=mesh.now)
    mesh.run()
    assert alice.conversations.with_peer(mesh.peer_id("bob")) == []
    assert len(alice.store) == 0
    with pytest.raises(LocalProtocolError):
        alice.send_message(b"\x09" * 16, "to nobody", now=mesh.now)


def test_mail_that_expired_while_waiting_for_keys_is_never_sealed() -> None:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    alice = mesh.nodes["alice"]
    contact = alice.contacts.get(mesh.peer_id("bob"))
    assert contact is not None
    contact.exchanging = True  # a key exchange under way: sealing waits
    stale = alice.send_message(mesh.peer_id("bob"), "too late", ttl_s=60, now=mesh.now)
    fresh = alice.send_message(mesh.peer_id("bob"), "in time", now=mesh.now)
    mesh.run()
    mesh.advance(120)
    contact.exchanging = False
    mesh.connect("alice", "bob")
    mesh.advance(10)
    assert [e.body for e in mesh.of_type("bob", MessageReceived)] == ["in time"]
    late = alice.conversations.get(stale)
    sent = alice.conversations.get(fresh)
    assert late is not None
    assert sent is not None
    assert not late.sealed
    assert sent.sealed
