"""Envelope format: exact bucket sizes, strict parsing, tamper rejection, ids and tokens."""

from __future__ import annotations

import dataclasses

import pytest

from meshmsg.config import MessageLimits
from meshmsg.core.envelope import (
    HEADER_BYTES,
    MAX_EXPIRY_AT,
    OVERHEAD_BYTES,
    SUITE,
    VERSION,
    bucket_for,
    check_limits,
    envelope_id,
    expiry_from,
    max_inner_capacity,
    open_envelope,
    parse_envelope,
    seal_envelope,
    tag_of_token,
    token_matches,
)
from meshmsg.errors import ConfigError, InvalidMessage, LocalProtocolError
from meshmsg.sim.rng import SeededRng

LIMITS = MessageLimits()
BUCKETS = LIMITS.envelope_size_buckets
KEY = bytes(range(32))
TAG = bytes(range(100, 116))


def seal(inner: bytes, rng: SeededRng, *, expiry_at: int = 2_000_000_000) -> bytes:
    return seal_envelope(key=KEY, tag=TAG, expiry_at=expiry_at, inner=inner, rng=rng, limits=LIMITS)


def test_round_trip_and_header_fields(rng: SeededRng) -> None:
    data = seal(b"hello", rng, expiry_at=MAX_EXPIRY_AT)
    envelope = parse_envelope(data)
    assert (data[0], data[1]) == (VERSION, SUITE)
    assert envelope.tag == TAG
    assert envelope.expiry_at == MAX_EXPIRY_AT
    assert envelope.header == data[:HEADER_BYTES] == data[:50]
    assert open_envelope(envelope, KEY, LIMITS) == b"hello"


def test_the_layout_is_the_documented_one() -> None:
    assert HEADER_BYTES == 1 + 1 + 16 + 8 + 24
    assert OVERHEAD_BYTES == HEADER_BYTES + 16
    assert max_inner_capacity(BUCKETS) == 40_960 - 67
    assert LIMITS.max_inner_bytes <= max_inner_capacity(BUCKETS)


@pytest.mark.parametrize("bucket", BUCKETS)
def test_sizes_land_exactly_on_buckets(bucket: int, rng: SeededRng) -> None:
    largest_inside = bucket - OVERHEAD_BYTES - 1
    smallest_inside = 0 if bucket == BUCKETS[0] else BUCKETS[BUCKETS.index(bucket) - 1] - 66
    for n in (smallest_inside, (smallest_inside + largest_inside) // 2, largest_inside):
        if n > LIMITS.max_inner_bytes:
            continue
        inner = rng.randbytes(n)
        data = seal(inner, rng)
        assert len(data) == bucket == bucket_for(n, BUCKETS)
        assert open_envelope(parse_envelope(data), KEY, LIMITS) == inner


def test_the_inner_length_is_hidden_within_a_bucket(rng: SeededRng) -> None:
    sizes = {len(seal(rng.randbytes(n), rng)) for n in range(256 - OVERHEAD_BYTES)}
    assert sizes == {256}
    assert len(seal(bytes(256 - OVERHEAD_BYTES), rng)) == 1_024


def test_inner_over_the_limit_is_refused(rng: SeededRng) -> None:
    assert len(seal(bytes(LIMITS.max_inner_bytes), rng)) == 40_960
    with pytest.raises(LocalProtocolError, match="over 34816"):
        seal(bytes(LIMITS.max_inner_bytes + 1), rng)


def test_bad_key_tag_or_expiry_is_refused(rng: SeededRng) -> None:
    with pytest.raises(LocalProtocolError):
        seal_envelope(key=KEY[:31], tag=TAG, expiry_at=1, inner=b"", rng=rng, limits=LIMITS)
    with pytest.raises(LocalProtocolError):
        seal_envelope(key=KEY, tag=TAG[:15], expiry_at=1, inner=b"", rng=rng, limits=LIMITS)
    with pytest.raises(LocalProtocolError):
        seal_envelope(key=KEY, tag=TAG, expiry_at=-1, inner=b"", rng=rng, limits=LIMITS)


@pytest.mark.parametrize("length", [0, 1, 50, 255, 257, 1_023, 40_961, 65_536])
def test_lengths_other_than_buckets_are_rejected(length: int) -> None:
    with pytest.raises(InvalidMessage, match="bucket"):
        parse_envelope(bytes(length))


def test_unknown_version_and_suite_are_rejected(rng: SeededRng) -> None:
    data = bytearray(seal(b"x", rng))
    for offset, value, what in ((0, 2, "version"), (1, 0, "suite"), (1, 2, "suite")):
        bad = bytearray(data)
        bad[offset] = value
        with pytest.raises(InvalidMessage, match=what):
            parse_envelope(bytes(bad))


def test_other_buckets_can_be_configured(rng: SeededRng) -> None:
    limits = MessageLimits(envelope_size_buckets=(128, 512), max_inner_bytes=400)
    data = seal_envelope(key=KEY, tag=TAG, expiry_at=1, inner=b"x", rng=rng, limits=limits)
    assert len(data) == 128
    assert parse_envelope(data, buckets=(128, 512)).tag == TAG
    with pytest.raises(InvalidMessage):
        parse_envelope(data)  # the standard buckets do not include 128


def flipped(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_every_header_bit_flip_and_sampled_body_flips_are_rejected(rng: SeededRng) -> None:
    data = seal(b"attack at dawn", rng)
    body_bits = range(HEADER_BYTES * 8, len(data) * 8)
    sampled = [body_bits[rng.randbelow(len(body_bits))] for _ in range(400)]
    bits = [*range(HEADER_BYTES * 8), *sampled]
    for bit in bits:
        with pytest.raises(InvalidMessage):
            open_envelope(parse_envelope(flipped(data, bit)), KEY, LIMITS)
    assert open_envelope(parse_envelope(data), KEY, LIMITS) == b"attack at dawn"


def test_the_wrong_key_is_rejected(rng: SeededRng) -> None:
    envelope = parse_envelope(seal(b"x", rng))
    with pytest.raises(InvalidMessage, match="authentication"):
        open_envelope(envelope, bytes(32), LIMITS)


def test_an_oversized_inner_from_a_peer_is_rejected(rng: SeededRng) -> None:
    data = seal(bytes(1_000), rng)
    small = dataclasses.replace(LIMITS, max_inner_bytes=999)
    with pytest.raises(InvalidMessage, match="over 999"):
        open_envelope(parse_envelope(data), KEY, small)


def test_envelope_id_is_blake2b_128_of_the_bytes(rng: SeededRng) -> None:
    a, b = seal(b"x", rng), seal(b"x", rng)
    assert len(envelope_id(a)) == 16
    assert envelope_id(a) == envelope_id(bytes(a))
    assert envelope_id(a) != envelope_id(b)  # random nonces: same inner, different envelope


def test_tokens_purge_only_their_own_tag() -> None:
    token = bytes(range(16))
    tag = tag_of_token(token)
    assert token_matches(tag, token)
    assert not token_matches(tag, bytes(16))
    assert not token_matches(tag, token[:15])
    assert not token_matches(tag[:15], token)
    assert tag_of_token(bytes(16)) != tag


def test_expiry_rounds_up_to_whole_seconds() -> None:
    assert expiry_from(100.2, 60) == 161
    assert expiry_from(100.0, 60) == 160


@pytest.mark.parametrize(
    "changes",
    [
        {"envelope_size_buckets": ()},
        {"envelope_size_buckets": (1_024, 256)},
        {"envelope_size_buckets": (256, 256, 1_024)},
        {"envelope_size_buckets": (60, 1_024), "max_inner_bytes": 100},
        {"max_inner_bytes": 40_960},
    ],
)
def test_inconsistent_limits_are_a_config_error(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        check_limits(dataclasses.replace(LIMITS, **changes))  # type: ignore[arg-type]
