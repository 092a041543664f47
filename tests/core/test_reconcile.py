"""Set reconciliation: the indexed set, sessions end to end, bounds and strict decoding."""

from __future__ import annotations

import dataclasses
import random

import pytest

from meshmsg.bench.sync import SessionResult, run_session
from meshmsg.config import SyncConfig
from meshmsg.core.itemset import ItemSet
from meshmsg.core.reconcile import Reconciler
from meshmsg.errors import CloseReason, ConfigError, DecodeError, LocalProtocolError

SALT = bytes(range(16))
CONFIG = SyncConfig()


def ids(n: int, seed: int = 0) -> list[bytes]:
    rnd = random.Random(seed)
    return [rnd.randbytes(16) for _ in range(n)]


def item_set(members: list[bytes], config: SyncConfig = CONFIG) -> ItemSet:
    s = ItemSet(fanout=config.split_fanout, leaf_capacity=config.leaf_capacity)
    for i, x in enumerate(members):
        s.add(x, i)
    return s


def session(
    a: list[bytes], b: list[bytes], config: SyncConfig = CONFIG, salt: bytes = SALT
) -> SessionResult:
    return run_session(item_set(a, config), item_set(b, config), config=config, salt=salt)


def assert_exact(result: SessionResult, a: list[bytes], b: list[bytes]) -> None:
    only_a, only_b = set(a) - set(b), set(b) - set(a)
    assert result.initiator.done
    assert result.responder.done
    assert set(result.initiator.have_ids) == only_a
    assert set(result.initiator.need_ids) == only_b
    assert set(result.responder.have_ids) == only_b
    assert set(result.responder.need_ids) == only_a


def responder_after_init(items: ItemSet, config: SyncConfig = CONFIG) -> Reconciler:
    """A responder that has taken a genuine first message about a different set."""
    other = item_set(ids(500, seed=99), config)
    first = Reconciler(other, initiator=True, salt=SALT, config=config).start()
    responder = Reconciler(items, initiator=False, config=config)
    responder.receive(first)
    return responder


# ====================================================================== ItemSet


def test_item_set_basics() -> None:
    a, b = ids(2)
    s = ItemSet()
    assert len(s) == 0
    assert a not in s
    assert s.add(a, 10) is True
    assert s.add(a, 20) is False  # re-adding only updates the expiry
    assert s.expiry(a) == 20
    assert len(s) == 1
    assert a in s
    assert s.add(b, 5) is True
    assert list(s) == sorted([a, b])
    assert s.remove(a) is True
    assert s.remove(a) is False
    assert a not in s
    assert s.expiry(a) is None
    assert len(s) == 1
    assert "not an id" not in s
    assert b"short" not in s


@pytest.mark.parametrize(
    ("item_id", "expiry"), [(b"x" * 15, 1), (b"x" * 17, 1), (b"x" * 16, -1), (b"x" * 16, 1 << 64)]
)
def test_item_set_rejects_bad_input(item_id: bytes, expiry: int) -> None:
    with pytest.raises(LocalProtocolError):
        ItemSet().add(item_id, expiry)


def test_item_set_rejects_bad_geometry() -> None:
    with pytest.raises(ConfigError):
        ItemSet(fanout=8)
    with pytest.raises(ConfigError):
        ItemSet(leaf_capacity=0)
    with pytest.raises(ConfigError):
        SyncConfig(split_fanout=32)
    with pytest.raises(ConfigError):
        SyncConfig(ids_outright_max=100)


def brute(members: set[bytes], depth: int, prefix: int, bits: int) -> tuple[int, int]:
    xs = [int.from_bytes(x, "big") for x in members]
    inside = [x for x in xs if x >> (128 - depth * bits) == prefix]
    return len(inside), sum(inside)


@pytest.mark.parametrize(("fanout", "bits"), [(2, 1), (4, 2), (16, 4), (256, 8)])
def test_aggregates_survive_splits_and_merges(fanout: int, bits: int) -> None:
    rnd = random.Random(fanout)
    pool = [bytes([0xAB] * 12) + rnd.randbytes(4) for _ in range(150)] + ids(150, seed=fanout)
    s = ItemSet(fanout=fanout, leaf_capacity=3)
    members: set[bytes] = set()
    for step in range(1200):
        x = rnd.choice(pool)
        if x in members and step % 3:
            assert s.remove(x)
            members.discard(x)
        else:
            s.add(x, step)
            members.add(x)
    assert len(s) == len(members)
    top = int.from_bytes(bytes([0xAB] * 12), "big")
    assert s._child_aggregates((96 // bits, top ^ 1)) == [(0, 0, 0)] * fanout  # nobody there
    for depth in (0, 1, 2, 96 // bits, 96 // bits + 1):
        prefix = top >> (96 - depth * bits) if depth <= 96 // bits else top << bits
        count, idsum, _ = s._aggregate((depth, prefix))
        assert (count, idsum) == brute(members, depth, prefix, bits)
        children = s._child_aggregates((depth, prefix))
        assert sum(c for c, _, _ in children) == count
        assert s._ids_in((depth, prefix)) == sorted(
            x for x in (int.from_bytes(m, "big") for m in members)
            if x >> (128 - depth * bits) == prefix
        )  # fmt: skip
    for x in list(members):
        s.remove(x)
    assert s._aggregate((0, 0)) == (0, 0, 0)
    assert len(s) == 0


# ====================================================================== sessions


def test_identical_sets_cost_one_round_trip_and_a_few_dozen_bytes() -> None:
    members = ids(2_000)
    result = session(members, members)
    assert result.messages == 2
    assert sum(result.sizes) <= 48
    assert_exact(result, members, members)


def test_two_empty_sets() -> None:
    result = session([], [])
    assert result.messages == 2
    assert_exact(result, [], [])


@pytest.mark.parametrize("extra_on_initiator", [True, False])
def test_one_difference_resolves_in_one_round_trip(extra_on_initiator: bool) -> None:
    common, (extra,) = ids(3_000), ids(1, seed=7)
    a, b = ([*common, extra], common) if extra_on_initiator else (common, [*common, extra])
    result = session(a, b)
    assert result.messages == 2
    assert_exact(result, a, b)


@pytest.mark.parametrize("one_side", [False, True])
def test_a_hundred_differences_in_four_round_trips(one_side: bool) -> None:
    common, diff = ids(20_000), ids(100, seed=3)
    a = common + (diff if one_side else diff[:50])
    b = common + ([] if one_side else diff[50:])
    result = session(a, b)
    assert_exact(result, a, b)
    assert result.round_trips <= 4
    assert sum(result.sizes) <= 16 * 1024


@pytest.mark.parametrize("full_initiates", [True, False])
def test_full_against_empty_splits_into_bounded_messages(full_initiates: bool) -> None:
    config = SyncConfig(max_message_bytes=8_192)
    full = ids(3_000)
    a, b = (full, []) if full_initiates else ([], full)
    result = session(a, b, config)
    assert_exact(result, a, b)
    assert max(result.sizes) <= 8_192
    assert result.messages >= 2 * (3_000 * 16 // 8_192)  # the ids needed several messages


@pytest.mark.parametrize("fanout", [2, 4, 16, 256])
def test_every_fanout_reconciles(fanout: int) -> None:
    config = SyncConfig(split_fanout=fanout)
    common, diff = ids(3_000), ids(40, seed=5)
    a, b = common + diff[:25], common + diff[25:]
    assert_exact(session(a, b, config), a, b)


def test_crafted_ids_sharing_long_prefixes() -> None:
    """Ids sharing 15 bytes (impossible to grind; the worst case) make a 30-level chain: the
    session descends it one level per message, exact and within the trie-depth bound."""
    crafted = [bytes(15) + bytes([i]) for i in range(200)]
    a, b = crafted[:150] + ids(500), crafted[50:] + ids(500)
    result = session(a, b)
    assert_exact(result, a, b)
    assert 128 // 4 <= result.messages <= 128 // 4 + 4


def test_sessions_are_deterministic_and_counted() -> None:
    common, diff = ids(2_000), ids(30, seed=1)
    first = session(common + diff[:10], common + diff[10:])
    second = session(common + diff[:10], common + diff[10:])
    assert first.sizes == second.sizes
    stats = first.initiator.statistics()
    assert stats.messages_sent + stats.messages_received == first.messages
    assert stats.bytes_sent == first.bytes_forward
    assert stats.bytes_received == first.bytes_back


def test_fingerprint_collision_is_transient() -> None:
    """With 1-byte fingerprints some salt makes two different sets look equal at the root;
    another salt (the next session) finds the difference."""
    config = SyncConfig(fingerprint_bytes=1)
    a, b = ids(2, seed=11), list[bytes]()
    salts = (i.to_bytes(16, "big") for i in range(5_000))
    colliding = next(s for s in salts if not session(a, b, config, s).initiator.have_ids)
    missed = session(a, b, config, colliding)
    assert missed.messages == 2
    assert missed.responder.need_ids == ()
    retry = session(a, b, config, bytes(a ^ 0xFF for a in colliding))
    assert_exact(retry, a, b)


def test_set_changes_during_a_session() -> None:
    common, diff, late = ids(3_000), ids(40, seed=2), ids(3, seed=4)
    a, b = item_set(common + diff[:20]), item_set(common + diff[20:])
    initiator = Reconciler(a, initiator=True, salt=SALT, config=CONFIG)
    responder = Reconciler(b, initiator=False, config=CONFIG)
    message = responder.receive(initiator.start())
    a.add(late[0], 1)  # new mail on one side
    b.add(diff[0], 1)  # b receives one of a's ids from elsewhere
    a.remove(diff[1])  # a drops one of its own
    receiver = initiator
    while message is not None:
        message = receiver.receive(message)
        receiver = responder if receiver is initiator else initiator
    stable_a, stable_b = set(diff[2:20]), set(diff[20:])
    assert stable_a <= set(initiator.have_ids)
    assert stable_a <= set(responder.need_ids)
    assert stable_b <= set(initiator.need_ids)
    assert stable_b <= set(responder.have_ids)
    assert diff[1] not in initiator.have_ids  # filtered: we no longer hold it
    assert diff[0] not in responder.need_ids  # filtered: we hold it now
    assert not set(initiator.need_ids) & set(a)
    assert set(initiator.have_ids) <= set(a)


# ====================================================================== misuse and bounds


def test_api_misuse_raises_local_errors() -> None:
    s = item_set(ids(10))
    with pytest.raises(LocalProtocolError):
        Reconciler(s, initiator=True, salt=b"short", config=CONFIG)
    with pytest.raises(LocalProtocolError):
        Reconciler(s, initiator=False, salt=SALT, config=CONFIG)
    with pytest.raises(LocalProtocolError):
        Reconciler(s, initiator=True, salt=SALT, config=SyncConfig(split_fanout=4))
    with pytest.raises(LocalProtocolError):
        Reconciler(s, initiator=False, config=CONFIG).start()
    initiator = Reconciler(s, initiator=True, salt=SALT, config=CONFIG)
    with pytest.raises(LocalProtocolError):
        initiator.receive(b"\x01\x00")
    result = session(ids(10), ids(10))
    with pytest.raises(LocalProtocolError):
        result.initiator.receive(b"\x01\x00")
    with pytest.raises(LocalProtocolError):
        result.initiator.start()


def started_initiator() -> Reconciler:
    initiator = Reconciler(item_set(ids(100)), initiator=True, salt=SALT, config=CONFIG)
    initiator.start()
    return initiator


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"", CloseReason.MALFORMED),  # truncated header
        (b"\x02\x01\x04", CloseReason.UNSUPPORTED),  # unknown version
        (b"\x01\x00", CloseReason.MALFORMED),  # empty while the peer owes an answer
        (b"\x01\x01\x04\x00", CloseReason.MALFORMED),  # trailing byte
        (b"\x01\x02\x04\x04", CloseReason.MALFORMED),  # an entry nobody asked for
        (b"\x01\x01\x09", CloseReason.MALFORMED),  # unknown kind
        (b"\x01\x01\x07\x00\x00", CloseReason.MALFORMED),  # PUSH_ALL, but we have ids
        (b"\x01\x81\x00\x04", CloseReason.MALFORMED),  # non-minimal varint
        (b"\x01" + b"\xff" * 12, CloseReason.TOO_LARGE),  # endless varint
        (b"\x01\x01\x05" + b"\x00" * 15, CloseReason.MALFORMED),  # id cut short
        (b"\x01\x01\x03\x02" + b"\x02" * 16 + b"\x01" * 16, CloseReason.MALFORMED),  # descending
        (b"\x01\x01\x03\xff\x7f", CloseReason.TOO_LARGE),  # id list longer than allowed
        (b"\x01" + bytes(60_000), CloseReason.TOO_LARGE),  # larger than a message may be
    ],
)
def test_malformed_answers_raise_decode_error(message: bytes, reason: CloseReason) -> None:
    initiator = started_initiator()
    with pytest.raises(DecodeError) as caught:
        initiator.receive(message)
    assert caught.value.reason is reason
    with pytest.raises(LocalProtocolError):  # the session is over
        initiator.receive(b"\x01\x01\x04")


def init_message(*, version: int = 1, bits: int = 4, fp: int = 4) -> bytes:
    return bytes((version, bits, fp)) + SALT + b"\x05" + bytes(16) + bytes(fp)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (init_message(version=9), CloseReason.UNSUPPORTED),
        (init_message(bits=2), CloseReason.UNSUPPORTED),
        (init_message(fp=8), CloseReason.UNSUPPORTED),
        (init_message()[:-1], CloseReason.MALFORMED),
        (init_message() + b"\x00", CloseReason.MALFORMED),
    ],
)
def test_malformed_first_messages_raise_decode_error(message: bytes, reason: CloseReason) -> None:
    responder = Reconciler(item_set(ids(100)), initiator=False, config=CONFIG)
    with pytest.raises(DecodeError) as caught:
        responder.receive(message)
    assert caught.value.reason is reason


def test_every_truncation_of_a_real_transcript_raises_decode_error() -> None:
    common, diff = ids(1_500), ids(30, seed=8)
    a, b = common + diff[:15], common + diff[15:]
    transcript = session(a, b).sizes
    for index in range(len(transcript)):
        for cut in sorted({0, 1, 2, transcript[index] // 2, transcript[index] - 1}):
            receiver, message = replay_until(a, b, index)
            with pytest.raises(DecodeError):
                receiver.receive(message[:cut])


def replay_until(a: list[bytes], b: list[bytes], index: int) -> tuple[Reconciler, bytes]:
    """Replay the session of ``a`` and ``b``; return the receiver of message ``index`` and it."""
    initiator = Reconciler(item_set(a), initiator=True, salt=SALT, config=CONFIG)
    responder = Reconciler(item_set(b), initiator=False, config=CONFIG)
    message, receiver = initiator.start(), responder
    for _ in range(index):
        answer = receiver.receive(message)
        assert answer is not None
        message = answer
        receiver = initiator if receiver is responder else responder
    return receiver, message


def test_bitmap_padding_foreign_ids_and_wrong_kinds_are_rejected() -> None:
    config = SyncConfig(split_fanout=4)
    responder = responder_after_init(item_set(ids(500), config), config)  # answered SPLIT(root)
    with pytest.raises(DecodeError, match="padding"):
        responder.receive(b"\x01\x01\x81")
    responder = responder_after_init(item_set(ids(500), config), config)
    # bitmap: child 0 differs; we describe it by IDS with an id whose top bits say child 3
    foreign = b"\xff" + bytes(15)
    with pytest.raises(DecodeError, match="outside"):
        responder.receive(b"\x01\x02\x80\x03\x01" + foreign)
    responder = responder_after_init(item_set(ids(500), config), config)
    with pytest.raises(DecodeError, match="cannot describe"):
        responder.receive(b"\x01\x02\x80\x04")  # EQUAL is an answer, not a description


def test_queue_bound_cuts_off_a_peer_that_claims_everything_differs() -> None:
    config = SyncConfig(max_pending_tasks=8)
    responder = responder_after_init(item_set(ids(500), config), config)  # answered SPLIT(root)
    with pytest.raises(DecodeError) as caught:
        responder.receive(b"\x01\x01\xff\xff")  # 16 children: 16 descriptions owed to it
    assert caught.value.reason is CloseReason.LIMIT_REACHED


def converse(initiator: Reconciler, responder: Reconciler) -> None:
    message: bytes | None = initiator.start()
    receiver = responder
    while message is not None:
        message = receiver.receive(message)
        receiver = initiator if receiver is responder else responder


def test_round_bound_ends_a_session_instead_of_exceeding_it() -> None:
    config = SyncConfig(max_message_bytes=8_192, max_round_trips=3)
    initiator = Reconciler(item_set(ids(3_000), config), initiator=True, salt=SALT, config=config)
    responder = Reconciler(ItemSet(), initiator=False, config=config)
    with pytest.raises(DecodeError) as caught:
        converse(initiator, responder)
    assert caught.value.reason is CloseReason.LIMIT_REACHED
    for side in (initiator, responder):
        assert side.statistics().messages_sent <= 3


def test_need_bound_cuts_off_a_peer_offering_too_many_ids() -> None:
    config = SyncConfig(max_diff_ids=100)
    with pytest.raises(DecodeError):
        session([], ids(300), config)


def test_config_relations_are_checked() -> None:
    with pytest.raises(ConfigError):
        SyncConfig(max_message_bytes=70_000)
    with pytest.raises(ConfigError):
        SyncConfig(id_list_threshold=1_000, max_ids_per_list=1_000, max_message_bytes=10_000)
    with pytest.raises(ConfigError):
        SyncConfig(fingerprint_bytes=0)
    with pytest.raises(ConfigError):
        SyncConfig(max_round_trips=0)
    assert dataclasses.replace(CONFIG, fingerprint_bytes=8).fingerprint_bytes == 8


@pytest.mark.parametrize("fanout", [4, 16, 256])
def test_large_differences_in_small_messages(fanout: int) -> None:
    """Thousands of differences with 8 kB messages: every kind of entry meets a full message."""
    config = SyncConfig(split_fanout=fanout, max_message_bytes=8_192)
    common, diff = ids(6_000), ids(3_000, seed=6)
    a, b = common + diff[:1_000], common[:5_000] + diff[1_000:]
    result = session(a, b, config)
    assert_exact(result, a, b)
    assert max(result.sizes) <= 8_192


def test_a_peer_with_a_larger_round_bound_is_cut_off_by_ours() -> None:
    small = SyncConfig(max_message_bytes=8_192, max_round_trips=3)
    large = SyncConfig(max_message_bytes=8_192)
    initiator = Reconciler(item_set(ids(3_000)), initiator=True, salt=SALT, config=large)
    responder = Reconciler(ItemSet(), initiator=False, config=small)
    with pytest.raises(DecodeError) as caught:
        converse(initiator, responder)
    assert caught.value.reason is CloseReason.LIMIT_REACHED
    assert responder.statistics().messages_received == 3


def test_need_bound_counts_across_nodes() -> None:
    config = SyncConfig(max_diff_ids=100)
    common = ids(3_000)
    with pytest.raises(DecodeError) as caught:
        session(common, common + ids(150, seed=12), config)
    assert caught.value.reason is CloseReason.LIMIT_REACHED


def test_an_empty_push_is_rejected() -> None:
    config = SyncConfig(max_message_bytes=8_192)
    full = item_set(ids(3_000), config)
    initiator = Reconciler(ItemSet(), initiator=True, salt=SALT, config=config)
    responder = Reconciler(full, initiator=False, config=config)
    first_ids = responder.receive(initiator.start())  # PUSH_ALL with a first part of the ids
    assert first_ids is not None
    assert initiator.receive(first_ids) == b"\x01\x00"  # go on
    with pytest.raises(DecodeError, match="empty PUSH"):
        initiator.receive(b"\x01\x01\x00")


def test_a_split_below_the_last_level_is_rejected() -> None:
    """A node at the last trie level is one id: splitting it is out of protocol. (Reaching
    that depth through the wire takes a 16-level conversation; the check is hit directly.)"""
    from meshmsg.core.syncwire import EntryKind, message_reader

    config = SyncConfig(split_fanout=256)
    responder = Reconciler(item_set(ids(10), config), initiator=False, config=config)
    with pytest.raises(DecodeError, match="single id"):
        responder._reader._read_node((16, 0), EntryKind.SPLIT, message_reader(bytes(256 * 4)))
