"""B+ channels: round trips, forward secrecy, healing, replay, tamper, windows, persistence."""

from __future__ import annotations

import dataclasses
import math

import pytest

from meshmsg.config import MessageLimits
from meshmsg.core.e2e import (
    ContactChannel,
    Expired,
    KeyShare,
    MatchKind,
    Opened,
    Sealed,
    TagIndex,
    can_heal,
    future_periods,
    heal_base,
    new_key_share,
    receive_window,
    tag_budget,
)
from meshmsg.core.envelope import (
    HEADER_BYTES,
    open_envelope,
    parse_envelope,
    token_matches,
)
from meshmsg.core.keyschedule import (
    MAX_EPOCH,
    PERSON_PAIR,
    epoch_keys,
    kdf,
    meeting_periods,
    message_key,
    transcript,
    x25519,
)
from meshmsg.errors import (
    DecodeError,
    HandshakeError,
    InvalidMessage,
    KeystoreError,
    LocalProtocolError,
)
from meshmsg.sim.rng import SeededRng
from tests.core.e2e_fixtures import (
    DAY,
    HANDSHAKE_HASH,
    IK_A,
    IK_B,
    T0,
    Side,
    heal,
    make_pair,
    pair_at,
)

LIMITS = MessageLimits()
W = receive_window(LIMITS)
F = future_periods(LIMITS)


def send(side: Side, inner: bytes, now: float, rng: SeededRng) -> Sealed:
    return side.channel.seal(inner, now, LIMITS.default_ttl_s, rng)


def opened(result: Opened | Expired | None) -> Opened:
    assert isinstance(result, Opened)
    return result


def all_receive_keys(channel: ContactChannel) -> list[bytes]:
    return [s.key for e in channel._recv.values() for s in e.slots.values()]


def can_decrypt_with_any_key(channel: ContactChannel, envelope: bytes) -> bool:
    """Brute force over every key the state holds and every counter it could mean."""
    parsed = parse_envelope(envelope)
    for key in [*all_receive_keys(channel), channel._send.key]:
        for counter in range(LIMITS.tag_window * 2):
            try:
                open_envelope(parsed, message_key(key, counter), LIMITS)
            except InvalidMessage:
                continue
            return True
    return False


# ----------------------------------------------------------------------------- round trips


def test_windows_follow_the_formula() -> None:
    assert (W, F) == (3, 1)  # office: ceil((1 d + 1 d) / 1 d) + 1, ceil(1 d / 1 d)
    crisis = MessageLimits(latency_budget_s=14 * DAY, default_ttl_s=14 * DAY)
    assert receive_window(crisis) == 16


def test_round_trip_both_directions(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    assert alice.channel.confirmation == bob.channel.confirmation
    for sender, receiver in ((alice, bob), (bob, alice)):
        sealed = send(sender, b"hi from " + sender.name, T0 + 1, rng)
        match = receiver.index.lookup(sealed.tag)
        assert match is not None
        assert (match.peer_id, match.kind, match.counter) == (sender.name, MatchKind.LIVE, 0)
        result = opened(receiver.open(sealed.envelope, T0 + 2))
        assert result.inner == b"hi from " + sender.name
        assert result.token == sealed.token
        assert token_matches(sealed.tag, result.token)
        assert (result.epoch, result.period, result.counter) == (0, sealed.period, 0)
        assert result.expiry_at == sealed.expiry_at
    # Expiry is taken from the channel's monotonic clock: bob had already seen T0 + 2.
    assert sealed.expiry_at == math.ceil(T0 + 2 + LIMITS.default_ttl_s)


def test_directions_have_separate_keys(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    assert alice.channel._send.key != bob.channel._send.key
    assert alice.channel._send.key == bob.channel._recv[0].slots[alice.channel.period].key
    sealed = send(alice, b"x", T0, rng)
    assert alice.index.lookup(sealed.tag) is None
    with pytest.raises(InvalidMessage, match="not recognised"):
        alice.open(sealed.envelope, T0)  # reflected back to its sender


def test_envelopes_are_bucket_sized_whatever_the_inner_length(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    sizes = {len(send(alice, bytes(n), T0, rng).envelope) for n in (0, 1, 100, 189)}
    assert sizes == {256}
    big = send(alice, bytes(LIMITS.max_inner_bytes), T0, rng)
    assert len(big.envelope) == 40_960
    assert opened(bob.open(big.envelope, T0)).inner == bytes(LIMITS.max_inner_bytes)


def test_ttl_must_fit_the_latency_budget(rng: SeededRng) -> None:
    alice, _ = make_pair(rng)
    for ttl in (0.0, -1.0, LIMITS.latency_budget_s + 1):
        with pytest.raises(LocalProtocolError, match="ttl"):
            alice.channel.seal(b"x", T0, ttl, rng)
    assert alice.channel.seal(b"x", T0, LIMITS.latency_budget_s, rng).counter == 0


def test_the_per_period_cap_refuses_then_the_next_period_resets(rng: SeededRng) -> None:
    limits = MessageLimits(max_messages_per_period=3)
    alice, bob = make_pair(rng, limits=limits)
    for i in range(3):
        alice.channel.seal(b"x", T0, 60, rng)
        assert alice.channel.capacity(T0) == 2 - i
    with pytest.raises(LocalProtocolError, match="max_messages_per_period"):
        alice.channel.seal(b"x", T0, 60, rng)
    assert alice.channel.capacity(T0 + DAY) == 3
    sealed = alice.channel.seal(b"next", T0 + DAY, 60, rng)
    assert opened(bob.open(sealed.envelope, T0 + DAY)).inner == b"next"


# ----------------------------------------------------------------------------- forward secrecy


def test_past_keys_are_deleted_and_absent_from_the_bytes(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    p0 = bob.channel.period
    captured = send(alice, b"secret", T0, rng).envelope  # an adversary records it in transit
    old_recv_key = bob.channel._recv[0].slots[p0].key
    old_tag_key = bob.channel._recv[0].slots[p0].tag_key
    old_send_key = alice.channel._send.key
    msg_key = message_key(old_recv_key, 0)
    later = T0 + W * DAY
    bob.channel.advance(later)
    alice.channel.advance(later)
    assert p0 not in bob.channel._recv[0].slots
    for secret in (old_recv_key, old_tag_key, old_send_key, msg_key):
        assert secret not in bob.channel.to_bytes()
        assert secret not in alice.channel.to_bytes()
    copy = ContactChannel.from_bytes(bob.channel.to_bytes(), limits=LIMITS)
    assert not can_decrypt_with_any_key(copy, captured)
    assert not can_decrypt_with_any_key(bob.channel, captured)
    # ... but the envelope is still recognised as one we lost, never silently.
    late = bob.open(captured, later)
    assert isinstance(late, Expired)
    assert late.period == p0


def test_the_pairing_root_is_forgotten(rng: SeededRng) -> None:
    secret_a, share_a = new_key_share(rng, T0, LIMITS)
    _, share_b = new_key_share(rng, T0, LIMITS)
    alice = ContactChannel.pair(
        our_ik=IK_A, their_ik=IK_B, our_secret=secret_a, ours=share_a, theirs=share_b,
        handshake_hash=HANDSHAKE_HASH, now=T0, limits=LIMITS,
    )  # fmt: skip
    root = kdf(
        PERSON_PAIR, x25519(secret_a, share_b.public), IK_A, IK_B,
        transcript(share_a, share_b, HANDSHAKE_HASH),
    )  # fmt: skip
    keys = epoch_keys(root, 0, share_a.period, we_are_a=True)
    assert alice._send.key == keys.send_key  # the documented schedule, recomputed
    state = alice.to_bytes()
    assert root not in state
    assert keys.heal_key in state  # kept until the next heal: it is all PCS chains on


def test_the_sender_keeps_only_the_current_period(rng: SeededRng) -> None:
    alice, _ = make_pair(rng)
    first = alice.channel._send.key
    alice.channel.advance(T0 + DAY)
    assert alice.channel._send.key != first
    assert first not in alice.channel.to_bytes()


# ----------------------------------------------------------------------------- healing


def test_a_state_stolen_before_a_heal_cannot_read_what_follows(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    stolen_bob = bob.channel.to_bytes()
    stolen_alice = alice.channel.to_bytes()
    heal(rng, LIMITS, alice, bob, T0 + 10, T0 + 10)
    after = send(alice, b"after the meeting", T0 + 20, rng)
    back = send(bob, b"reply after the meeting", T0 + 20, rng)
    assert opened(bob.open(after.envelope, T0 + 21)).inner == b"after the meeting"
    assert opened(alice.open(back.envelope, T0 + 21)).inner == b"reply after the meeting"
    for stolen, envelope in ((stolen_bob, after.envelope), (stolen_alice, back.envelope)):
        thief = ContactChannel.from_bytes(stolen, limits=LIMITS)
        index = TagIndex()
        thief.register(index, b"victim's contact")
        assert index.lookup(parse_envelope(envelope).tag) is None
        thief.advance(T0 + 2 * DAY)  # ratcheting forward does not help either
        assert not can_decrypt_with_any_key(thief, envelope)
    # A stolen sender state cannot forge into the new epoch: its next tag is not the real one.
    thief_alice = ContactChannel.from_bytes(stolen_alice, limits=LIMITS)
    forged = thief_alice.seal(b"forged", T0 + 20, 60, rng)
    with pytest.raises(InvalidMessage):
        bob.open(forged.envelope, T0 + 22)


def test_mail_sealed_before_a_heal_still_opens_after_it(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    before = [send(alice, f"m{i}".encode(), T0, rng) for i in range(3)]
    heal(rng, LIMITS, alice, bob, T0 + 10, T0 + 10)
    assert alice.channel.epoch == bob.channel.epoch == 1
    assert sorted(bob.channel._recv) == [0, 1]
    for i, sealed in enumerate(reversed(before)):
        assert opened(bob.open(sealed.envelope, T0 + 20)).inner == f"m{2 - i}".encode()
    # All three reported counts arrived: the old epoch is dropped at once, keys and tags.
    assert sorted(bob.channel._recv) == [1]
    assert all(m is None or m.epoch == 1 for m in map(bob.index.lookup, bob.index._entries))


def test_old_epochs_are_kept_while_mail_is_outstanding(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    outstanding = send(alice, b"slow", T0, rng)
    heal(rng, LIMITS, alice, bob, T0 + 10, T0 + 10)
    assert sorted(bob.channel._recv) == [0, 1]
    # After confirmation epoch 0 recognises only counter 0 in its period: the window shrank.
    assert bob.index.count(b"alice") < 2 * 2 * LIMITS.tag_window
    assert opened(bob.open(outstanding.envelope, T0 + 20)).inner == b"slow"
    assert sorted(bob.channel._recv) == [1]


def test_too_many_epochs_report_the_oldest_mail_as_expired(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    outstanding = send(alice, b"very slow", T0, rng)
    for i in range(LIMITS.max_epochs_retained):
        send(alice, b"keeps each epoch busy", T0 + i, rng)  # never delivered
        heal(rng, LIMITS, alice, bob, T0 + i + 0.5, T0 + i + 0.5)
    assert len(bob.channel._recv) == LIMITS.max_epochs_retained
    assert 0 not in bob.channel._recv
    assert isinstance(bob.open(outstanding.envelope, T0 + 100), Expired)


def test_a_heal_only_one_side_completed_is_repaired_at_the_next_meeting(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    # Alice completes the heal, Bob never receives her share (the link dropped).
    ra, rb = heal(rng, LIMITS, alice, bob, T0 + 10, T0 + 10, y_completes=False)
    assert rb is None
    assert (alice.channel.epoch, bob.channel.epoch) == (1, 0)
    lost = send(alice, b"sealed in an epoch bob never had", T0 + 20, rng)
    kept = send(bob, b"bob still seals in epoch 0", T0 + 20, rng)
    with pytest.raises(InvalidMessage):
        bob.open(lost.envelope, T0 + 21)
    assert opened(alice.open(kept.envelope, T0 + 21)).inner == b"bob still seals in epoch 0"
    # Next meeting: both still hold epoch 0's heal key, so they heal from there.
    _, share_a = new_key_share(rng, T0 + 30, LIMITS, alice.channel)
    _, share_b = new_key_share(rng, T0 + 30, LIMITS, bob.channel)
    assert heal_base(share_a, share_b) == 0
    ra, rb = heal(rng, LIMITS, alice, bob, T0 + 30, T0 + 30)
    assert (ra.epoch, ra.abandoned_epoch) == (2, 1)  # the Node re-sends what it sealed in 1
    assert rb is not None
    assert (rb.epoch, rb.abandoned_epoch) == (2, None)
    after = send(alice, b"healed", T0 + 40, rng)
    assert opened(bob.open(after.envelope, T0 + 41)).inner == b"healed"


def test_crossed_one_sided_heals_still_find_a_common_base(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    heal(rng, LIMITS, alice, bob, T0 + 1, T0 + 1, y_completes=False)  # alice: 1
    heal(rng, LIMITS, bob, alice, T0 + 2, T0 + 2, y_completes=False)  # bob: 2, from base 0
    _, share_a = new_key_share(rng, T0 + 3, LIMITS, alice.channel)
    _, share_b = new_key_share(rng, T0 + 3, LIMITS, bob.channel)
    assert (share_a.epoch, share_a.previous, share_b.epoch, share_b.previous) == (1, 0, 2, 0)
    assert can_heal(share_a, share_b)
    heal(rng, LIMITS, alice, bob, T0 + 3, T0 + 3)
    assert alice.channel.epoch == bob.channel.epoch == 3
    sealed = send(bob, b"ok", T0 + 4, rng)
    assert opened(alice.open(sealed.envelope, T0 + 4)).inner == b"ok"


def test_a_stale_final_count_never_trims_later_mail(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    first = send(alice, b"m0", T0, rng)
    heal(rng, LIMITS, bob, alice, T0 + 1, T0 + 1, y_completes=False)  # bob learns count 1
    later = [send(alice, f"m{i}".encode(), T0 + 2, rng) for i in (1, 2)]  # alice still in 0
    heal(rng, LIMITS, alice, bob, T0 + 3, T0 + 3, y_completes=False)  # alice leaves 0 alone
    heal(rng, LIMITS, alice, bob, T0 + 4, T0 + 4)  # both complete and confirm
    assert alice.channel.epoch == bob.channel.epoch == 3
    # Bob's count of 1 for epoch 0 was stale: m1 and m2 must still open.
    for sealed in (*later, first):
        assert isinstance(bob.open(sealed.envelope, T0 + 5), Opened)


def test_a_lost_confirmation_never_leaves_an_old_epoch_open_for_a_stolen_state(
    rng: SeededRng,
) -> None:
    """Issue 11, finding 1: the forging sequence of the external review."""
    alice, bob = make_pair(rng)
    stolen_bob = bob.channel.to_bytes()  # a thief copies Bob's state in epoch 0
    heal(rng, LIMITS, alice, bob, T0 + 10, T0 + 10, confirm=False)  # KeyConfirm lost
    heal(rng, LIMITS, alice, bob, T0 + 2 * DAY, T0 + 2 * DAY)  # two days later, confirmed
    fresh = send(bob, b"in the new epoch", T0 + 2 * DAY + 60, rng)
    assert opened(alice.open(fresh.envelope, T0 + 2 * DAY + 61)).inner == b"in the new epoch"
    later = T0 + 32 * DAY
    thief = ContactChannel.from_bytes(stolen_bob, limits=LIMITS)
    forged = thief.seal(b"forged as Bob", later, 60, rng)
    with pytest.raises(InvalidMessage):
        alice.open(forged.envelope, later)
    assert sorted(alice.channel._recv) == [2]  # epochs 0 and 1 are closed and gone


def test_a_peer_in_our_epoch_at_the_next_heal_confirms_the_last_one(rng: SeededRng) -> None:
    """No KeyConfirm and no message in the new epoch: the next share still proves the peer
    completed the heal, so its final counts for the older epoch apply exactly."""
    alice, bob = make_pair(rng)
    slow = send(alice, b"sealed before the first heal", T0, rng)
    heal(rng, LIMITS, alice, bob, T0 + 10, T0 + 10, confirm=False)
    heal(rng, LIMITS, alice, bob, T0 + 20, T0 + 20, confirm=False)
    epoch0 = bob.channel._recv[0]
    assert epoch0.last is not None
    assert [s.limit for s in epoch0.slots.values()] == [1]  # trimmed to the one message sealed
    assert opened(bob.open(slow.envelope, T0 + 30)).inner == b"sealed before the first heal"
    assert 0 not in bob.channel._recv  # every reported message arrived: the epoch is gone


def test_without_a_common_heal_key_the_node_pairs_afresh(rng: SeededRng) -> None:
    alice, _ = make_pair(rng)
    secret, share_a = new_key_share(rng, T0, LIMITS, alice.channel)
    far = dataclasses.replace(share_a, epoch=7, previous=5)
    assert not can_heal(share_a, far)
    with pytest.raises(LocalProtocolError, match="pair afresh"):
        alice.channel.heal(
            our_secret=secret, ours=share_a, theirs=far, handshake_hash=HANDSHAKE_HASH, now=T0
        )


def test_a_share_at_the_last_epoch_makes_both_sides_pair_afresh(rng: SeededRng) -> None:
    """Issue 11, finding 8: epoch 0xFFFFFFFE parsed, then max + 1 wedged the channel."""
    alice, _ = make_pair(rng)
    secret_a, share_a = new_key_share(rng, T0, LIMITS, alice.channel)
    top = dataclasses.replace(share_a, epoch=MAX_EPOCH, previous=0)
    assert KeyShare.from_bytes(top.to_bytes()) == top  # still a valid share
    assert heal_base(share_a, top) is None
    assert heal_base(top, share_a) is None
    with pytest.raises(LocalProtocolError, match="pair afresh"):
        alice.channel.heal(
            our_secret=secret_a, ours=share_a, theirs=top, handshake_hash=HANDSHAKE_HASH, now=T0
        )
    one_below = dataclasses.replace(top, epoch=MAX_EPOCH - 1)
    assert heal_base(share_a, one_below) == 0  # the last epoch itself can still be healed into


def test_sealing_between_share_and_heal_is_refused(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    secret_a, share_a = new_key_share(rng, T0, LIMITS, alice.channel)
    _, share_b = new_key_share(rng, T0, LIMITS, bob.channel)
    send(alice, b"sneaks in", T0, rng)
    with pytest.raises(LocalProtocolError, match="stale"):
        alice.channel.heal(
            our_secret=secret_a, ours=share_a, theirs=share_b, handshake_hash=HANDSHAKE_HASH,
            now=T0,
        )  # fmt: skip


def test_a_wrong_confirmation_changes_nothing(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    send(alice, b"outstanding", T0, rng)
    heal(rng, LIMITS, alice, bob, T0 + 1, T0 + 1, confirm=False)
    before = bob.channel.to_bytes()
    assert not bob.channel.confirm(bytes(16))
    assert bob.channel.to_bytes() == before
    assert bob.channel.confirm(alice.channel.confirmation)
    assert bob.channel.to_bytes() != before  # epoch 0 trimmed to the reported count


# ----------------------------------------------------------------------------- pairing checks


def test_pairing_rejects_bad_inputs(rng: SeededRng) -> None:
    secret_a, share_a = new_key_share(rng, T0, LIMITS)
    _, share_b = new_key_share(rng, T0, LIMITS)

    def pair(**changes: object) -> ContactChannel:
        args: dict[str, object] = {
            "our_ik": IK_A, "their_ik": IK_B, "our_secret": secret_a, "ours": share_a,
            "theirs": share_b, "handshake_hash": HANDSHAKE_HASH, "now": T0, "limits": LIMITS,
        }  # fmt: skip
        args.update(changes)
        return ContactChannel.pair(**args)  # type: ignore[arg-type]

    with pytest.raises(LocalProtocolError, match="distinct"):
        pair(their_ik=IK_A)
    with pytest.raises(LocalProtocolError, match="our_secret"):
        pair(our_secret=bytes(32))
    with pytest.raises(LocalProtocolError, match="our_secret"):
        pair(our_secret=b"short")
    with pytest.raises(HandshakeError, match="degenerate"):
        pair(theirs=dataclasses.replace(share_b, public=bytes(32)))
    too_far = meeting_periods(LIMITS) + 1  # beyond F a meeting still pairs (issue 11 #2)
    with pytest.raises(HandshakeError, match="clock"):
        pair(theirs=dataclasses.replace(share_b, period=share_b.period + too_far))
    assert pair(theirs=dataclasses.replace(share_b, period=share_b.period + F + 1)).period >= 0
    with pytest.raises(HandshakeError, match="bad key share"):
        pair(theirs=dataclasses.replace(share_b, random=b"short"))
    with pytest.raises(LocalProtocolError, match="handshake hash"):
        pair(handshake_hash=b"")
    assert pair(theirs=dataclasses.replace(share_b, period=share_b.period + F)).period >= 0


def test_skewed_clocks_within_the_allowance_work(rng: SeededRng) -> None:
    alice, bob = pair_at(rng, LIMITS, T0, T0 + LIMITS.clock_skew_s)  # bob's clock a day fast
    fast = send(bob, b"from the future", T0 + LIMITS.clock_skew_s, rng)
    slow = send(alice, b"from the past", T0, rng)
    assert opened(alice.open(fast.envelope, T0)).inner == b"from the future"
    assert opened(bob.open(slow.envelope, T0 + LIMITS.clock_skew_s)).inner == b"from the past"


def test_a_clock_jump_of_a_year_is_repaired_at_the_next_meeting(rng: SeededRng) -> None:
    """Issue 11, finding 2: one reading a year ahead pushed the monotonic channel clock ahead
    for good; every later heal raised HandshakeError and mail never flowed again."""
    alice, bob = make_pair(rng)
    alice.channel.advance(T0 + 365 * DAY)  # one wrong reading; the wall clock is right again
    to_bob = send(alice, b"sealed a year ahead", T0 + 60, rng)
    to_alice = send(bob, b"sealed while alice was ahead", T0 + 60, rng)
    with pytest.raises(InvalidMessage):
        bob.open(to_bob.envelope, T0 + 61)
    assert not isinstance(alice.open(to_alice.envelope, T0 + 61), Opened)
    ra, rb = heal(rng, LIMITS, alice, bob, T0 + 120, T0 + 120)
    assert rb is not None
    # Both re-send what they sealed in epoch 0: part of it lies outside the other's windows.
    assert (ra.abandoned_epoch, rb.abandoned_epoch) == (0, 0)
    assert alice.channel.period == bob.channel.period == math.floor(T0 / DAY)
    after = send(alice, b"after the meeting", T0 + 180, rng)
    back = send(bob, b"reply", T0 + 180, rng)
    assert opened(bob.open(after.envelope, T0 + 181)).inner == b"after the meeting"
    assert opened(alice.open(back.envelope, T0 + 181)).inner == b"reply"
    alice.restart(LIMITS)  # the repaired clock is what is persisted
    assert alice.channel.clock < T0 + DAY


def test_a_meeting_with_a_wrong_clock_still_heals_and_repairs_nothing(rng: SeededRng) -> None:
    """While alice's wall clock is still a year ahead, the meeting heals (the link stays up)
    but her channel stays where her clock is: the Node reports the skew instead."""
    alice, bob = make_pair(rng)
    year = 365 * DAY
    ra, _ = heal(rng, LIMITS, alice, bob, T0 + year, T0 + 60)
    assert ra.abandoned_epoch == 0
    assert alice.channel.period - bob.channel.period == 365


def test_key_share_bytes_round_trip_and_are_strict(rng: SeededRng) -> None:
    alice, _ = make_pair(rng)
    send(alice, b"x", T0, rng)
    _, share = new_key_share(rng, T0, LIMITS, alice.channel)
    assert share.final_counts == ((alice.channel.period, 1),)
    data = share.to_bytes()
    assert KeyShare.from_bytes(data) == share
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            KeyShare.from_bytes(data[:cut])
    for bad in (
        b"\x02" + data[1:],  # version
        data + b"\x00",  # trailing
        dataclasses.replace(share, previous=share.epoch).to_bytes(),
        dataclasses.replace(share, final_counts=((share.period + 1, 1),)).to_bytes(),
        dataclasses.replace(share, final_counts=((share.period, 0),)).to_bytes(),
        dataclasses.replace(share, counts_from=share.period + 1).to_bytes(),
    ):
        with pytest.raises(DecodeError):
            KeyShare.from_bytes(bad)


# ----------------------------------------------------------------------------- replay and tamper


def test_ten_thousand_replays_are_never_accepted_twice(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    carol_index = TagIndex()
    carol, _ = make_pair(SeededRng(99, "carol"))  # an unrelated contact of bob's
    carol.channel.register(carol_index, b"carol")
    envelopes = [send(alice, f"{i}".encode(), T0, rng).envelope for i in range(100)]
    first = [opened(bob.open(e, T0 + 1)).inner for e in envelopes]
    assert first == [f"{i}".encode() for i in range(100)]
    accepted = attempts = 0

    def replay(side: Side, envelope: bytes, now: float) -> None:
        nonlocal accepted, attempts
        attempts += 1
        try:
            if isinstance(side.open(envelope, now), Opened):
                accepted += 1
        except InvalidMessage:
            pass

    for round_ in range(20):
        for e in envelopes:
            replay(bob, e, T0 + 2 + round_)  # the same relay, again and again
    bob.restart(LIMITS)
    for round_ in range(20):
        for e in envelopes:
            replay(bob, e, T0 + 30 + round_)  # after a restart through bytes
    for round_ in range(20):
        for e in envelopes:
            replay(bob, e, T0 + DAY + round_)  # after a period rollover
    for round_ in range(20):
        for e in envelopes:
            replay(alice, e, T0 + round_)  # reflected to the sender
    for round_ in range(20):
        for e in envelopes:
            replay(carol, e, T0 + round_)  # to another contact's channel
    assert attempts == 10_000
    assert accepted == 0


def test_an_in_window_duplicate_is_a_quiet_no_op(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    sealed = send(alice, b"once", T0, rng)
    assert opened(bob.open(sealed.envelope, T0)).inner == b"once"
    match = bob.index.lookup(sealed.tag)
    assert match is not None
    assert match.kind is MatchKind.RECEIVED
    assert bob.open(sealed.envelope, T0) is None
    bob.restart(LIMITS)
    assert bob.open(sealed.envelope, T0) is None


def test_tampered_envelopes_are_rejected_and_do_not_burn_the_counter(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    for n in (10, 700):
        sealed = send(alice, bytes(n), T0, rng)
        data = sealed.envelope
        body = range(HEADER_BYTES * 8, len(data) * 8)
        bits = [*range(HEADER_BYTES * 8), *(body[rng.randbelow(len(body))] for _ in range(300))]
        for bit in bits:
            bad = bytearray(data)
            bad[bit // 8] ^= 1 << (bit % 8)
            with pytest.raises(InvalidMessage):
                bob.open(bytes(bad), T0)
        assert opened(bob.open(data, T0)).inner == bytes(n)


# ----------------------------------------------------------------------------- windows


def test_out_of_order_delivery_within_the_window(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    sealed = [send(alice, f"{i}".encode(), T0, rng) for i in range(60)]
    order = list(range(60))
    for i in range(59, 0, -1):  # Fisher-Yates with the seeded rng
        j = rng.randbelow(i + 1)
        order[i], order[j] = order[j], order[i]
    got = [opened(bob.open(sealed[i].envelope, T0)).inner for i in order]
    assert got == [f"{i}".encode() for i in order]


def test_a_lost_message_does_not_stall_the_period(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    sealed = [send(alice, f"{i}".encode(), T0, rng) for i in range(200)]
    for i, s in enumerate(sealed[1:], start=1):  # counter 0 is lost in transit ...
        assert opened(bob.open(s.envelope, T0)).inner == f"{i}".encode()
    # ... yet everything after it was recognised, and the straggler still opens.
    assert opened(bob.open(sealed[0].envelope, T0)).inner == b"0"


def test_overtaken_counters_past_the_skip_cap_are_reported_expired(rng: SeededRng) -> None:
    limits = MessageLimits(tag_window=8, max_skipped_per_period=2)
    alice, bob = make_pair(rng, limits=limits)
    sealed = [alice.channel.seal(f"{i}".encode(), T0, 60, rng) for i in range(12)]
    for s in sealed[3:]:
        assert isinstance(bob.open(s.envelope, T0), Opened)
    assert isinstance(bob.open(sealed[0].envelope, T0), Expired)  # evicted from the skip list
    assert opened(bob.open(sealed[1].envelope, T0)).inner == b"1"
    assert opened(bob.open(sealed[2].envelope, T0)).inner == b"2"
    assert bob.open(sealed[0].envelope, T0) is None  # reported once


def test_a_late_envelope_after_key_deletion_is_expired_then_quiet(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    sealed = send(alice, b"late", T0, rng)
    bob.channel.advance(T0 + W * DAY)
    match = bob.index.lookup(sealed.tag)
    assert match is not None
    assert match.kind is MatchKind.EXPIRED
    late = bob.open(sealed.envelope, T0 + W * DAY)
    assert isinstance(late, Expired)
    assert (late.epoch, late.counter) == (0, 0)
    assert bob.open(sealed.envelope, T0 + W * DAY) is None
    bob.channel.advance(T0 + W * DAY + LIMITS.expired_tag_grace_s)
    assert bob.index.lookup(sealed.tag) is None  # the grace time is over


def test_deleted_periods_keep_gaps_and_a_short_tail_as_expired_tags(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    sealed = [send(alice, bytes(i), T0, rng) for i in range(12)]
    bob.open(sealed[1].envelope, T0)  # counter 0 is a certain gap; 2.. may never have been sent
    bob.channel.advance(T0 + W * DAY)
    kinds = [bob.index.lookup(s.tag) for s in sealed]
    tail = LIMITS.expired_tail_counters
    expired = [i for i, m in enumerate(kinds) if m is not None and m.kind is MatchKind.EXPIRED]
    assert expired == [0, *range(2, 2 + tail)]
    assert len(bob.channel._expired) == 1 + tail


def test_the_period_is_monotonic_when_the_clock_goes_back(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    alice.channel.advance(T0 + 2 * DAY)
    p = alice.channel.period
    assert not alice.channel.advance(T0 - 10 * DAY)
    assert alice.channel.period == p
    sealed = alice.channel.seal(b"x", T0, 60, rng)
    assert sealed.period == p
    restored = ContactChannel.from_bytes(alice.channel.to_bytes(), limits=LIMITS)
    restored.advance(T0)
    assert restored.period == p
    assert opened(bob.open(sealed.envelope, T0 + 2 * DAY)).inner == b"x"


def test_advance_reports_changes_and_deadlines(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    p = bob.channel.period
    assert bob.channel.next_deadline() == (p + 1) * DAY
    assert not bob.channel.advance(T0 + 1)
    assert bob.channel.advance((p + 1) * DAY)
    send(alice, b"x", T0, rng)
    bob.channel.advance((p + W + 1) * DAY)  # period p's tags become expired tags
    assert bob.channel.next_deadline() <= (p + W + 1) * DAY + LIMITS.expired_tag_grace_s


# ----------------------------------------------------------------------------- persistence


def test_restored_state_behaves_identically(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    sealed = [send(alice, f"{i}".encode(), T0, rng) for i in range(40)]
    for s in sealed[5:30:2]:
        bob.open(s.envelope, T0)
    heal(rng, LIMITS, alice, bob, T0 + 5, T0 + 5, confirm=False)
    bob.channel.advance(T0 + DAY)
    data = bob.channel.to_bytes()
    twin = Side(name=b"bob", ik=IK_B, channel=ContactChannel.from_bytes(data, limits=LIMITS),
                index=TagIndex(), peer=b"alice")  # fmt: skip
    twin.channel.register(twin.index, b"alice")
    assert twin.channel.to_bytes() == data
    assert twin.index._entries == bob.index._entries
    for s in [*sealed, *sealed]:
        results = []
        for side in (bob, twin):
            try:
                results.append(side.open(s.envelope, T0 + DAY))
            except InvalidMessage as exc:
                results.append(str(exc))  # type: ignore[arg-type]
        assert results[0] == results[1]
    one, two = SeededRng(5, "same"), SeededRng(5, "same")
    assert (
        bob.channel.seal(b"z", T0 + DAY, 60, one).envelope
        == twin.channel.seal(b"z", T0 + DAY, 60, two).envelope
    )
    assert twin.channel.to_bytes() == bob.channel.to_bytes()


def test_damaged_state_is_a_keystore_error(rng: SeededRng) -> None:
    alice, _ = make_pair(rng)
    send(alice, b"x", T0, rng)
    data = alice.channel.to_bytes()
    for cut in range(0, len(data), 7):
        with pytest.raises(KeystoreError):
            ContactChannel.from_bytes(data[:cut], limits=LIMITS)
    for bad in (data + b"\x00", b"XXch" + data[4:], data[:4] + b"\x02" + data[5:]):
        with pytest.raises(KeystoreError):
            ContactChannel.from_bytes(bad, limits=LIMITS)
    with pytest.raises(KeystoreError, match="over the limit"):
        ContactChannel.from_bytes(data, limits=MessageLimits(max_epochs_retained=0))


def test_state_and_index_stay_within_their_bounds(rng: SeededRng) -> None:
    alice, bob = make_pair(rng)
    now = T0
    for step in range(30):
        for i in range(25):
            sealed = send(alice, bytes(i), now, rng)
            if (step + i) % 3:
                bob.open(sealed.envelope, now)
        if step % 4 == 0:
            heal(rng, LIMITS, alice, bob, now, now, confirm=step % 8 == 0)
        now += DAY / 3
        bob.channel.advance(now)
        assert bob.index.count(b"alice") <= tag_budget(LIMITS)
        assert len(bob.channel._recv) <= LIMITS.max_epochs_retained
        assert len(bob.channel.to_bytes()) < 40_000


# ----------------------------------------------------------------------------- tag index


def test_the_tag_index_bounds_contacts_and_forgets_them(rng: SeededRng) -> None:
    index = TagIndex(max_contacts=1)
    alice, bob = make_pair(rng)
    bob.channel.register(index, b"alice")
    assert index.count(b"alice") == len(index) > 0
    assert len(bob.index) == 0  # the tags moved
    _, other = make_pair(SeededRng(7, "other"))
    held = len(other.index)
    with pytest.raises(LocalProtocolError, match="full"):
        other.channel.register(index, b"someone else")
    assert len(other.index) == held  # nothing moved: the channel still works where it was
    index.forget_contact(b"alice")
    assert len(index) == 0
    assert index.lookup(send(alice, b"x", T0, rng).tag) is None


def test_openable_tags_are_exactly_the_live_tags_of_the_channel(rng: SeededRng) -> None:
    """What Exchange probes the store with after a heal: every LIVE tag, skipped ones too."""
    limits = MessageLimits(tag_window=8, max_skipped_per_period=4)
    alice, bob = make_pair(rng, limits=limits)
    sealed = [alice.channel.seal(f"{i}".encode(), T0, 60, rng) for i in range(8)]
    for s in sealed[2:]:  # counters 0 and 1 are overtaken: skipped, still openable
        assert isinstance(bob.open(s.envelope, T0), Opened)

    def live() -> set[bytes]:
        tags = set(bob.channel.openable_tags())
        return {t for t in tags if (m := bob.index.lookup(t)) and m.kind is MatchKind.LIVE}

    every_live = {t for t, e in bob.index.entries_of(b"alice") if e[4] is MatchKind.LIVE}
    assert live() == every_live
    assert {sealed[0].tag, sealed[1].tag} <= live()
    assert not {s.tag for s in sealed[2:]} & live()  # received: no longer LIVE
