"""Relay store bounds: quotas by tier, eviction order, expiry, ONE-mode drop-oldest."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmsg.config import StoreConfig
from meshmsg.core.store import Admission, RelayStore, StoreItem, Tier

KIB = 1024


def item(n: int, *, tier: Tier = Tier.VERIFIED, size: int = KIB, source: bytes | None = b"s",
         expiry_at: float = 1_000.0, received_at: float = 0.0) -> StoreItem:  # fmt: skip
    return StoreItem(
        envelope_id=n.to_bytes(16, "big"), envelope=bytes(size), tag=n.to_bytes(16, "little"),
        expiry_at=expiry_at, copies=1, hops=0, tier=tier,
        source=None if tier is Tier.OWN else source, received_at=received_at,
    )  # fmt: skip


def small_store(**overrides: object) -> RelayStore:
    params: dict[str, object] = {"max_store_bytes": 100 * KIB, "max_store_envelopes": 1_000}
    params.update(overrides)
    return RelayStore(StoreConfig(**params))  # type: ignore[arg-type]


def test_accepts_until_full_then_refuses_same_tier() -> None:
    store = small_store()
    for n in range(100):
        assert store.admit(item(n), now=0).admission is Admission.ACCEPTED
    assert store.total_bytes == 100 * KIB
    assert store.admit(item(100), now=0).admission is Admission.OVER_QUOTA
    assert len(store) == 100


def test_duplicate_and_expired_are_refused() -> None:
    store = small_store()
    assert store.admit(item(1), now=0).admission is Admission.ACCEPTED
    assert store.admit(item(1), now=0).admission is Admission.DUPLICATE
    assert store.admit(item(2, expiry_at=5), now=5).admission is Admission.EXPIRED


def test_strangers_share_is_capped_in_total_and_per_source() -> None:
    store = small_store()  # strangers: 25 % in total, 5 % per source
    accepted = sum(
        store.admit(item(n, tier=Tier.STRANGER, source=b"one"), now=0).admission
        is Admission.ACCEPTED
        for n in range(20)
    )
    assert accepted == 5  # 5 % of 100 KiB
    for src in range(10):
        for n in range(5):
            store.admit(item(1000 + src * 10 + n, tier=Tier.STRANGER, source=bytes([src])), now=0)
    assert store.bytes_in(Tier.STRANGER) == 25 * KIB


def test_unverified_contacts_leave_half_for_verified_and_own() -> None:
    store = small_store()
    for n in range(80):
        store.admit(item(n, tier=Tier.CONTACT), now=0)
    assert store.bytes_in(Tier.CONTACT) == 50 * KIB


def test_a_better_tier_evicts_strangers_oldest_first_never_own() -> None:
    store = small_store(strangers_total_fraction=1.0, stranger_quota_fraction=1.0)
    for n in range(10):
        store.admit(item(n, tier=Tier.OWN), now=0)
    for n in range(10, 100):
        store.admit(item(n, tier=Tier.STRANGER, source=bytes([n % 7])), now=0)
    result = store.admit(item(500, tier=Tier.VERIFIED), now=0)
    assert result.admission is Admission.ACCEPTED
    assert result.evicted == ((10).to_bytes(16, "big"),)  # the oldest stranger item
    assert store.bytes_in(Tier.OWN) == 10 * KIB
    # A stranger cannot evict anything.
    assert store.admit(item(501, tier=Tier.STRANGER), now=0).admission is Admission.OVER_QUOTA


def test_one_mode_drops_oldest_whatever_the_tier() -> None:
    store = RelayStore(StoreConfig(max_store_bytes=10 * KIB), one_mode=True)
    for n in range(10):
        store.admit(item(n, tier=Tier.OWN if n == 0 else Tier.STRANGER), now=0)
    result = store.admit(item(10, tier=Tier.STRANGER), now=0)
    assert result.evicted == ((0).to_bytes(16, "big"),)


def test_expire_removes_due_items_in_order() -> None:
    store = small_store()
    for n, expiry in enumerate([30.0, 10.0, 20.0]):
        store.admit(item(n, expiry_at=expiry), now=0)
    assert store.next_expiry() == 10.0
    assert store.expire(25.0) == [(1).to_bytes(16, "big"), (2).to_bytes(16, "big")]
    assert store.next_expiry() == 30.0
    store.remove((0).to_bytes(16, "big"))
    assert store.next_expiry() is None


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.sampled_from(list(Tier)), st.integers(1, 8), st.integers(0, 3)),
        max_size=150,
    )
)
def test_bounds_hold_for_any_arrival_sequence(arrivals: list[tuple[Tier, int, int]]) -> None:
    config = StoreConfig(max_store_bytes=64 * KIB, max_store_envelopes=40)
    store = RelayStore(config)
    for n, (tier, kib, src) in enumerate(arrivals):
        store.admit(item(n, tier=tier, size=kib * KIB, source=bytes([src])), now=0)
        assert store.total_bytes <= config.max_store_bytes
        assert len(store) <= config.max_store_envelopes
        assert store.bytes_in(Tier.STRANGER) <= config.max_store_bytes * 0.25
        assert store.bytes_in(Tier.CONTACT) <= config.max_store_bytes * 0.5
        assert store.total_bytes == sum(i.size for i in store.items())


def test_item_size_over_the_cap_is_refused() -> None:
    store = small_store()
    assert store.admit(item(1, size=101 * KIB), now=0).admission is Admission.TOO_LARGE


@pytest.mark.parametrize("tier", [Tier.VERIFIED, Tier.OWN])
def test_restore_reinserts_without_checks(tier: Tier) -> None:
    store = small_store()
    store.restore(item(1, tier=tier))
    store.restore(item(1, tier=tier))
    assert len(store) == 1
