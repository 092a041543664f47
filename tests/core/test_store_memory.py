"""The relay store's own memory per item (issue #13: 100,000 envelopes in <= 100 MiB).

Bodies are one shared object here, so only what the store adds per item is traced.
"""

from __future__ import annotations

import tracemalloc

from meshmsg.config import StoreConfig
from meshmsg.core.itemset import ItemSet, _hv, hash_value
from meshmsg.core.store import RelayStore, StoreItem, Tier

COUNT = 5_000
BODY = bytes(1024)


def _item(n: int, *, tag: bytes | None = None) -> StoreItem:
    return StoreItem(
        envelope_id=n.to_bytes(16, "big"), envelope=BODY,
        tag=n.to_bytes(16, "little") if tag is None else tag,
        expiry_at=1_000.0 + n, copies=6, hops=1, tier=Tier.VERIFIED, source=b"s" * 16,
        received_at=0.0,
    )  # fmt: skip


def _store() -> RelayStore:
    return RelayStore(StoreConfig(max_store_bytes=10 * COUNT * 1024, max_store_envelopes=2 * COUNT))


def test_store_bookkeeping_per_item_stays_small() -> None:
    """Items themselves excluded: the store's dicts, tag index and expiry heap. A dict per
    tag and a tuple per heap entry made this 415 B; now it is 127 B."""
    items = [_item(n) for n in range(COUNT)]
    store = _store()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for it in items:
            store.admit(it, now=0.0)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(store) == COUNT
    assert grown / COUNT < 200, f"{grown / COUNT:.0f} B of bookkeeping per item"


def test_shared_tags_and_removals_keep_the_tag_index_and_heap_right() -> None:
    store = _store()
    tag = b"t" * 16
    for n in range(3):
        store.admit(_item(n, tag=tag), now=0.0)
    assert [i.envelope_id for i in store.with_tag(tag)] == [n.to_bytes(16, "big") for n in range(3)]
    store.remove((1).to_bytes(16, "big"))
    assert [i.envelope_id for i in store.with_tag(tag)] == [
        (0).to_bytes(16, "big"),
        (2).to_bytes(16, "big"),
    ]
    store.remove((0).to_bytes(16, "big"))
    assert [i.envelope_id for i in store.with_tag(tag)] == [(2).to_bytes(16, "big")]
    store.remove((2).to_bytes(16, "big"))
    assert store.with_tag(tag) == []
    for n in range(10, 1_000):
        store.admit(_item(n), now=0.0)
    for n in range(10, 990):
        store.remove(n.to_bytes(16, "big"))
    assert len(store._expiries) <= 2 * len(store) + 64  # stale heap entries are bounded
    again = _item(995)  # re-admitted under a known id: only the new copy's expiry counts
    assert store.next_expiry() == 1_990.0
    assert store.expire(2_000.0) == [n.to_bytes(16, "big") for n in range(990, 1_000)]
    assert store.admit(again, now=0.0).admission.value == "accepted"
    assert store.next_expiry() == 1_995.0


def test_sync_index_per_id_keeps_no_hash_value() -> None:
    """The index keeps each id (and its expiry), not its 1024-bit hash value (164 B an id):
    leaves hash again when they need it. Aggregates stay exact whatever the layout."""
    ids = [n.to_bytes(16, "big") for n in range(0, COUNT * 7919, 7919)]
    index = ItemSet()
    expiry = 1_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for item_id in ids:
            index.add(item_id, expiry)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown / COUNT < 250, f"{grown / COUNT:.0f} B per id"  # 306 B before, 187 B now
    for item_id in ids[::2]:
        index.remove(item_id)
    left = [int.from_bytes(i, "big") for i in ids[1::2]]
    assert index._aggregate((0, 0)) == (len(left), sum(left), sum(map(_hv, left)))
    assert index._hv_of(left[0]) == hash_value(ids[1])


def test_items_from_one_neighbour_share_its_id() -> None:
    """After a restart every item's source is decoded from its own record: the store keeps one
    ``bytes`` per neighbour (49 B per item otherwise, 4.7 MiB of 100,000), and forgets it with
    the neighbour's last item."""
    store = _store()
    for n in range(3):
        item = _item(n)
        item.source = bytes(bytearray(b"s" * 16))  # equal, not the same object
        store.restore(item)
    first, *rest = store.items()
    assert all(other.source is first.source for other in rest)
    for n in range(3):
        store.remove(n.to_bytes(16, "big"))
    assert not store._sources
