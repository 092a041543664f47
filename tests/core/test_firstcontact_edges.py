"""First-contact refusals that need a hand-made envelope: authentic bytes around a malformed
sender identity, bad padding or an inner plaintext over our limit are refused with the
reason; sealing refuses slots, expiries and degenerate keys; the opened-ids memory is bounded."""

from __future__ import annotations

import dataclasses

import nacl.bindings
import pytest

from meshmsg.config import MessageLimits
from meshmsg.core.envelope import MAX_EXPIRY_AT, SUITE, VERSION, Envelope, parse_envelope
from meshmsg.core.firstcontact import (
    _HEADER,
    OVERHEAD_BYTES,
    PERSON_FC_ID,
    PERSON_FC_MSG,
    FirstContactIndex,
    _aead_seal,
    open_first_contact,
    seal_first_contact,
)
from meshmsg.core.identity import Identity
from meshmsg.core.keyschedule import kdf, x25519
from meshmsg.errors import InvalidMessage, LocalProtocolError
from meshmsg.sim.rng import SeededRng

LIMITS = MessageLimits()
NOW = 1_000 * 86_400.0
ALICE = Identity.generate(SeededRng(1, "fc-edge"))
CAROL = Identity.generate(SeededRng(2, "fc-edge"))


def _craft(sender_bytes: bytes, padded: bytes) -> Envelope:
    """Seal exactly as the sender does, but with the given sender block and padded inner."""
    secret = b"\x11" * 32
    ephemeral = nacl.bindings.crypto_scalarmult_base(secret)
    es = x25519(secret, CAROL.public.e2e_key)
    ss = x25519(ALICE.e2e_private, CAROL.public.e2e_key)
    ctx = ephemeral + CAROL.public.identity_key + CAROL.public.e2e_key
    nonce, tag, expiry = b"n" * 24, b"t" * 16, int(NOW) + 3600
    head = _HEADER.pack(VERSION, SUITE, tag, expiry, nonce) + ephemeral
    head += _aead_seal(sender_bytes, head, nonce, kdf(PERSON_FC_ID, es, ctx))
    k_msg = kdf(PERSON_FC_MSG, es + ss, ctx, sender_bytes)
    data = head + _aead_seal(padded, head, nonce, k_msg)
    return Envelope(data=data, tag=tag, expiry_at=expiry, nonce=nonce)


def _open(envelope: Envelope, limits: MessageLimits = LIMITS) -> bytes:
    return open_first_contact(envelope, recipient=CAROL, limits=limits).inner


def test_a_hand_made_envelope_opens_like_a_sealed_one() -> None:
    padded = nacl.bindings.sodium_pad(b"hello", 64)
    assert _open(_craft(ALICE.public.to_bytes(), padded)) == b"hello"


def test_an_authentic_envelope_with_a_malformed_sender_identity_is_refused() -> None:
    broken = bytearray(ALICE.public.to_bytes())
    broken[-1] ^= 1  # the device certificate no longer verifies
    padded = nacl.bindings.sodium_pad(b"hello", 64)
    with pytest.raises(InvalidMessage, match="bad sender identity"):
        _open(_craft(bytes(broken), padded))


def test_an_authentic_envelope_with_bad_padding_is_refused() -> None:
    with pytest.raises(InvalidMessage, match="bad padding"):
        _open(_craft(ALICE.public.to_bytes(), bytes(64)))  # no 0x80 marker at all


def test_an_inner_plaintext_over_our_limit_is_refused() -> None:
    data = seal_first_contact(
        sender=ALICE, recipient=CAROL.public, inner=bytes(2_000), now=NOW, ttl_s=3600,
        rng=SeededRng(3, "big"), limits=LIMITS, slots=16,
    ).envelope  # fmt: skip
    small = dataclasses.replace(LIMITS, max_inner_bytes=1_000)
    with pytest.raises(InvalidMessage, match="inner plaintext over 1000 bytes"):
        _open(parse_envelope(data), small)
    assert _open(parse_envelope(data)) == bytes(2_000)


def test_an_envelope_too_small_to_hold_a_first_contact_is_refused() -> None:
    tiny = Envelope(data=bytes(OVERHEAD_BYTES), tag=b"t" * 16, expiry_at=0, nonce=b"n" * 24)
    with pytest.raises(InvalidMessage, match="too small for first contact"):
        _open(tiny)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"slots": 0}, "slots must be in 1..256"),
        ({"slots": 257}, "slots must be in 1..256"),
        ({"now": float(MAX_EXPIRY_AT)}, "expiry out of range"),
        ({"recipient": dataclasses.replace(CAROL.public, e2e_key=bytes(32))}, "cannot seal"),
    ],
)
def test_sealing_refuses_bad_slots_expiries_and_degenerate_keys(
    changes: dict[str, object], reason: str
) -> None:
    arguments: dict[str, object] = {
        "sender": ALICE, "recipient": CAROL.public, "inner": b"x", "now": NOW, "ttl_s": 3600,
        "rng": SeededRng(4, "seal"), "limits": LIMITS, "slots": 16,
    }  # fmt: skip
    arguments.update(changes)
    with pytest.raises(LocalProtocolError, match=reason):
        seal_first_contact(**arguments)  # type: ignore[arg-type]


def test_the_memory_of_opened_envelopes_forgets_the_oldest() -> None:
    index = FirstContactIndex(CAROL.public, LIMITS, 16)
    for n in range(3):
        index.remember_opened(bytes([n]) * 16, limit=2)
    assert [index.opened(bytes([n]) * 16) for n in range(3)] == [False, True, True]
