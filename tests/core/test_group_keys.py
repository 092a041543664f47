"""Sender chains and group envelopes: sealing once, opening per member, rotation, deletion."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest

from meshmsg.config import GroupLimits, MessageLimits
from meshmsg.core.envelope import Envelope, open_envelope, parse_envelope, seal_envelope
from meshmsg.core.groups.keyring import GroupKeys, chain_key, key_record
from meshmsg.core.groups.senderkeys import PERSON_MSG, chain_at, group_tag
from meshmsg.core.keyschedule import kdf, receive_window, u32
from meshmsg.errors import GroupError, InvalidMessage
from meshmsg.sim.rng import SeededRng

MSG = MessageLimits()
LIM = GroupLimits()
DAY = 86_400.0
T0 = 1_000 * DAY + 3_600.0
GROUP = b"\x42" * 32
EPOCH0, EPOCH1 = b"\x00" * 16, b"\x01" * 16
ALICE, BOB, CAROL = b"\xa1" * 32, b"\xb0" * 32, b"\xc0" * 32


def keys(me: bytes) -> GroupKeys:
    return GroupKeys(GROUP, me, LIM, MSG)


def send(sender: GroupKeys, body: bytes, now: float, rng: SeededRng, epoch: bytes = EPOCH0):
    chain, fresh = sender.sender(epoch_id=epoch, rng=rng, now=now)
    share = chain.share()
    envelope, _token = chain.seal(body, now=now, ttl_s=DAY, rng=rng, limits=MSG)
    return parse_envelope(envelope), share, fresh


def receive(receiver: GroupKeys, envelope: Envelope, now: float) -> bytes | None:
    match = receiver.lookup(envelope.tag)
    if match is None:
        return None
    return receiver.open(envelope, match, now)


def test_one_envelope_opens_for_every_member_and_only_once() -> None:
    rng = SeededRng(1)
    alice, bob, carol = keys(ALICE), keys(BOB), keys(CAROL)
    env, share, fresh = send(alice, b"hello", T0, rng)
    assert fresh
    for member in (bob, carol):
        assert member.install(share, T0)
        assert receive(member, env, T0) == b"hello"
        assert receive(member, env, T0) is None  # a duplicate is not recognised again
    env2, share2, fresh2 = send(alice, b"again", T0 + 5, rng)
    assert not fresh2
    assert not bob.install(share2, T0)  # same generation: old news
    assert receive(bob, env2, T0 + 5) == b"again"


def test_out_of_order_within_the_window() -> None:
    rng = SeededRng(2)
    alice, bob = keys(ALICE), keys(BOB)
    envs = []
    for i in range(10):
        env, share, _ = send(alice, bytes([i]), T0 + i, rng)
        envs.append(env)
        if i == 0:
            bob.install(share, T0)
    got = [receive(bob, e, T0 + 20) for e in reversed(envs)]
    assert got == [bytes([i]) for i in reversed(range(10))]


def test_a_member_given_the_chain_later_reads_from_then_not_before() -> None:
    rng = SeededRng(3)
    alice, bob, late = keys(ALICE), keys(BOB), keys(CAROL)
    old, share, _ = send(alice, b"before", T0, rng)
    bob.install(share, T0)
    chain = alice.own
    assert chain is not None
    late.install(chain.share(), T0 + 1)  # carol is added now
    new, _, _ = send(alice, b"after", T0 + 2, rng)
    assert receive(late, old, T0 + 2) is None
    assert receive(late, new, T0 + 2) == b"after"
    # even knowing the counter, its chain cannot reach back: the step is one way
    own = late.chains[(ALICE, 0)]
    with pytest.raises(InvalidMessage, match="before we were given"):
        own.open(old, own.anchor, 0, MSG)


def test_a_removed_member_with_its_whole_state_opens_nothing_of_the_next_epoch() -> None:
    rng = SeededRng(4)
    alice, bob, mallory = keys(ALICE), keys(BOB), keys(CAROL)
    env, share, _ = send(alice, b"shared", T0, rng)
    for m in (bob, mallory):
        m.install(share, T0)
        assert receive(m, env, T0) == b"shared"
    stolen = copy.deepcopy(mallory)  # everything mallory ever held
    # mallory is removed: a new epoch, so alice's next message starts a fresh generation
    secret, share1, fresh = send(alice, b"after removal", T0 + 60, rng, epoch=EPOCH1)
    assert fresh
    bob.install(share1, T0 + 60)  # only remaining members get the new chain
    assert receive(bob, secret, T0 + 60) == b"after removal"
    assert stolen.lookup(secret.tag) is None
    for chain in stolen.chains.values():  # brute force with every key the copy can derive
        for period in chain.periods(T0 + 60, MSG):
            start, first, _ = chain.keys_at(period)
            for counter in range(first, 64):
                key = kdf(PERSON_MSG, chain_at(start, first, counter), u32(counter))
                with pytest.raises(InvalidMessage):
                    open_envelope(secret, key, MSG)


def test_another_member_cannot_forge_mail_as_the_sender() -> None:
    rng = SeededRng(5)
    alice, bob, carol = keys(ALICE), keys(BOB), keys(CAROL)
    _, share, _ = send(alice, b"x", T0, rng)
    bob.install(share, T0)
    carol.install(share, T0)
    # carol holds alice's chain: she can derive the next key and tag, but not sign
    chain = carol.chains[(ALICE, 0)]
    start, first, tag_key = chain.keys_at(chain.anchor)
    key = kdf(PERSON_MSG, chain_at(start, first, 1), u32(1))
    forged = seal_envelope(key=key, tag=group_tag(tag_key, 1), expiry_at=int(T0 + DAY),
                           inner=b"\x00" * 64 + b"pay me", rng=rng, limits=MSG)  # fmt: skip
    with pytest.raises(InvalidMessage, match="signature"):
        receive(bob, parse_envelope(forged), T0)


def test_rotation_on_schedule_and_after_many_messages() -> None:
    rng = SeededRng(6)
    alice = keys(ALICE)
    send(alice, b"a", T0, rng)
    assert alice.own is not None
    assert not alice.own.due(T0 + 1, EPOCH0, LIM)
    assert alice.own.due(T0 + LIM.rotation_interval_s, EPOCH0, LIM)
    assert alice.own.due(T0 + 1, EPOCH1, LIM)
    small = GroupKeys(GROUP, ALICE, GroupLimits(rotation_after_messages=3), MSG)
    generations = [send(small, b"m", T0 + i, rng)[1].generation for i in range(7)]
    assert generations == [0, 0, 0, 1, 1, 1, 2]


def test_old_keys_go_when_mail_can_no_longer_be_in_flight() -> None:
    rng = SeededRng(7)
    alice, bob = keys(ALICE), keys(BOB)
    env, share, _ = send(alice, b"late", T0, rng)
    bob.install(share, T0)
    w = receive_window(MSG)
    assert not bob.advance(T0 + (w - 1) * DAY)  # still inside the window: kept
    assert bob.lookup(env.tag) is not None
    assert bob.advance(T0 + w * DAY)  # that period left the window: its keys are gone
    assert bob.lookup(env.tag) is None
    # a replaced generation goes entirely once its last period left the window
    _, share1, _ = send(alice, b"new", T0 + w * DAY, rng, epoch=EPOCH1)
    bob.install(share1, T0 + w * DAY)
    assert (ALICE, 0) in bob.chains
    bob.advance(T0 + (2 * w + 2) * DAY)
    assert (ALICE, 0) not in bob.chains
    assert (ALICE, 1) in bob.chains


def test_the_sender_keeps_no_key_of_a_sent_message() -> None:
    rng = SeededRng(8)
    alice = keys(ALICE)
    env, share, _ = send(alice, b"gone", T0, rng)
    own = alice.own
    assert own is not None
    used = kdf(PERSON_MSG, share.chain, u32(share.first))
    state = key_record(own.share())
    assert used not in (own.chain, own.next_key, own.tag_key)
    assert share.chain not in (state.chain, state.next_key)
    with pytest.raises(InvalidMessage):  # its current chain does not open the sent message
        open_envelope(env, kdf(PERSON_MSG, own.chain, u32(0)), MSG)


def test_forgetting_a_removed_member_drops_its_chains() -> None:
    rng = SeededRng(9)
    alice, bob = keys(ALICE), keys(BOB)
    env, share, _ = send(alice, b"x", T0, rng)
    bob.install(share, T0)
    bob.forget_sender(ALICE, T0)
    assert bob.lookup(env.tag) is None
    assert not bob.chains


def test_keys_persist_and_restore() -> None:
    rng = SeededRng(10)
    alice, bob = keys(ALICE), keys(BOB)
    first, share, _ = send(alice, b"one", T0, rng)
    bob.install(share, T0)
    assert receive(bob, first, T0) == b"one"
    second, _, _ = send(alice, b"two", T0 + 1, rng)
    bob2, alice2 = keys(BOB), keys(ALICE)
    bob2.restore(None, bob.receive_states(), T0 + 1)
    alice2.restore(alice.sender_state(), [], T0 + 1)
    assert set(bob2.tags()) == set(bob.tags())
    assert receive(bob2, first, T0 + 1) is None  # received stays received
    assert receive(bob2, second, T0 + 1) == b"two"
    third, _, fresh = send(alice2, b"three", T0 + 2, rng)
    assert not fresh
    assert receive(bob2, third, T0 + 2) == b"three"
    assert chain_key(GROUP, ALICE, key_record(share)) == share


def test_a_period_s_counters_are_bounded() -> None:
    rng = SeededRng(11)
    msg = MessageLimits(max_messages_per_period=2)
    alice = GroupKeys(GROUP, ALICE, GroupLimits(rotation_after_messages=10), msg)
    chain, _ = alice.sender(epoch_id=EPOCH0, rng=rng, now=T0)
    chain.seal(b"1", now=T0, ttl_s=DAY, rng=rng, limits=msg)
    chain.seal(b"2", now=T0, ttl_s=DAY, rng=rng, limits=msg)
    with pytest.raises(GroupError, match="used up"):
        chain.seal(b"3", now=T0, ttl_s=DAY, rng=rng, limits=msg)
    chain.seal(b"4", now=T0 + DAY, ttl_s=DAY, rng=rng, limits=msg)  # next period: fine


def test_refreshing_one_sender_gives_the_tags_of_a_full_refresh() -> None:
    rng = SeededRng(12)
    alice, carol, bob = keys(ALICE), keys(CAROL), keys(BOB)
    envelopes = []
    for sender in (alice, carol):
        env, share, _ = send(sender, b"x", T0, rng)
        bob.install(share, T0)
        envelopes.append(env)
    receive(bob, envelopes[0], T0)
    partial = set(bob.tags())
    bob.refresh(T0)
    assert set(bob.tags()) == partial
    assert len(partial) == 2 * 2 * LIM.tag_window  # two chains, periods P and P+F, slid


def test_a_key_from_before_anything_we_accept_is_refused_and_an_old_one_starts_at_the_window() -> (
    None
):
    """Fuzzing found a GroupKey of period 0 costing minutes of derivations (one per day since
    1970, for each day of the window). A key whose generation was replaced before anything we
    still accept was sealed is refused; one from before the window is taken from the window's
    first period on, and its mail in the window still opens."""
    rng = SeededRng(11)
    alice, bob = keys(ALICE), keys(BOB)
    w = receive_window(MSG)
    rotation = math.ceil(LIM.rotation_interval_s / DAY)
    env, share, _ = send(alice, b"sealed on the first day", T0, rng)
    ancient = dataclasses.replace(share, period=share.period - (w + rotation))
    later = T0 + (w - 1) * DAY  # the first day is the window's oldest
    assert not bob.install(ancient, later)
    assert bob.install(share, later)
    assert receive(bob, env, later) == b"sealed on the first day"
    carol = keys(CAROL)
    assert carol.install(share, T0 + (w + 2) * DAY)  # from before the window, still useful
    assert carol.chains[(ALICE, 0)].anchor == share.period + 3
