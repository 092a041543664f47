"""The tombstone table's trust tiers, quotas and eviction order (issue #11, finding 3)."""

from __future__ import annotations

from meshmsg.core.envelope import tag_of_token
from meshmsg.core.store import Tier
from meshmsg.core.tombstones import Tombstone, Tombstones, judge


def test_judge() -> None:
    assert judge(Tier.STRANGER, []) == (Tier.STRANGER, False)
    assert judge(Tier.STRANGER, [Tier.STRANGER]) == (Tier.STRANGER, True)
    assert judge(Tier.STRANGER, [Tier.OWN]) == (Tier.OWN, True)
    assert judge(Tier.CONTACT, []) == (Tier.CONTACT, True)


def stone(n: int, tier: Tier, source: bytes | None = None, expiry: float = 100.0) -> Tombstone:
    token = n.to_bytes(16, "big")
    return Tombstone(token=token, tag=tag_of_token(token), expiry_at=expiry, tier=tier,
                     source=source, believed=tier is not Tier.STRANGER)  # fmt: skip


def test_table_bounds_quotas_and_eviction_order() -> None:
    table = Tombstones(40)
    for i in range(40):
        table.add(stone(i, Tier.OWN, expiry=10.0 + i))
    # a stranger, a verified contact: only the same or a worse tier makes room
    assert table.add(stone(100, Tier.STRANGER, b"s" * 16, expiry=1e9)) == [
        stone(100, Tier.STRANGER, b"s" * 16, expiry=1e9)
    ]
    assert len(table) == 40
    evicted = table.add(stone(101, Tier.OWN, expiry=1e9))
    assert [s.expiry_at for s in evicted] == [10.0]
    # per-stranger (5 % of 40 = 2) and all strangers (25 % = 10) quotas
    table = Tombstones(40)
    kept = 0
    for i in range(20):
        table.add(stone(i, Tier.STRANGER, b"one" + bytes(13)))
    assert table.count(Tier.STRANGER) == 2
    for i in range(20, 60):
        table.add(stone(i, Tier.STRANGER, i.to_bytes(16, "big")))
    kept = table.count(Tier.STRANGER)
    assert kept == 10
    for i in range(60, 100):
        table.add(stone(i, Tier.CONTACT))
    assert table.count(Tier.CONTACT) == 20  # 50 % for unverified contacts
    assert len(table) == 30


def test_a_better_founded_copy_replaces_a_strangers_token() -> None:
    table = Tombstones(40)
    table.add(stone(1, Tier.STRANGER, b"s" * 16))
    assert not table.by_tag(stone(1, Tier.OWN).tag).believed  # type: ignore[union-attr]
    table.add(stone(1, Tier.CONTACT))
    held = table.by_tag(stone(1, Tier.OWN).tag)
    assert held is not None
    assert held.believed
    assert held.tier is Tier.CONTACT
    assert table.count(Tier.STRANGER) == 0


def test_expiry_and_heaps_stay_bounded() -> None:
    table = Tombstones(10)
    for round_ in range(200):
        for i in range(10):
            table.add(stone(round_ * 10 + i, Tier.OWN, expiry=float(round_)))
        table.expire(float(round_))
    assert len(table) == 0
    assert len(table._heap) <= 64
    assert all(len(h) <= 64 for h in table._tier_heaps.values())
