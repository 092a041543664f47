"""Crashes the fuzz targets found, one minimal test each (issue #11, "Fuzzing campaign").

A test marked ``xfail(strict=True)`` documents a crash in a file this campaign does not edit:
it fails (xfail) until the fix lands, and then fails the run (XPASS), so whoever fixes it
removes the mark. The fuzz targets skip exactly these known inputs, so that a long run keeps
looking for new crashes instead of finding the same one again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meshmsg.core.e2e import ContactChannel, new_key_share
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


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="open: found 2026-12-07, see doc")
def test_a_node_program_that_never_goes_quiet() -> None:
    """Found by the ``node`` target (2026-12-07, 19:10 UTC, after ~99 CPU-seconds): two nodes
    fed this program still exchange effects after 2,000 rounds. The same input fails on
    ``5a15d68`` (before that day's claim changes), so it is older; not analysed yet."""
    data = (Path(__file__).parent / "crashes" / "node-not-quiet-5081f9a2").read_bytes()
    run_node_program(data)
