"""The relay store: envelopes this node carries, for itself and for others, bounded.

Theory of operation
-------------------
Every envelope a node holds — its own outgoing mail and mail it carries for others — is a
:class:`StoreItem` in one :class:`RelayStore`. Relays cannot read envelopes, so the store knows
only what the outside shows (id, tag, size, expiry) and the routing state that travels beside the
envelope (copies, hops, route hint), plus where the item came from (its *tier*).

Bounds (all from :class:`~meshmsg.config.StoreConfig`):

* a global cap in bytes and in items;
* strangers (peers that are not our contacts) together may fill at most
  ``strangers_total_fraction`` of the byte cap, and one stranger at most
  ``stranger_quota_fraction``: a Sybil flood from fresh identities fills only that slice;
* unverified contacts together may fill at most ``1 - contact_reserved_fraction``, so half of the
  space stays for verified contacts and our own mail;
* an item past its expiry is dropped by :meth:`expire`.

Eviction order when an arriving item does not fit (documented in docs/protocol.md):

1. an item of a *lower* tier than the newcomer, oldest received first (strangers before
   unverified contacts before verified contacts); our own mail is never evicted for others;
2. otherwise the newcomer is refused.

In ONE mode (for comparison with the ONE simulator) tiers and quotas are off and the store drops
the oldest received item that is not being sent, whatever it is, until the newcomer fits — the
ONE's drop-oldest buffer; :meth:`RelayStore.make_room` does the same when a transfer is
announced (the ONE makes room when a transfer starts, ``ActiveRouter.checkReceiving``).
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field

from meshmsg.config import StoreConfig
from meshmsg.core.records import OfferEntry


class Tier(enum.IntEnum):
    """Where an item came from; a lower value is better protected."""

    OWN = 0  # mail we wrote
    VERIFIED = 1  # received from a verified contact
    CONTACT = 2  # received from an unverified contact
    STRANGER = 3  # received from a peer that is not our contact


_LENGTHS: dict[int, int] = {}  # one int object per envelope size (sizes come in a few buckets)


def _shared_length(n: int) -> int:
    """``n``, as an int object shared by every item of that size while there are few sizes: a
    length above 256 is its own 28-byte object per item otherwise."""
    if len(_LENGTHS) < 64:
        return _LENGTHS.setdefault(n, n)
    return _LENGTHS.get(n, n)


@dataclass(slots=True, kw_only=True)
class StoreItem:
    """One envelope copy and its routing state. ``copies`` and ``hops`` change as it travels.

    ``envelope`` is None when the body lives on disk only (``StoreConfig.bodies_on_disk``:
    a carried envelope once its record is committed); ``Holdings.load_body`` asks for it.
    """

    envelope_id: bytes
    envelope: bytes | None
    tag: bytes
    expiry_at: float
    copies: int
    hops: int
    tier: Tier
    source: bytes | None  # peer id of the neighbour it came from (None for our own)
    received_at: float
    route_hint: bytes | None = None
    seq: int = field(default=0)  # arrival order: deterministic oldest-first eviction
    # The Offer entry (id, tag) for this item, built on first use (exchange.sync._offer_entry).
    offer_entry: OfferEntry | None = field(default=None, compare=False, repr=False)
    # Copies promised to transfers still in flight on some link (Spray-and-Wait's budget is
    # ``copies - reserved``, so simultaneous links cannot each hand out half). Not persisted:
    # a crash loses the transfers with it.
    reserved: int = field(default=0, compare=False)
    # ONE mode only: the payload bytes this envelope stands for (``OneModeSize``), so the store
    # counts a 1 MB message of the ONE as 1 MB; 0 otherwise. Not persisted.
    one_size: int = field(default=0, compare=False)
    # ONE mode only: transfers of this copy on the air; the ONE never drops a message being
    # sent to make room (``getNextMessageToRemove(true)``). Not persisted.
    sending: int = field(default=0, compare=False)
    # The envelope's length, kept while its body is on disk only (``envelope`` None).
    length: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.envelope is not None:
            self.length = _shared_length(len(self.envelope))

    @property
    def size(self) -> int:
        return max(self.length, self.one_size)

    def __lt__(self, other: StoreItem) -> bool:
        """Expiry order, then arrival: the order of :class:`RelayStore`'s expiry heap."""
        a, b = self.expiry_at, other.expiry_at  # no tuples: the heap compares a lot
        return a < b or (a == b and self.seq < other.seq)


class Admission(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    EXPIRED = "expired"
    OVER_QUOTA = "over quota"
    TOO_LARGE = "too large"


@dataclass(frozen=True, slots=True, kw_only=True)
class AdmitResult:
    admission: Admission
    evicted: tuple[bytes, ...] = ()


class RelayStore:
    """Bounded envelope store with trust-tier quotas. See the module docstring."""

    def __init__(self, config: StoreConfig, *, one_mode: bool = False) -> None:
        self._config = config
        self._one_mode = one_mode
        self._bodies_on_disk = config.bodies_on_disk and not one_mode
        self._items: dict[bytes, StoreItem] = {}  # insertion order = arrival order
        self._by_tier: dict[Tier, dict[bytes, StoreItem]] = {tier: {} for tier in Tier}
        # tag -> its envelope id, or the ids in arrival order when a forger shares the tag
        # (purges). One id, not a dict of one: a dict per item cost 250 B of 1.1 KiB (#13).
        self._by_tag: dict[bytes, bytes | tuple[bytes, ...]] = {}
        self._bytes_by_tier = dict.fromkeys(Tier, 0)
        self._bytes_by_source: dict[bytes, int] = {}
        # One ``bytes`` object per neighbour, shared by its items: copies decoded from their
        # records after a restart each had their own (49 B x 100,000 carried items, #13).
        self._sources: dict[bytes, bytes] = {}
        # Lazy heap of the items themselves in expiry order (``StoreItem.__lt__``): an entry
        # whose item left the store is skipped when it surfaces, and the heap is rebuilt once
        # such stale entries outnumber the live ones. A tuple per item cost 72 B (#13).
        self._expiries: list[StoreItem] = []
        self._next_seq = 0

    # ------------------------------------------------------------------ queries

    @property
    def one_mode(self) -> bool:
        """The ONE-compatible store (see the module docstring): the ONE's buffer rule, and in
        custody the ONE's global-clock expiry."""
        return self._one_mode

    def __contains__(self, envelope_id: object) -> bool:
        return envelope_id in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, envelope_id: bytes) -> StoreItem | None:
        return self._items.get(envelope_id)

    def with_tag(self, tag: bytes) -> list[StoreItem]:
        """Items whose outer tag is ``tag`` (normally one; a forger may add more)."""
        ids = self._by_tag.get(tag, ())
        return [self._items[ids]] if isinstance(ids, bytes) else [self._items[i] for i in ids]

    def items(self) -> Iterator[StoreItem]:
        """Items in arrival order (oldest first)."""
        return iter(list(self._items.values()))

    def items_in(self, tier: Tier) -> list[StoreItem]:
        """Items of one trust tier, in arrival order."""
        return list(self._by_tier[tier].values())

    @property
    def total_bytes(self) -> int:
        return sum(self._bytes_by_tier.values())

    def bytes_in(self, tier: Tier) -> int:
        return self._bytes_by_tier[tier]

    def next_expiry(self) -> float | None:
        while self._expiries and not self._live(self._expiries[0]):
            heapq.heappop(self._expiries)
        return self._expiries[0].expiry_at if self._expiries else None

    def _live(self, item: StoreItem) -> bool:
        return self._items.get(item.envelope_id) is item

    # ---------------------------------------------------------------- mutation

    def admit(self, item: StoreItem, now: float) -> AdmitResult:
        """Take ``item`` if it fits the bounds, evicting lower tiers if needed."""
        if item.envelope_id in self._items:
            return AdmitResult(admission=Admission.DUPLICATE)
        if item.expiry_at <= now:
            return AdmitResult(admission=Admission.EXPIRED)
        if item.size > self._config.max_store_bytes:
            return AdmitResult(admission=Admission.TOO_LARGE)
        if not self._one_mode and not self._within_quota(item):
            return AdmitResult(admission=Admission.OVER_QUOTA)
        victims = self._choose_victims(item.size, item.tier)
        if victims is None:
            return AdmitResult(admission=Admission.OVER_QUOTA)
        for victim in victims:
            self.remove(victim)  # chosen before any removal, so iteration was not disturbed
        self._insert(item)
        return AdmitResult(admission=Admission.ACCEPTED, evicted=tuple(victims))

    def make_room(self, size: int) -> list[bytes]:
        """ONE mode: drop the oldest items not being sent until ``size`` more bytes fit (or
        nothing is left to drop: the ONE keeps what it dropped then too); return their ids."""
        if not self._one_mode or size > self._config.max_store_bytes:
            return []
        need = self.total_bytes + size - self._config.max_store_bytes
        victims: list[bytes] = []
        for candidate in self._eviction_candidates(Tier.OWN):
            if need <= 0:
                break
            victims.append(candidate.envelope_id)
            need -= candidate.size
        for victim in victims:
            self.remove(victim)
        return victims

    def body_durable(self, envelope_id: bytes) -> None:
        """A record holding this envelope's body was committed: with bodies on disk, a carried
        item lets its body go (our own mail keeps it: few, and sealed again on a heal)."""
        item = self._items.get(envelope_id)
        if self._bodies_on_disk and item is not None and item.tier is not Tier.OWN:
            item.envelope = None

    def restore(self, item: StoreItem) -> None:
        """Re-insert a persisted item after a restart, without quota checks (it fitted before)."""
        if item.envelope_id not in self._items:
            self._insert(item)

    def remove(self, envelope_id: bytes) -> StoreItem | None:
        item = self._items.pop(envelope_id, None)
        if item is None:
            return None
        self._bytes_by_tier[item.tier] -= item.size
        del self._by_tier[item.tier][envelope_id]
        same_tag = self._by_tag[item.tag]
        if isinstance(same_tag, bytes):
            del self._by_tag[item.tag]
        else:
            rest = tuple(i for i in same_tag if i != envelope_id)
            self._by_tag[item.tag] = rest[0] if len(rest) == 1 else rest
        if item.source is not None:
            left = self._bytes_by_source[item.source] - item.size
            if left:
                self._bytes_by_source[item.source] = left
            else:
                del self._bytes_by_source[item.source]
                self._sources.pop(item.source, None)
        # Its heap entry stays until it surfaces, or until stale entries outnumber live ones.
        if len(self._expiries) > 2 * len(self._items) + 64:
            self._expiries = list(self._items.values())
            heapq.heapify(self._expiries)
        return item

    def expire(self, now: float) -> list[bytes]:
        """Drop every item whose expiry has passed; return their ids."""
        gone: list[bytes] = []
        while self._expiries and self._expiries[0].expiry_at <= now:
            item = heapq.heappop(self._expiries)
            if self._live(item):
                gone.append(item.envelope_id)
                self.remove(item.envelope_id)
        return gone

    # ----------------------------------------------------------------- helpers

    def _insert(self, item: StoreItem) -> None:
        item.seq = self._next_seq
        self._next_seq += 1
        self._items[item.envelope_id] = item
        self._by_tier[item.tier][item.envelope_id] = item
        same_tag = self._by_tag.get(item.tag)
        if same_tag is None:
            self._by_tag[item.tag] = item.envelope_id
        else:
            same_tag = (same_tag,) if isinstance(same_tag, bytes) else same_tag
            self._by_tag[item.tag] = (*same_tag, item.envelope_id)
        self._bytes_by_tier[item.tier] += item.size
        if item.source is not None:
            item.source = self._sources.setdefault(item.source, item.source)
            self._bytes_by_source[item.source] = (
                self._bytes_by_source.get(item.source, 0) + item.size
            )
        heapq.heappush(self._expiries, item)

    def _within_quota(self, item: StoreItem) -> bool:
        cap = self._config.max_store_bytes
        if item.tier is Tier.STRANGER:
            stranger_total = self._bytes_by_tier[Tier.STRANGER] + item.size
            if stranger_total > cap * self._config.strangers_total_fraction:
                return False
            from_source = self._bytes_by_source.get(item.source or b"", 0) + item.size
            return from_source <= cap * self._config.stranger_quota_fraction
        if item.tier is Tier.CONTACT:
            share = 1.0 - self._config.contact_reserved_fraction
            return self._bytes_by_tier[Tier.CONTACT] + item.size <= cap * share
        return True

    def own_room(self, size: int, count: int = 1) -> bool:
        """Whether ``count`` items of our own mail, ``size`` bytes in all, would be admitted."""
        return size <= self._config.max_store_bytes and (
            self._choose_victims(size, Tier.OWN, count) is not None
        )

    def _choose_victims(self, size: int, tier: Tier, count: int = 1) -> list[bytes] | None:
        """Ids to evict so ``count`` newcomers of ``tier`` and ``size`` bytes in all fit, or
        None if they cannot fit without breaking the order."""
        need_bytes = self.total_bytes + size - self._config.max_store_bytes
        need_items = len(self._items) + count - self._config.max_store_envelopes
        victims: list[bytes] = []
        for candidate in self._eviction_candidates(tier):
            if need_bytes <= 0 and need_items <= 0:
                break
            victims.append(candidate.envelope_id)
            need_bytes -= candidate.size
            need_items -= 1
        if need_bytes > 0 or need_items > 0:
            return None
        return victims

    def _eviction_candidates(self, newcomer: Tier) -> Iterator[StoreItem]:
        """Candidates in eviction order: worst tier first, oldest first within a tier."""
        if self._one_mode:
            yield from (item for item in self._items.values() if not item.sending)
            return
        for tier in (Tier.STRANGER, Tier.CONTACT, Tier.VERIFIED):
            if _may_evict(tier, newcomer):
                yield from self._by_tier[tier].values()


def _may_evict(victim: Tier, newcomer: Tier) -> bool:
    """Only a strictly worse-protected tier makes room; own mail is never evicted for others."""
    return victim is not Tier.OWN and victim > newcomer
