"""Two contacts with paired channels, each side with its own node-wide TagIndex."""

from __future__ import annotations

from dataclasses import dataclass

from meshmsg.config import MessageLimits
from meshmsg.core.e2e import (
    ContactChannel,
    Expired,
    HealResult,
    Opened,
    TagIndex,
    new_key_share,
)
from meshmsg.core.envelope import parse_envelope
from meshmsg.core.rng import Rng

IK_A = bytes([1]) * 32  # sorts lower: this side is "A"
IK_B = bytes([2]) * 32
HANDSHAKE_HASH = bytes(range(64))
T0 = 1_750_000_000.0
DAY = 86_400.0


@dataclass(slots=True)
class Side:
    name: bytes  # the peer id the *other* side files this one under
    ik: bytes
    channel: ContactChannel
    index: TagIndex
    peer: bytes  # the peer id this side files its contact under

    def open(self, envelope: bytes, now: float) -> Opened | Expired | None:
        return self.channel.open(parse_envelope(envelope), now)

    def restart(self, limits: MessageLimits) -> None:
        """Replace the channel by a copy restored from its bytes, in a fresh index."""
        self.channel = ContactChannel.from_bytes(self.channel.to_bytes(), limits=limits)
        self.index = TagIndex()
        self.channel.register(self.index, self.peer)


def make_pair(rng: Rng, now: float = T0, limits: MessageLimits | None = None) -> tuple[Side, Side]:
    """Pair alice (A) and bob (B) at ``now``; both clocks agree."""
    limits = limits or MessageLimits()
    return pair_at(rng, limits, now, now)


def pair_at(rng: Rng, limits: MessageLimits, now_a: float, now_b: float) -> tuple[Side, Side]:
    secret_a, share_a = new_key_share(rng, now_a, limits)
    secret_b, share_b = new_key_share(rng, now_b, limits)
    a = ContactChannel.pair(
        our_ik=IK_A, their_ik=IK_B, our_secret=secret_a, ours=share_a, theirs=share_b,
        handshake_hash=HANDSHAKE_HASH, now=now_a, limits=limits,
    )  # fmt: skip
    b = ContactChannel.pair(
        our_ik=IK_B, their_ik=IK_A, our_secret=secret_b, ours=share_b, theirs=share_a,
        handshake_hash=HANDSHAKE_HASH, now=now_b, limits=limits,
    )  # fmt: skip
    alice = Side(name=b"alice", ik=IK_A, channel=a, index=TagIndex(), peer=b"bob")
    bob = Side(name=b"bob", ik=IK_B, channel=b, index=TagIndex(), peer=b"alice")
    alice.channel.register(alice.index, alice.peer)
    bob.channel.register(bob.index, bob.peer)
    return alice, bob


def heal(
    rng: Rng,
    limits: MessageLimits,
    x: Side,
    y: Side,
    now_x: float,
    now_y: float,
    *,
    y_completes: bool = True,
    confirm: bool = True,
) -> tuple[HealResult, HealResult | None]:
    """Run a meeting's heal. ``y_completes=False``: y never receives x's share (link lost)."""
    secret_x, share_x = new_key_share(rng, now_x, limits, x.channel)
    secret_y, share_y = new_key_share(rng, now_y, limits, y.channel)
    rx = x.channel.heal(
        our_secret=secret_x, ours=share_x, theirs=share_y, handshake_hash=HANDSHAKE_HASH,
        now=now_x,
    )  # fmt: skip
    if not y_completes:
        return rx, None
    ry = y.channel.heal(
        our_secret=secret_y, ours=share_y, theirs=share_x, handshake_hash=HANDSHAKE_HASH,
        now=now_y,
    )  # fmt: skip
    if confirm:
        assert x.channel.confirm(y.channel.confirmation)
        assert y.channel.confirm(x.channel.confirmation)
    return rx, ry
