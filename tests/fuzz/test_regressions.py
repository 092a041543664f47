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
from meshmsg.core.events import ContactHealed, LinkClosed
from meshmsg.core.groups import senderkeys
from meshmsg.core.keyschedule import MAX_EPOCH, KeyShare
from meshmsg.errors import HandshakeError, LocalProtocolError
from meshmsg.sim.rng import SeededRng
from tests.fuzz.group_targets import fuzz_group_ops
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


def test_a_carried_envelope_dated_past_the_u64_milliseconds_no_longer_breaks_the_commit() -> None:
    """Found by the ``node`` target (2026-12-07, after ~8.7 CPU-minutes of a 40-minute run): a
    ``Transfer`` whose envelope expires near ``2**64`` seconds made the relay's record overflow
    its millisecond field (``LocalProtocolError`` out of ``receive_data``). The envelope's own
    date is now capped at ``max_ttl_s`` from now (``envelope.capped_expiry``)."""
    data = (Path(__file__).parent / "crashes" / "node-far-expiry-240f7b2a").read_bytes()
    world = run_node_program(data)  # raised before the fix
    assert all(
        item.expiry_at <= world.now + MESSAGE_LIMITS.max_ttl_s for item in world.node.store.items()
    )


def test_a_group_key_from_an_ancient_period_costs_no_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the ``group_ops`` target (2026-12-07, after ~90 CPU-seconds, as a timeout): a
    member's GroupKey whose period was decades back made the keyring derive every period since
    for every period of the window, about 10^8 BLAKE2b calls (two CPU-minutes per record).
    Now a key older than anything we still accept is refused and a recent one starts at the
    window, and the tags of a chain come from one walk. Counted, not timed."""
    calls = 0
    real_kdf = senderkeys.kdf

    def counting_kdf(person: bytes, key: bytes, *parts: bytes, size: int = 32) -> bytes:
        nonlocal calls
        calls += 1
        return real_kdf(person, key, *parts, size=size)

    monkeypatch.setattr(senderkeys, "kdf", counting_kdf)
    data = (Path(__file__).parent / "crashes" / "group_ops-ancient-key-ca61c38c").read_bytes()
    fuzz_group_ops(data)
    assert calls < 1_000  # 10^8 before (the test ran for minutes)
