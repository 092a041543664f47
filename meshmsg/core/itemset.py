"""The index that set reconciliation compares: ids in a trie with per-node aggregates.

:class:`ItemSet` keeps each 16-byte id (with its expiry) in a trie of fanout ``F = 2**b`` over the
id bits; every trie node keeps ``count``, ``idsum`` and ``hsum`` of its subtree, updated along one
root-to-leaf path on each add and remove. :mod:`meshmsg.core.reconcile` explains what the
aggregates are for and runs the sessions over this index; the split keeps each module readable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Final

from meshmsg.errors import ConfigError, LocalProtocolError

ID_BYTES: Final = 16
HV_BYTES: Final = 128  # width of hsum: 1024 bits keeps planted sum collisions out of reach
ID_BITS: Final = 8 * ID_BYTES
_HV_DOMAIN: Final = b"meshmsg/sync/hv\x00"
_MAX_EXPIRY: Final = (1 << 64) - 1

Aggregate = tuple[int, int, int]  # (count, idsum, hsum) as exact integers
Addr = tuple[int, int]  # (depth, prefix): a trie node both peers can name
_EMPTY: Final[Aggregate] = (0, 0, 0)


def hash_value(item_id: bytes) -> int:
    """The 1024-bit value an id contributes to ``hsum``."""
    return int.from_bytes(hashlib.shake_128(_HV_DOMAIN + item_id).digest(HV_BYTES), "big")


def _hv(x: int) -> int:
    """``hash_value`` of an id held as an int. Leaves keep ids only and hash again when they
    need an hv (a split, a remove, a leaf's child aggregates): the 1024-bit hv kept per id
    was 164 B of a store's ~1.1 KiB per item (issue #13), and those uses touch a few ids."""
    return hash_value(x.to_bytes(ID_BYTES, "big"))


def _fanout_bits(fanout: int) -> int:
    if fanout not in (2, 4, 16, 256):
        raise ConfigError(f"sync fanout must be 2, 4, 16 or 256, not {fanout}")
    return fanout.bit_length() - 1


def _id_int(item_id: bytes) -> int:
    if not isinstance(item_id, bytes) or len(item_id) != ID_BYTES:
        raise LocalProtocolError("an item id is exactly 16 bytes")
    return int.from_bytes(item_id, "big")


# ============================================================================== the index


class _TrieNode:
    """A trie node: aggregates of its subtree, and either children or (as a leaf) its ids."""

    __slots__ = ("count", "hsum", "idsum", "kids", "leaf", "sorted_ids")

    def __init__(self) -> None:
        self.count = 0
        self.idsum = 0
        self.hsum = 0
        self.kids: list[_TrieNode | None] | None = None
        self.leaf: set[int] | None = set()  # a leaf's ids (their hv is hashed again: _hv)
        # The subtree's ids ascending, kept until the subtree changes: stores change far less
        # often than they meet, and most meetings list a whole small store.
        self.sorted_ids: list[int] | None = None


class ItemSet:
    """The indexed set of (id, expiry) items that reconciliation compares.

    Args:
        fanout: children per trie node (2, 4, 16 or 256); both peers must use the same.
        leaf_capacity: ids a leaf holds before it splits (local memory layout only).

    Raises:
        ConfigError: a fanout other than 2, 4, 16 or 256, or a capacity below 1.
    """

    __slots__ = ("_bits", "_cap", "_expiry", "_mask", "_max_depth", "_root")

    def __init__(self, *, fanout: int = 16, leaf_capacity: int = 32) -> None:
        if leaf_capacity < 1:
            raise ConfigError("leaf_capacity must be at least 1")
        self._bits = _fanout_bits(fanout)
        self._mask = fanout - 1
        self._max_depth = ID_BITS // self._bits
        self._cap = leaf_capacity
        self._expiry: dict[int, int] = {}
        self._root = _TrieNode()

    @property
    def fanout(self) -> int:
        return 1 << self._bits

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, item_id: object) -> bool:
        if not isinstance(item_id, bytes) or len(item_id) != ID_BYTES:
            return False
        return int.from_bytes(item_id, "big") in self._expiry

    def __iter__(self) -> Iterator[bytes]:
        """Ids in ascending order (deterministic, whatever the insertion order)."""
        return (x.to_bytes(ID_BYTES, "big") for x in sorted(self._expiry))

    def expiry(self, item_id: bytes) -> int | None:
        """The expiry stored with ``item_id`` (seconds), or None if absent."""
        return self._expiry.get(_id_int(item_id))

    def add(self, item_id: bytes, expiry: int) -> bool:
        """Add an item; re-adding an id only updates its expiry. Returns True if it was new.

        Raises:
            LocalProtocolError: an id that is not 16 bytes or an expiry outside uint64.
        """
        x = _id_int(item_id)
        if not 0 <= expiry <= _MAX_EXPIRY:
            raise LocalProtocolError("expiry must be an unsigned 64-bit number of seconds")
        if x in self._expiry:
            self._expiry[x] = expiry
            return False
        self._expiry[x] = expiry
        h = hash_value(item_id)
        node, shift, mask = self._root, ID_BITS, self._mask
        while True:  # the hot path of a 100,000-id store: kept flat
            node.count += 1
            node.sorted_ids = None
            node.idsum += x
            node.hsum += h
            kids = node.kids
            if kids is None:
                leaf = node.leaf
                assert leaf is not None
                leaf.add(x)
                if len(leaf) > self._cap and shift > 0:
                    self._split(node, (ID_BITS - shift) // self._bits)
                return True
            shift -= self._bits
            child = kids[(x >> shift) & mask]
            if child is None:
                child = kids[(x >> shift) & mask] = _TrieNode()
            node = child

    def remove(self, item_id: bytes) -> bool:
        """Remove an item if present. Returns True if it was there.

        Raises:
            LocalProtocolError: an id that is not 16 bytes.
        """
        x = _id_int(item_id)
        if self._expiry.pop(x, None) is None:
            return False
        path: list[tuple[_TrieNode, int]] = []  # (internal node, child index taken)
        node, depth = self._root, 0
        while node.kids is not None:
            i = (x >> (ID_BITS - (depth + 1) * self._bits)) & self._mask
            path.append((node, i))
            child = node.kids[i]
            assert child is not None
            node, depth = child, depth + 1
        assert node.leaf is not None
        node.leaf.remove(x)
        h = _hv(x)
        for n in [*(p for p, _ in path), node]:
            n.count -= 1
            n.sorted_ids = None
            n.idsum -= x
            n.hsum -= h
        self._shrink(path)
        return True

    def _split(self, node: _TrieNode, depth: int) -> None:
        assert node.leaf is not None
        kids: list[_TrieNode | None] = [None] * (self._mask + 1)
        shift = ID_BITS - (depth + 1) * self._bits
        for x in node.leaf:
            h = _hv(x)
            i = (x >> shift) & self._mask
            child = kids[i]
            if child is None:
                child = kids[i] = _TrieNode()
            child.count += 1
            child.idsum += x
            child.hsum += h
            assert child.leaf is not None
            child.leaf.add(x)
        node.kids, node.leaf = kids, None
        for child in kids:  # crafted ids may share the next digit too
            if child is not None and child.count > self._cap and depth + 1 < self._max_depth:
                self._split(child, depth + 1)

    def _shrink(self, path: list[tuple[_TrieNode, int]]) -> None:
        """Drop emptied children and fold a small subtree back into a leaf (hysteresis: cap/2)."""
        for parent, i in reversed(path):
            assert parent.kids is not None
            child = parent.kids[i]
            if child is not None and child.count == 0:
                parent.kids[i] = None
        for parent, _ in path:
            if parent.count <= self._cap // 2:
                leaf: set[int] = set()
                _collect(parent, leaf)
                parent.kids, parent.leaf = None, leaf
                return

    # ---------------------------------------------------------------- queries for sessions

    def _locate(self, addr: Addr) -> _TrieNode | set[int] | None:
        """The trie node at ``addr``, or the ids of ``addr`` filtered from a shallower leaf."""
        depth, prefix = addr
        node, d = self._root, 0
        while d < depth:
            if node.kids is None:
                assert node.leaf is not None
                shift = ID_BITS - depth * self._bits
                return {x for x in node.leaf if x >> shift == prefix}
            child = node.kids[(prefix >> ((depth - d - 1) * self._bits)) & self._mask]
            if child is None:
                return None
            node, d = child, d + 1
        return node

    def _aggregate(self, addr: Addr) -> Aggregate:
        found = self._locate(addr)
        if found is None:
            return _EMPTY
        if isinstance(found, _TrieNode):
            return found.count, found.idsum, found.hsum
        return len(found), sum(found), sum(_hv(x) for x in found)

    def _child_aggregates(self, addr: Addr) -> list[Aggregate]:
        found = self._locate(addr)
        fanout = self._mask + 1
        if found is None:
            return [_EMPTY] * fanout
        if isinstance(found, _TrieNode) and found.kids is not None:
            return [_EMPTY if k is None else (k.count, k.idsum, k.hsum) for k in found.kids]
        items = found if isinstance(found, set) else found.leaf
        assert items is not None
        shift = ID_BITS - (addr[0] + 1) * self._bits
        acc = [[0, 0, 0] for _ in range(fanout)]
        for x in items:
            a = acc[(x >> shift) & self._mask]
            a[0] += 1
            a[1] += x
            a[2] += _hv(x)
        return [(a[0], a[1], a[2]) for a in acc]

    def _ids_in(self, addr: Addr) -> list[int]:
        """The ids of ``addr`` in ascending order. Callers must not change the list: it may be
        the node's cached one, shared with other sessions."""
        found = self._locate(addr)
        if found is None:
            return []
        if isinstance(found, set):
            return sorted(found)
        if found.sorted_ids is None:
            out: set[int] = set()
            _collect(found, out)
            found.sorted_ids = sorted(out)
        return found.sorted_ids

    def _has(self, x: int) -> bool:
        return x in self._expiry

    def _absent(self, xs: list[int]) -> list[int]:
        """Positions in ``xs`` of the ids we do not hold (one pass, no call per id)."""
        held = self._expiry
        return [i for i, x in enumerate(xs) if x not in held]

    def _present(self, xs: set[int], *, held: bool) -> list[int]:
        """The ids of ``xs`` that we hold (``held``) or lack, ascending."""
        expiry = self._expiry
        return sorted([x for x in xs if (x in expiry) is held])

    def _hv_of(self, x: int) -> int | None:
        """The stored hv of a present id, or None."""
        return _hv(x) if x in self._expiry else None


def _collect(node: _TrieNode, out: set[int]) -> None:
    if node.kids is None:
        assert node.leaf is not None
        out.update(node.leaf)
        return
    for child in node.kids:
        if child is not None:
            _collect(child, out)
