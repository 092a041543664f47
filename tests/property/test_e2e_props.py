"""Properties of B+ channels: a two-contact state machine, and hostile bytes into every parser.

The state machine drives two paired channels with skewed clocks through sends, deliveries in
any order (duplicates and reflections included), time, full and one-sided heals, and restarts
through bytes. It checks: every message is decrypted at most once and only by its recipient;
every message delivered within the latency budget, in an epoch the recipient holds and not
pushed out by ``max_epochs_retained`` newer epochs, is decrypted; tag index and state bytes
stay within their bounds; two sides can always heal (a common heal key survives one-sided
heals). Capped at 200 examples x 30 steps (each step is a few BLAKE2b and AEAD calls; the CI
profile's 1,000 examples would spend minutes on the same paths).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from meshmsg.config import MessageLimits
from meshmsg.core.e2e import (
    ContactChannel,
    KeyShare,
    Opened,
    can_heal,
    future_periods,
    new_key_share,
    receive_window,
    tag_budget,
)
from meshmsg.core.envelope import (
    OVERHEAD_BYTES,
    bucket_for,
    open_envelope,
    parse_envelope,
    seal_envelope,
)
from meshmsg.errors import DecodeError, InvalidMessage, KeystoreError
from meshmsg.sim.rng import SeededRng
from tests.core.e2e_fixtures import T0, Side, heal, make_pair, pair_at

LIMITS = MessageLimits()
R = LIMITS.period_s
SMALL_BUCKETS = LIMITS.envelope_size_buckets[:2]


def state_budget_bytes(limits: MessageLimits) -> int:
    """Largest ``to_bytes()`` the bounds allow (the layout at the top of e2ecodec.py)."""
    span = receive_window(limits) + future_periods(limits) + 1
    counts = 1 + span * 12
    slot = 8 + 32 + 32 + 4 + 4 + 2 + math.ceil(limits.tag_window / 8) + 2
    slot += 4 * limits.max_skipped_per_period
    epoch = 4 + 8 + 8 + 1 + 16 + counts + 1 + span * slot
    send = 4 + 8 + 8 + 32 + 32 + 4 + counts
    fixed = 4 + 1 + 1 + 8 + 4 + 16 + 1 + 2 * 36
    return fixed + send + 1 + limits.max_epochs_retained * epoch + 2 + 41 * limits.max_expired_tags


@dataclass(slots=True)
class Sent:
    ident: int
    sender: str
    envelope: bytes
    sent_at: float  # true time
    epoch: int


class TwoChannels(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sides: dict[str, Side] = {}
        self.sent: list[Sent] = []
        self.decrypted: set[int] = set()
        self.epochs: dict[str, list[int]] = {"a": [0], "b": [0]}
        self.t = T0
        self.skew = 0.0
        self.rng = SeededRng(0)

    @initialize(
        skew=st.floats(-LIMITS.clock_skew_s, LIMITS.clock_skew_s), seed=st.integers(0, 2**32)
    )
    def start(self, skew: float, seed: int) -> None:
        self.skew = skew
        self.rng = SeededRng(seed, "e2e-machine")
        alice, bob = pair_at(self.rng, LIMITS, T0, T0 + skew)
        self.sides = {"a": alice, "b": bob}

    def clock(self, who: str) -> float:
        return self.t + (self.skew if who == "b" else 0.0)

    @staticmethod
    def other(who: str) -> str:
        return "b" if who == "a" else "a"

    @rule(who=st.sampled_from("ab"), size=st.integers(0, 400))
    def send(self, who: str, size: int) -> None:
        ident = len(self.sent)
        inner = ident.to_bytes(4, "big") + bytes(size)
        sealed = self.sides[who].channel.seal(
            inner, self.clock(who), LIMITS.latency_budget_s, self.rng
        )
        assert len(sealed.envelope) == bucket_for(len(inner), LIMITS.envelope_size_buckets)
        self.sent.append(Sent(ident, who, sealed.envelope, self.t, sealed.epoch))

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        msg = data.draw(st.sampled_from(self.sent))
        reflect = data.draw(st.integers(0, 9)) == 0
        to = msg.sender if reflect else self.other(msg.sender)
        try:
            result = self.sides[to].open(msg.envelope, self.clock(to))
        except InvalidMessage:
            result = None
        if isinstance(result, Opened):
            assert to != msg.sender
            assert int.from_bytes(result.inner[:4], "big") == msg.ident
            assert msg.ident not in self.decrypted, "decrypted twice"
            self.decrypted.add(msg.ident)
        elif to != msg.sender and msg.ident not in self.decrypted:
            assert not self.guaranteed(msg, to), f"lost message {msg} ({result})"

    def guaranteed(self, msg: Sent, to: str) -> bool:
        held = self.epochs[to]
        newer = [e for e in held if e > msg.epoch]
        return (
            self.t - msg.sent_at <= LIMITS.latency_budget_s
            and msg.epoch in held
            and len(newer) < LIMITS.max_epochs_retained
        )

    @rule(dt=st.sampled_from([1.0, 600.0, 3_600.0, R / 3, R / 2, R, 2 * R]))
    def wait(self, dt: float) -> None:
        self.t += dt
        for who, side in self.sides.items():
            side.channel.advance(self.clock(who))

    @rule(first=st.sampled_from("ab"), both=st.booleans(), confirm=st.booleans())
    def meet(self, first: str, both: bool, confirm: bool) -> None:
        x, y = self.sides[first], self.sides[self.other(first)]
        _, share_x = new_key_share(SeededRng(1), self.clock(first), LIMITS, x.channel)
        _, share_y = new_key_share(SeededRng(2), self.clock(self.other(first)), LIMITS, y.channel)
        assert can_heal(share_x, share_y)  # one-sided heals never strand the two sides
        rx, ry = heal(
            self.rng, LIMITS, x, y, self.clock(first), self.clock(self.other(first)),
            y_completes=both, confirm=confirm and both,
        )  # fmt: skip
        self.epochs[first].append(rx.epoch)
        if ry is not None:
            assert ry.epoch == rx.epoch
            self.epochs[self.other(first)].append(ry.epoch)

    @rule(who=st.sampled_from("ab"))
    def restart(self, who: str) -> None:
        before = self.sides[who].channel.to_bytes()
        self.sides[who].restart(LIMITS)
        assert self.sides[who].channel.to_bytes() == before

    @invariant()
    def within_bounds(self) -> None:
        for side in self.sides.values():
            assert side.index.count(side.peer) <= tag_budget(LIMITS)
            assert len(side.index) == side.index.count(side.peer)
            assert len(side.channel.to_bytes()) <= state_budget_bytes(LIMITS)
            assert len(side.channel._recv) <= LIMITS.max_epochs_retained
            # Issue 11, finding 1: besides the current epoch, only the one the peer is leaving
            # may stay open (keys derived for every new period); all older ones are closed.
            current = side.channel.epoch
            open_older = [n for n, e in side.channel._recv.items() if e.last is None]
            assert len([n for n in open_older if n != current]) <= 1, open_older


TwoChannels.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestTwoChannels = TwoChannels.TestCase


# ----------------------------------------------------------------------------- single properties

KEY = bytes(32)
TAG = bytes(16)


@given(inner=st.binary(max_size=5_000))
def test_sizes_are_buckets_and_hide_the_length(inner: bytes) -> None:
    rng = SeededRng(len(inner))
    data = seal_envelope(key=KEY, tag=TAG, expiry_at=1, inner=inner, rng=rng, limits=LIMITS)
    assert len(data) == bucket_for(len(inner), LIMITS.envelope_size_buckets)
    assert len(data) - OVERHEAD_BYTES > len(inner)
    assert open_envelope(parse_envelope(data), KEY, LIMITS) == inner


@given(
    data=st.sampled_from(SMALL_BUCKETS).flatmap(lambda n: st.binary(min_size=n, max_size=n))
    | st.binary(max_size=300)
)
def test_hostile_envelopes_raise_only_invalid_message(data: bytes) -> None:
    try:
        envelope = parse_envelope(data)
        open_envelope(envelope, KEY, LIMITS)
    except InvalidMessage:
        return
    raise AssertionError("random bytes authenticated")  # pragma: no cover


@given(data=st.binary(max_size=200))
def test_hostile_key_shares_raise_only_decode_error(data: bytes) -> None:
    try:
        share = KeyShare.from_bytes(data)
    except DecodeError:
        return
    assert KeyShare.from_bytes(share.to_bytes()) == share


_ALICE, _BOB = make_pair(SeededRng(3, "props"))
for _i in range(5):
    _BOB.open(_ALICE.channel.seal(bytes(_i), T0, 60, SeededRng(_i)).envelope, T0)
_ALICE.channel.seal(b"outstanding", T0, 60, SeededRng(9))
heal(SeededRng(4), LIMITS, _ALICE, _BOB, T0 + 1, T0 + 1, confirm=False)
_BOB.channel.advance(T0 + 3 * R)
_STATE = _BOB.channel.to_bytes()


@given(position=st.integers(0, len(_STATE) - 1), value=st.integers(0, 255))
def test_damaged_channel_state_raises_only_keystore_error(position: int, value: int) -> None:
    data = bytearray(_STATE)
    data[position] = value
    try:
        channel = ContactChannel.from_bytes(bytes(data), limits=LIMITS)
    except KeystoreError:
        return
    assert ContactChannel.from_bytes(channel.to_bytes(), limits=LIMITS).to_bytes() == (
        channel.to_bytes()
    )


@settings(max_examples=60, deadline=None)
@given(
    jump=st.floats(0, 4 * 365 * R),
    who=st.sampled_from("ab"),
    back_after=st.floats(0, R),
    seed=st.integers(0, 2**32),
)
def test_any_clock_jump_ahead_is_repaired_by_the_next_meeting(
    jump: float, who: str, back_after: float, seed: int
) -> None:
    """Issue 11, finding 2: one reading up to four years ahead, then the right time again:
    after the next meeting both channels are in step and mail opens both ways."""
    rng = SeededRng(seed, "clock-jump")
    sides = dict(zip("ab", make_pair(rng), strict=True))
    sides[who].channel.advance(T0 + jump)  # the wrong reading
    now = T0 + back_after
    heal(rng, LIMITS, sides["a"], sides["b"], now, now)
    gap = abs(sides["a"].channel.period - sides["b"].channel.period)
    assert gap <= math.ceil(LIMITS.clock_skew_s / R)  # a jump within D is left alone
    for x, y in (("a", "b"), ("b", "a")):
        sealed = sides[x].channel.seal(b"hello", now + 1, 60, rng)
        result = sides[y].open(sealed.envelope, now + 2)
        assert isinstance(result, Opened)
        assert result.inner == b"hello"
