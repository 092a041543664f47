"""The pairwise channel's stored key state is parsed strictly: every truncation and any damage
is a KeystoreError (never another exception), and whatever damaged bytes still parse encode
back to a state that parses to the same bytes (no half-read state survives a restart)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmsg.config import MessageLimits
from meshmsg.core.e2e import ContactChannel, Opened
from meshmsg.errors import KeystoreError
from meshmsg.sim.rng import SeededRng
from tests.core.e2e_fixtures import DAY, T0, heal, make_pair

LIMITS = MessageLimits()


def _busy_states() -> list[bytes]:
    """bob with counters still awaited; then both sides after a heal and days passing."""
    rng = SeededRng(5, "channel-state")
    alice, bob = make_pair(rng)
    sealed = [alice.channel.seal(bytes([n]), T0, LIMITS.default_ttl_s, rng) for n in range(5)]
    for n in (3, 0, 4):  # 1 and 2 never arrive: skipped counters are kept
        assert isinstance(bob.open(sealed[n].envelope, T0 + 1), Opened)
    with_gaps = bob.channel.to_bytes()  # counters 1 and 2 still awaited in its window
    heal(rng, LIMITS, alice, bob, T0 + DAY, T0 + DAY)
    late = alice.channel.seal(b"after heal", T0 + DAY, LIMITS.default_ttl_s, rng)
    assert isinstance(bob.open(late.envelope, T0 + DAY + 1), Opened)
    for side in (alice, bob):
        side.channel.advance(T0 + 3 * DAY)
    return [with_gaps, alice.channel.to_bytes(), bob.channel.to_bytes()]


STATES = _busy_states()


def _reparse(data: bytes) -> bytes:
    return ContactChannel.from_bytes(data, limits=LIMITS).to_bytes()


def test_busy_states_round_trip_exactly() -> None:
    for data in STATES:
        assert _reparse(data) == data


def test_every_truncation_is_a_keystore_error() -> None:
    for data in STATES:
        for cut in range(len(data)):
            with pytest.raises(KeystoreError):
                ContactChannel.from_bytes(data[:cut], limits=LIMITS)
        with pytest.raises(KeystoreError, match="trailing bytes"):
            ContactChannel.from_bytes(data + b"\x00", limits=LIMITS)


@settings(max_examples=150, deadline=None)
@given(which=st.integers(0, 2), at=st.integers(0, 10_000), value=st.integers(0, 255))
def test_damaged_states_are_refused_or_parse_to_a_consistent_state(
    which: int, at: int, value: int
) -> None:
    data = bytearray(STATES[which])
    data[at % len(data)] = value
    try:
        again = _reparse(bytes(data))
    except KeystoreError:
        return
    assert _reparse(again) == again


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_are_a_keystore_error(data: bytes) -> None:
    with pytest.raises(KeystoreError):
        ContactChannel.from_bytes(data, limits=LIMITS)


def test_a_state_over_smaller_limits_is_refused() -> None:
    """Limits lowered in the configuration: a stored state over them is refused, not trusted."""
    for data in STATES:
        with pytest.raises(KeystoreError, match="epochs, over the limit of 0"):
            ContactChannel.from_bytes(data, limits=MessageLimits(max_epochs_retained=0))
