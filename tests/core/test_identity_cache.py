"""The handshake's identity-proof cache: verified once, never trusted blindly, bounded."""

from __future__ import annotations

import dataclasses

import pytest

from meshmsg.config import NodeConfig
from meshmsg.core.exchange.dispatch import Exchange
from meshmsg.core.exchange.meeting import Meeting
from meshmsg.core.identity import Identity, PublicIdentity
from meshmsg.core.link import PeerHandshake
from meshmsg.core.outbox import Outbox
from meshmsg.core.records import IdentityProof
from meshmsg.core.state import NodeState
from meshmsg.errors import HandshakeError
from meshmsg.sim.rng import SeededRng


def proof_of(public: PublicIdentity, *, certificate: bytes | None = None) -> PeerHandshake:
    data = public.to_bytes()
    if certificate is not None:
        data = data[: len(data) - len(certificate)] + certificate
    return PeerHandshake(
        remote_static=public.noise_key, handshake_hash=bytes(64),
        records=(IdentityProof(public=data),),
    )  # fmt: skip


def strangers(count: int) -> list[PublicIdentity]:
    return [Identity.generate(SeededRng(7, f"stranger:{i}")).public for i in range(count)]


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Records the identity key of every certificate check."""
    checked: list[bytes] = []
    original = PublicIdentity.verify

    def counting(self: PublicIdentity) -> None:
        checked.append(self.identity_key)
        original(self)

    monkeypatch.setattr(PublicIdentity, "verify", counting)
    return checked


def exchange_with_cache(size: int) -> Meeting:
    """The meeting part of a node whose identity-proof cache holds ``size`` proofs."""
    base = NodeConfig()
    config = base.replace(link=dataclasses.replace(base.link, verified_identity_cache=size))
    rng = SeededRng(7, "me")
    state = NodeState.empty(identity=Identity.generate(rng), config=config, rng=rng)
    return Exchange(state, Outbox(0.0)).meeting


def test_a_peer_met_again_is_verified_once(verifications: list[bytes]) -> None:
    exchange = exchange_with_cache(8)
    peer = strangers(1)[0]
    first = exchange.peer_identity(proof_of(peer))
    again = exchange.peer_identity(proof_of(peer))
    assert first == again == peer
    assert verifications == [peer.identity_key]


def test_a_forged_proof_is_refused_every_time(verifications: list[bytes]) -> None:
    exchange = exchange_with_cache(8)
    peer = strangers(1)[0]
    exchange.peer_identity(proof_of(peer))  # the genuine proof is now cached
    forged = bytes([peer.certificate[0] ^ 1]) + peer.certificate[1:]
    for _ in range(3):
        with pytest.raises(HandshakeError, match="bad identity proof"):
            exchange.peer_identity(proof_of(peer, certificate=forged))
    assert len(verifications) == 1 + 3  # each forged copy was checked, none cached


def test_the_cache_forgets_the_least_recently_used(verifications: list[bytes]) -> None:
    exchange = exchange_with_cache(2)
    a, b, c = strangers(3)
    for peer in (a, b, a, c):  # a is used again after b, so b is the oldest when c comes
        exchange.peer_identity(proof_of(peer))
    assert verifications == [a.identity_key, b.identity_key, c.identity_key]
    exchange.peer_identity(proof_of(a))
    exchange.peer_identity(proof_of(b))
    assert verifications[3:] == [b.identity_key]


def test_a_zero_sized_cache_verifies_every_time(verifications: list[bytes]) -> None:
    exchange = exchange_with_cache(0)
    peer = strangers(1)[0]
    for _ in range(3):
        assert exchange.peer_identity(proof_of(peer)) == peer
    assert len(verifications) == 3
