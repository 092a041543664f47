"""Properties of set reconciliation: exact differences, bounds, strict decoding, live changes."""

from __future__ import annotations

import random
from functools import partial

from hypothesis import given, settings
from hypothesis import strategies as st

from meshmsg.bench.sync import SessionResult, run_session
from meshmsg.config import SyncConfig
from meshmsg.core.cursor import ByteCursor
from meshmsg.core.itemset import ItemSet
from meshmsg.core.reconcile import Reconciler
from meshmsg.core.syncwire import message_reader
from meshmsg.errors import DecodeError

# Ids from a few shared prefixes as well as uniform ones, so that small sets still reach deep
# trie levels, leaf splits, single-id nodes and lopsided children.
PREFIXES = (b"", b"\x00", b"\x00\x00", b"\xab" * 6, b"\xff" * 15)
ids = st.builds(
    lambda prefix, rest: prefix + rest[len(prefix) :],
    st.sampled_from(PREFIXES),
    st.binary(min_size=16, max_size=16),
)
id_sets = st.frozensets(ids, max_size=40)

configs = st.builds(
    SyncConfig,
    split_fanout=st.sampled_from([2, 4, 16, 256]),
    # 6+ bytes: a chance collision (2^-48 per comparison) never flakes a 1,000-example run;
    # the 4-byte default and forced collisions are covered in tests/core/test_reconcile.py
    fingerprint_bytes=st.integers(6, 8),
    ids_outright_max=st.integers(1, 3),
    id_list_threshold=st.integers(3, 64),
    tail_nodes=st.sampled_from([0, 64]),
    min_pure_probability=st.sampled_from([0.0, 0.5, 1.01]),
    leaf_capacity=st.sampled_from([1, 2, 32]),
    max_message_bytes=st.sampled_from([8_192, 60_000]),
)
salts = st.binary(min_size=16, max_size=16)


def build(members: frozenset[bytes] | set[bytes], config: SyncConfig) -> ItemSet:
    s = ItemSet(fanout=config.split_fanout, leaf_capacity=config.leaf_capacity)
    for x in sorted(members):
        s.add(x, 0)
    return s


def check_exact(result: SessionResult, a: set[bytes], b: set[bytes], config: SyncConfig) -> None:
    assert result.initiator.done
    assert result.responder.done
    assert set(result.initiator.have_ids) == a - b
    assert set(result.initiator.need_ids) == b - a
    assert set(result.responder.have_ids) == b - a
    assert set(result.responder.need_ids) == a - b
    assert result.round_trips <= config.max_round_trips
    assert max(result.sizes) <= config.max_message_bytes


@given(common=id_sets, only_a=id_sets, only_b=id_sets, config=configs, salt=salts)
def test_small_sets_reconcile_exactly(
    common: frozenset[bytes],
    only_a: frozenset[bytes],
    only_b: frozenset[bytes],
    config: SyncConfig,
    salt: bytes,
) -> None:
    a, b = set(common | only_a), set(common | (only_b - only_a))
    result = run_session(build(a, config), build(b, config), config=config, salt=salt)
    check_exact(result, a, b, config)
    if a == b:
        assert result.messages == 2


@settings(max_examples=150)
@given(
    seed=st.integers(0, 2**32),
    n=st.integers(0, 3_000),
    only_a=st.integers(0, 150),
    only_b=st.integers(0, 150),
    config=configs,
)
def test_medium_sets_reconcile_exactly(
    seed: int, n: int, only_a: int, only_b: int, config: SyncConfig
) -> None:
    rnd = random.Random(seed)
    common = {rnd.randbytes(16) for _ in range(n)}
    a = common | {rnd.randbytes(16) for _ in range(only_a)}
    b = common | {rnd.randbytes(16) for _ in range(only_b)}
    salt = rnd.randbytes(16)
    result = run_session(build(a, config), build(b, config), config=config, salt=salt)
    check_exact(result, a, b, config)


@given(members=id_sets, config=configs, salt=salts)
def test_identical_sets_take_one_round_trip(
    members: frozenset[bytes], config: SyncConfig, salt: bytes
) -> None:
    result = run_session(build(members, config), build(members, config), config=config, salt=salt)
    assert result.messages == 2
    assert result.initiator.have_ids == result.initiator.need_ids == ()
    assert sum(result.sizes) <= 3 + 16 + 5 + 16 + config.fingerprint_bytes + 3


@given(members=id_sets, config=configs, salt=salts, full_first=st.booleans())
def test_full_against_empty(
    members: frozenset[bytes], config: SyncConfig, salt: bytes, full_first: bool
) -> None:
    a, b = (set(members), set()) if full_first else (set(), set(members))
    result = run_session(build(a, config), build(b, config), config=config, salt=salt)
    check_exact(result, a, b, config)


mutations = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 10_000)),
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("replace"), st.binary(max_size=64)),
)


def mutate(message: bytes, mutation: tuple[object, ...]) -> bytes:
    kind = mutation[0]
    if kind == "truncate":
        assert isinstance(mutation[1], int)
        return message[: mutation[1] % max(len(message), 1)]
    if kind == "flip":
        assert isinstance(mutation[1], int)
        assert isinstance(mutation[2], int)
        if not message:
            return b"\x00"
        i = mutation[1] % len(message)
        return message[:i] + bytes([message[i] ^ mutation[2]]) + message[i + 1 :]
    if kind == "append":
        assert isinstance(mutation[1], bytes)
        return message + mutation[1]
    assert isinstance(mutation[1], bytes)
    return mutation[1]


@given(
    common=id_sets,
    only_a=id_sets,
    only_b=id_sets,
    config=configs,
    salt=salts,
    target=st.integers(0, 50),
    mutation=mutations,
)
def test_corrupted_messages_raise_only_decode_error(
    common: frozenset[bytes],
    only_a: frozenset[bytes],
    only_b: frozenset[bytes],
    config: SyncConfig,
    salt: bytes,
    target: int,
    mutation: tuple[object, ...],
) -> None:
    """One message of a session is damaged; every side either rejects bytes with DecodeError
    or goes on, and the session ends within its bounds either way."""
    a, b = common | only_a, common | only_b
    target %= run_session(build(a, config), build(b, config), config=config, salt=salt).messages
    initiator = Reconciler(build(a, config), initiator=True, salt=salt, config=config)
    responder = Reconciler(build(b, config), initiator=False, config=config)
    message: bytes | None = initiator.start()
    receiver = responder
    for index in range(2 * config.max_round_trips + 2):
        if message is None or receiver.done:  # a driver drops a finished session
            return
        if index == target:
            message = mutate(message, mutation)
        try:
            message = receiver.receive(message)
        except DecodeError:
            return
        receiver = initiator if receiver is responder else responder
    raise AssertionError("session outlived its round bound")


@settings(max_examples=300)
@given(
    seed=st.integers(0, 2**32),
    changes=st.lists(
        st.tuples(st.booleans(), st.sampled_from(["add", "remove"]), st.integers(0, 10**6)),
        max_size=12,
    ),
    config=configs,
)
def test_changes_during_a_session_keep_stable_items_exact(
    seed: int, changes: list[tuple[bool, str, int]], config: SyncConfig
) -> None:
    rnd = random.Random(seed)
    common = [rnd.randbytes(16) for _ in range(rnd.randrange(0, 600))]
    only_a = [rnd.randbytes(16) for _ in range(rnd.randrange(0, 30))]
    only_b = [rnd.randbytes(16) for _ in range(rnd.randrange(0, 30))]
    a, b = build(set(common + only_a), config), build(set(common + only_b), config)
    ever = {True: set(common + only_a), False: set(common + only_b)}  # ever held, per side
    touched: set[bytes] = set()
    initiator = Reconciler(a, initiator=True, salt=rnd.randbytes(16), config=config)
    responder = Reconciler(b, initiator=False, config=config)
    message: bytes | None = initiator.start()
    receiver, pending = responder, list(changes)
    while message is not None:
        if pending:  # one change lands between two messages
            on_a, action, pick = pending.pop()
            store = a if on_a else b
            pool = common + only_a + only_b
            item = pool[pick % len(pool)] if action == "remove" and pool else rnd.randbytes(16)
            (store.remove(item) if action == "remove" else store.add(item, 0))
            ever[on_a].add(item)
            touched.add(item)
        message = receiver.receive(message)
        receiver = initiator if receiver is responder else responder
    stable_a, stable_b = set(only_a) - touched, set(only_b) - touched
    assert stable_a <= set(initiator.have_ids)
    assert stable_a <= set(responder.need_ids)
    assert stable_b <= set(initiator.need_ids)
    assert stable_b <= set(responder.have_ids)
    assert set(initiator.have_ids) <= set(a)
    assert not set(initiator.need_ids) & set(a)
    assert set(responder.have_ids) <= set(b)
    assert not set(responder.need_ids) & set(b)
    assert set(initiator.need_ids) <= ever[False]
    assert set(responder.need_ids) <= ever[True]


def reference_read_ascending(
    side: Reconciler, addr: tuple[int, int], n: int, last: int, r: ByteCursor
) -> list[int]:
    """The id-at-a-time decoder that the bulk ``NodeCodec.read_ascending`` replaced."""
    out: list[int] = []
    for _ in range(n):
        x = side._codec.read_id(addr, r)
        if x <= last:
            raise DecodeError("ids not in strictly ascending order")
        out.append(x)
        last = x
    return out


@st.composite
def id_lists(draw: st.DrawFn) -> tuple[int, tuple[int, int], int, int, bytes]:
    """(fanout, node, count, last, bytes): mostly well-formed ascending lists inside the node,
    sometimes damaged, shuffled or from a neighbouring node."""
    fanout = draw(st.sampled_from([2, 4, 16, 256]))
    bits = fanout.bit_length() - 1
    depth = draw(st.integers(0, 128 // bits))
    prefix = draw(st.integers(0, (1 << (depth * bits)) - 1))
    free = 128 - depth * bits
    lows = sorted(draw(st.sets(st.integers(0, (1 << free) - 1), max_size=6)))
    ids = [(prefix << free) | low for low in lows]
    neighbour = draw(st.sampled_from([None, -1, 1]))  # an id of the node before or after
    if neighbour is not None and 0 <= prefix + neighbour < 1 << (depth * bits):
        stray = ((prefix + neighbour) << free) | draw(st.integers(0, (1 << free) - 1))
        ids = [stray, *ids] if neighbour < 0 else [*ids, stray]
    if draw(st.booleans()):
        ids.reverse()
    damage = draw(st.booleans())
    if ids and damage:
        ids[draw(st.integers(0, len(ids) - 1))] ^= 1 << draw(st.integers(0, 127))
    s = 16 - (depth * bits) // 8
    data = b"".join((x & ((1 << (8 * s)) - 1)).to_bytes(s, "big") for x in ids)
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    last = draw(st.sampled_from([-1, *ids])) if ids else -1
    return fanout, (depth, prefix), len(ids), last, data


@settings(max_examples=1_000)  # cheap, and a stray id is only detectable at some depths
@given(case=id_lists())
def test_bulk_id_decoding_matches_one_at_a_time(
    case: tuple[int, tuple[int, int], int, int, bytes],
) -> None:
    fanout, addr, n, last, data = case
    side = Reconciler(
        ItemSet(fanout=fanout), initiator=False, config=SyncConfig(split_fanout=fanout)
    )
    outcomes: list[tuple[list[int], bool] | None] = []
    for decode in (side._codec.read_ascending, partial(reference_read_ascending, side)):
        reader = message_reader(data)
        try:
            outcomes.append((decode(addr, n, last, reader), reader.at_end()))
        except DecodeError:
            outcomes.append(None)
    assert outcomes[0] == outcomes[1]


@given(
    steps=st.lists(st.tuples(st.booleans(), ids), max_size=80),
    fanout=st.sampled_from([2, 16]),
    capacity=st.sampled_from([1, 2, 32]),
)
def test_cached_node_lists_follow_every_change(
    steps: list[tuple[bool, bytes]], fanout: int, capacity: int
) -> None:
    """Every node's id list, read between changes (so caches fill), is the current one."""
    items, truth = ItemSet(fanout=fanout, leaf_capacity=capacity), set()
    bits = fanout.bit_length() - 1
    for add, item in steps:
        if add:
            items.add(item, 0)
            truth.add(item)
        else:
            items.remove(item)
            truth.discard(item)
        for depth in (0, 1, 2, 128 // bits):
            prefix = (int.from_bytes(item, "big") >> (128 - depth * bits)) if depth else 0
            expected = sorted(
                int.from_bytes(x, "big")
                for x in truth
                if depth == 0 or int.from_bytes(x, "big") >> (128 - depth * bits) == prefix
            )
            assert items._ids_in((depth, prefix)) == expected
