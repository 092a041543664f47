"""Purge tokens: proof that an envelope reached its recipient, so carriers drop their copies.

The recipient of an envelope learns its 16-byte *token*; the envelope's outer tag is a hash of
the token (:func:`meshmsg.core.envelope.tag_of_token`). A carrier shown a token whose hash equals
a stored envelope's tag drops that envelope (nobody else can produce a preimage), keeps the
token until the envelope would have expired anyway, refuses the envelope if it is offered again,
and passes the token on at later meetings (as an item of the reconciliation set). Bounded:
oldest expiry first out.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterator
from dataclasses import dataclass


def tombstone_id(token: bytes) -> bytes:
    """The reconciliation id of a token (distinct from every envelope id by domain separation)."""
    return hashlib.blake2b(token, digest_size=16, person=b"meshmsg-tomb-v1").digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Tombstone:
    token: bytes
    tag: bytes
    expiry_at: float

    @property
    def item_id(self) -> bytes:
        return tombstone_id(self.token)


class Tombstones:
    """Tokens by tag and by reconciliation id, at most ``max_entries``."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._by_tag: dict[bytes, Tombstone] = {}
        self._by_id: dict[bytes, Tombstone] = {}
        self._heap: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        return len(self._by_tag)

    def __iter__(self) -> Iterator[Tombstone]:
        return iter(list(self._by_tag.values()))

    def has_tag(self, tag: bytes) -> bool:
        return tag in self._by_tag

    def by_id(self, item_id: bytes) -> Tombstone | None:
        return self._by_id.get(item_id)

    def add(self, stone: Tombstone) -> list[Tombstone]:
        """Remember ``stone``; return the tombstones pushed out to stay within the bound."""
        if stone.tag in self._by_tag:
            return []
        self._by_tag[stone.tag] = stone
        self._by_id[stone.item_id] = stone
        heapq.heappush(self._heap, (stone.expiry_at, stone.tag))
        evicted: list[Tombstone] = []
        while len(self._by_tag) > self._max:
            evicted.extend(self._pop_oldest())
        return evicted

    def expire(self, now: float) -> list[Tombstone]:
        gone: list[Tombstone] = []
        while self._heap and self._heap[0][0] <= now:
            gone.extend(self._pop_oldest())
        return gone

    def next_expiry(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def _pop_oldest(self) -> list[Tombstone]:
        _, tag = heapq.heappop(self._heap)
        stone = self._by_tag.pop(tag, None)
        if stone is None:
            return []
        del self._by_id[stone.item_id]
        return [stone]
