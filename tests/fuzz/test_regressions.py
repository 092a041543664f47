"""Crashes the fuzz targets found, one minimal test each (issue #11, "Fuzzing campaign").

A test marked ``xfail(strict=True)`` documents a crash in a file this campaign does not edit:
it fails (xfail) until the fix lands, and then fails the run (XPASS), so whoever fixes it
removes the mark. The fuzz targets skip exactly these known inputs, so that a long run keeps
looking for new crashes instead of finding the same one again.
"""

from __future__ import annotations

from pathlib import Path

from meshmsg.core.e2e import ContactChannel, new_key_share
from meshmsg.core.events import ContactHealed, LinkClosed
from meshmsg.core.keyschedule import MAX_EPOCH, KeyShare
from meshmsg.errors import HandshakeError, LocalProtocolError
from meshmsg.sim.rng import SeededRng
from tests.fuzz.targets import ALICE, BOB, MESSAGE_LIMITS, T0, run_node_program


def test_a_heal_from_the_last_epoch_leaves_a_share_that_parses() -> None:
    """Issue 11 finding 8: a share at epoch 0xFFFFFFFE parsed, and the heal moved the channel to
    0xFFFFFFFF, which a share cannot express (it means "none"). Now the heal is refused (the
    two sides pair afresh instead, ``heal_base``); a heal that went through must leave a share
    that parses."""
    rng = SeededRng(5, "regression-epoch")
    secret, ours = new_key_share(rng, T0, MESSAGE_LIMITS)
    _, theirs = new_key_share(rng, T0, MESSAGE_LIMITS)
    channel = ContactChannel.pair(
        our_ik=ALICE.public.identity_key, their_ik=BOB.public.identity_key, our_secret=secret,
        ours=ours, theirs=theirs, handshake_hash=b"h" * 64, now=T0, limits=MESSAGE_LIMITS,
    )  # fmt: skip
    hostile = KeyShare(public=theirs.public, random=theirs.random, period=theirs.period,
                       epoch=MAX_EPOCH, previous=0)  # fmt: skip
    assert KeyShare.from_bytes(hostile.to_bytes()) == hostile  # what the fuzzer sent: it parses
    secret, ours = new_key_share(rng, T0, MESSAGE_LIMITS, channel)
    try:
        channel.heal(our_secret=secret, ours=ours, theirs=hostile, handshake_hash=b"g" * 64,
                     now=T0)  # fmt: skip
    except (HandshakeError, LocalProtocolError):
        return  # refused: the exchange pairs afresh instead (the fix)
    _, following = new_key_share(rng, T0, MESSAGE_LIMITS, channel)
    assert KeyShare.from_bytes(following.to_bytes()) == following


def test_a_stray_key_exchange_from_a_contact_no_longer_starts_a_heal_loop() -> None:
    """Found by the ``node`` target (2026-12-07, after ~99 CPU-seconds): a share on Alice's
    link that answered nothing made Bob and Alice each take the other's answer for a new live
    heal, and the two never went quiet (2,000 rounds). Now a live heal must follow a confirmed
    exchange and must heal, not pair afresh: Bob closes that one link, and the next meeting
    heals as usual."""
    data = (Path(__file__).parent / "crashes" / "node-not-quiet-5081f9a2").read_bytes()
    world = run_node_program(data)  # raised "did not go quiet" before the fix
    closes = [e for who, e in world.events if who == "bob" and isinstance(e, LinkClosed)]
    assert [e.detail for e in closes if "live KeyExchange" in e.detail] == [
        "a live KeyExchange must heal the channel, not pair afresh"
    ]
    healed = [who for who, e in world.events if isinstance(e, ContactHealed)]
    assert healed[-2:] in (["bob", "alice"], ["alice", "bob"])  # met again and healed
