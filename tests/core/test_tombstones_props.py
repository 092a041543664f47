"""The purge-token table under any sequence of additions and expiries (hypothesis): it never
holds more than its bound or a stranger's quota, its indexes and counts agree with what it
holds, expiry removes exactly the tokens due, the next expiry is never late, and a held token
is only replaced by a better founded copy."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from meshmsg.core.store import Tier
from meshmsg.core.tombstones import Tombstone, Tombstones

MAX = 40  # StoreConfig: strangers 25 % in all (10), 5 % each (2); contacts 50 % (20)
SOURCES = [bytes([i]) * 16 for i in range(6)]


def _ops(seed: int, count: int) -> list[tuple[object, ...]]:
    """A random sequence (drawn from ``seed``: hypothesis picks seeds and shrinks them)."""
    rng = random.Random(seed)
    ops: list[tuple[object, ...]] = []
    for _ in range(count):
        if rng.random() < 0.2:
            ops.append(("expire", rng.randrange(10)))  # time moves on by this much
        else:
            tier = rng.choice(list(Tier))
            ops.append(("add", rng.randrange(90), tier, rng.random() < 0.7,
                        rng.randrange(1, 300), rng.choice(SOURCES)))  # fmt: skip
    return ops


def _stone(n: int, tier: Tier, believed: bool, expiry: int, source: bytes) -> Tombstone:
    return Tombstone(
        token=bytes([n]) * 16, tag=bytes([n, 0xAA]) * 8, expiry_at=float(expiry), tier=tier,
        source=source if tier is Tier.STRANGER else None, believed=believed,
    )  # fmt: skip


def _check(table: Tombstones, now: float) -> None:
    held = list(table)
    assert len(held) == len(table) <= MAX
    for stone in held:
        assert table.by_tag(stone.tag) is stone
        assert table.by_id(stone.item_id) is stone
    for tier in Tier:
        assert table.count(tier) == sum(s.tier is tier for s in held)
    strangers = [s for s in held if s.tier is Tier.STRANGER]
    assert len(strangers) <= MAX // 4
    for source in SOURCES:
        assert sum(s.source == source for s in strangers) <= MAX // 20
    assert sum(s.tier is Tier.CONTACT for s in held) <= MAX // 2
    soonest = table.next_expiry()
    if held:  # never later than the soonest token (a replaced token may make it early)
        assert soonest is not None
        assert soonest <= min(s.expiry_at for s in held)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), count=st.integers(1, 400))
def test_the_table_keeps_its_bounds_and_indexes_under_any_sequence(seed: int, count: int) -> None:
    table = Tombstones(MAX)
    now = 0.0
    for op in _ops(seed, count):
        if op[0] == "expire":
            now += float(op[1])  # type: ignore[arg-type]
            due = {s.tag for s in table if s.expiry_at <= now}
            gone = table.expire(now)
            assert {s.tag for s in gone} == due
            assert all(s.expiry_at > now for s in table)
        else:
            _, n, tier, believed, lifetime, source = op
            assert isinstance(tier, Tier)
            expiry = int(now) + lifetime  # type: ignore[operator]
            stone = _stone(n, tier, bool(believed), expiry, source)  # type: ignore[arg-type]
            before = table.by_tag(stone.tag)
            pushed = table.add(stone)
            after = table.by_tag(stone.tag)
            if before is not None and (not believed, tier) >= (not before.believed, before.tier):
                assert after is before  # not better founded: the held copy stays
                assert pushed == []
            for out in pushed:
                assert table.by_tag(out.tag) is not out
        _check(table, now)
