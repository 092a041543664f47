"""Purge tokens: proof that an envelope reached its recipient, so carriers drop their copies.

The recipient of an envelope learns its 16-byte *token*; the envelope's outer tag is a hash of
the token (:func:`meshmsg.core.envelope.tag_of_token`). A carrier shown a token whose hash equals
a stored envelope's tag drops that envelope (nobody else can produce a preimage), keeps the
token until the envelope would have expired anyway, refuses the envelope if it is offered again,
and passes the token on at later meetings (as an item of the reconciliation set).

Trust (issue #11, finding 3). Anyone can send random tokens, and a token that matches nothing
cannot be checked. So every token gets a *tier*, as relay-store items do
(:class:`~meshmsg.core.store.Tier`), and a *believed* flag (:func:`judge`):

* believed: we opened the envelope ourselves, the token matches an envelope we hold or handed
  over (a preimage of a real tag), or a contact sent it. Only believed tokens are persisted,
  reconciled and pushed to other links;
* not believed (a stranger's token that matches nothing we hold): kept in memory only, so a
  copy arriving later is refused, and never passed on.

Bounds, on entries (``max_entries``): strangers together at most ``strangers_total_fraction``,
one stranger at most ``stranger_quota_fraction``, unverified contacts at most
``1 - contact_reserved_fraction`` (the relay store's fractions). When the table is full a
newcomer pushes out a token of its own tier or a worse one: worst tier first, soonest expiry
first; never a better-protected one, so strangers cannot evict our own or our contacts' tokens.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from meshmsg.config import StoreConfig
from meshmsg.core.store import Tier


def tombstone_id(token: bytes) -> bytes:
    """The reconciliation id of a token (distinct from every envelope id by domain separation)."""
    return hashlib.blake2b(token, digest_size=16, person=b"meshmsg-tomb-v1").digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Tombstone:
    token: bytes
    tag: bytes
    expiry_at: float
    tier: Tier = Tier.OWN
    source: bytes | None = None  # peer id of the neighbour it came from (None: ours)
    believed: bool = True  # persisted, reconciled and passed on (see the module docstring)

    @property
    def item_id(self) -> bytes:
        return tombstone_id(self.token)


def judge(source_tier: Tier, matched: Iterable[Tier]) -> tuple[Tier, bool]:
    """Tier and belief of a token from a peer of ``source_tier`` whose tag matches envelopes
    we hold of tiers ``matched``.

    A match proves the token is the preimage of a tag we carry, so it is as well protected as
    the best envelope it matches; otherwise only a contact's word makes it believed. A match
    on an envelope a stranger planted with the tag of a ground token stays a stranger's: its
    cost is an envelope in the stranger's store quota per token.
    """
    tiers = [source_tier, *matched]
    best = min(tiers)
    believed = best is not Tier.STRANGER or len(tiers) > 1
    return best, believed


class Tombstones:
    """Tokens by tag and by reconciliation id, at most ``max_entries``, with tier quotas."""

    def __init__(self, max_entries: int, store: StoreConfig | None = None) -> None:
        quotas = store or StoreConfig()
        self._max = max_entries
        self._stranger_total = int(max_entries * quotas.strangers_total_fraction)
        self._per_stranger = int(max_entries * quotas.stranger_quota_fraction)
        self._contact_total = int(max_entries * (1.0 - quotas.contact_reserved_fraction))
        self._by_tag: dict[bytes, Tombstone] = {}
        self._by_id: dict[bytes, Tombstone] = {}
        self._heap: list[tuple[float, bytes]] = []  # all, by expiry (lazy)
        self._tier_heaps: dict[Tier, list[tuple[float, bytes]]] = {t: [] for t in Tier}
        self._per_tier = dict.fromkeys(Tier, 0)
        self._per_source: dict[bytes, int] = {}
        # Tags of envelopes we handed over and no longer hold, with their tier and expiry: a
        # token for one of them is as founded as one for an envelope we hold. Oldest first out.
        self._handed: dict[bytes, tuple[Tier, float]] = {}

    def __len__(self) -> int:
        return len(self._by_tag)

    def __iter__(self) -> Iterator[Tombstone]:
        return iter(list(self._by_tag.values()))

    def has_tag(self, tag: bytes) -> bool:
        return tag in self._by_tag

    def by_tag(self, tag: bytes) -> Tombstone | None:
        return self._by_tag.get(tag)

    def by_id(self, item_id: bytes) -> Tombstone | None:
        return self._by_id.get(item_id)

    def note_handed_over(self, tag: bytes, tier: Tier, expiry_at: float) -> None:
        """An envelope with ``tag`` left our store for another node (not by expiry or purge)."""
        self._handed.pop(tag, None)
        self._handed[tag] = (tier, expiry_at)
        while len(self._handed) > self._max:
            del self._handed[next(iter(self._handed))]

    def handed_over(self, tag: bytes, now: float) -> list[Tier]:
        """The tier of the envelope with ``tag`` we handed over, if any and not yet expired."""
        entry = self._handed.get(tag)
        if entry is None or entry[1] <= now:
            return []
        return [entry[0]]

    def count(self, tier: Tier) -> int:
        return self._per_tier[tier]

    def add(self, stone: Tombstone) -> list[Tombstone]:
        """Remember ``stone`` if its tier's quota allows; return the tombstones pushed out to
        stay within the bound (``stone`` itself when nothing may make room for it).

        A token we hold already is replaced only by a better-founded copy of it (believed where
        it was not, or of a better tier), which then no longer counts against a stranger.
        """
        old = self._by_tag.get(stone.tag)
        if old is not None:
            if (not stone.believed, stone.tier) >= (not old.believed, old.tier):
                return []
            self._forget(old)
        if not self._within_quota(stone):
            if old is not None:
                self._insert(old)  # the better copy does not fit: keep what we had
                return []
            return [stone]
        self._insert(stone)
        evicted: list[Tombstone] = []
        while len(self._by_tag) > self._max:
            victim = self._pop_victim(stone.tier)
            if victim is None:  # only better-protected tokens: the newcomer does not fit
                self._forget(stone)
                victim = stone
            evicted.append(victim)
        self._compact()
        return evicted

    def expire(self, now: float) -> list[Tombstone]:
        gone: list[Tombstone] = []
        while self._heap and self._heap[0][0] <= now:
            _, tag = heapq.heappop(self._heap)
            stone = self._by_tag.get(tag)
            if stone is not None and stone.expiry_at <= now:
                self._forget(stone)
                gone.append(stone)
        self._compact()
        return gone

    def next_expiry(self) -> float | None:
        while self._heap and self._heap[0][1] not in self._by_tag:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    # ----------------------------------------------------------------- helpers

    def _within_quota(self, stone: Tombstone) -> bool:
        if stone.tier is Tier.STRANGER:
            if self._per_tier[Tier.STRANGER] + 1 > self._stranger_total:
                return False
            return self._per_source.get(stone.source or b"", 0) + 1 <= self._per_stranger
        if stone.tier is Tier.CONTACT:
            return self._per_tier[Tier.CONTACT] + 1 <= self._contact_total
        return True

    def _insert(self, stone: Tombstone) -> None:
        self._by_tag[stone.tag] = stone
        self._by_id[stone.item_id] = stone
        entry = (stone.expiry_at, stone.tag)
        heapq.heappush(self._heap, entry)
        heapq.heappush(self._tier_heaps[stone.tier], entry)
        self._per_tier[stone.tier] += 1
        if stone.tier is Tier.STRANGER and stone.source is not None:
            self._per_source[stone.source] = self._per_source.get(stone.source, 0) + 1

    def _forget(self, stone: Tombstone) -> None:
        """Drop ``stone`` from the maps and counts (heap entries go lazily)."""
        del self._by_tag[stone.tag]
        del self._by_id[stone.item_id]
        self._per_tier[stone.tier] -= 1
        if stone.tier is Tier.STRANGER and stone.source is not None:
            left = self._per_source[stone.source] - 1
            if left:
                self._per_source[stone.source] = left
            else:
                del self._per_source[stone.source]

    def _pop_victim(self, newcomer: Tier) -> Tombstone | None:
        """The soonest-expiring token of the worst tier not better than ``newcomer``."""
        for tier in sorted(Tier, reverse=True):
            if tier < newcomer:
                return None
            heap = self._tier_heaps[tier]
            while heap:
                entry = heapq.heappop(heap)
                stone = self._by_tag.get(entry[1])
                if stone is not None and stone.tier is tier and stone.expiry_at == entry[0]:
                    self._forget(stone)
                    return stone
        return None

    def _compact(self) -> None:
        """Rebuild heaps that are mostly stale entries (each forgotten token leaves one in the
        heap it did not leave through), so they stay within a constant factor of the table."""
        if len(self._heap) > 2 * len(self._by_tag) + 64:
            self._heap = [(s.expiry_at, s.tag) for s in self._by_tag.values()]
            heapq.heapify(self._heap)
        for tier, heap in self._tier_heaps.items():
            if len(heap) > 2 * self._per_tier[tier] + 64:
                fresh = [(s.expiry_at, s.tag) for s in self._by_tag.values() if s.tier is tier]
                heapq.heapify(fresh)
                self._tier_heaps[tier] = fresh
