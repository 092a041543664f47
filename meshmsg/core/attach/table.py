"""What a node carries of each attachment: role, chunks held, routing state, quotas, eviction.

Custody, quotas, TTL and the copy budget are per attachment, never per chunk: a relay reserves
an attachment's whole ciphertext size against its trust tier's quota when it takes a copy, so a
transfer it started is never starved half-way by a later one. Eviction prefers to keep what is
nearly complete: among the attachments a newcomer may push out (a strictly worse-protected tier,
never our own or ones we want), the least complete goes first.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from meshmsg.config import AttachConfig
from meshmsg.core.attach.assembly import AttachmentRef, Bitfield
from meshmsg.core.attach.format import Manifest
from meshmsg.core.store import Tier


class Role(enum.IntEnum):
    """Why a node holds an attachment."""

    OWN = 0  # we sealed it: every chunk, kept until the completion receipt or expiry
    WANTED = 1  # addressed to us: fetched, kept as the (encrypted) file until the user deletes
    RELAY = 2  # carried for others: custody with quota, TTL and copy budget
    PENDING = 3  # addressed to us but not fetched (an automatic download rule said wait)


@dataclass(slots=True, kw_only=True)
class Carried:
    """One attachment at this node. ``held`` is restored from the chunk store, not persisted."""

    attachment_id: bytes
    manifest: Manifest
    role: Role
    expiry_at: float
    copies: int
    tier: Tier
    source: bytes | None = None  # the peer a relay copy came from (per-stranger quota)
    ref: AttachmentRef | None = None  # key, name, size: our own and wanted attachments only
    peer_id: bytes | None = None  # the contact it came from or goes to
    message_id: bytes | None = None  # the message that carries its ref
    held: Bitfield = field(init=False)
    storing: set[int] = field(default_factory=set)  # StoreChunk issued, not yet confirmed

    def __post_init__(self) -> None:
        self.held = Bitfield(self.manifest.count)

    @property
    def size(self) -> int:
        return self.manifest.ciphertext_bytes

    @property
    def fetching(self) -> bool:
        return self.role in (Role.WANTED, Role.RELAY) and not self.held.complete

    def wanted_from(self, theirs: Bitfield) -> Iterator[int]:
        """Chunks the peer holds that we neither hold nor are storing."""
        return (i for i in self.held.missing_from(theirs) if i not in self.storing)


class AttachmentTable:
    """Every attachment at this node, with byte accounting per tier and per stranger."""

    __slots__ = ("_by_source", "_by_tier", "_config", "items")

    def __init__(self, config: AttachConfig) -> None:
        self._config = config
        self.items: dict[bytes, Carried] = {}
        self._by_tier: dict[Tier, int] = dict.fromkeys(Tier, 0)
        self._by_source: dict[bytes, int] = {}

    def __contains__(self, attachment_id: object) -> bool:
        return attachment_id in self.items

    def get(self, attachment_id: bytes) -> Carried | None:
        return self.items.get(attachment_id)

    @property
    def total_bytes(self) -> int:
        return sum(self._by_tier.values())

    def add(self, item: Carried) -> None:
        """Insert without checks (our own, wanted, or restored after a restart)."""
        self.remove(item.attachment_id)
        self.items[item.attachment_id] = item
        self._by_tier[item.tier] += item.size
        if item.source is not None:
            self._by_source[item.source] = self._by_source.get(item.source, 0) + item.size

    def remove(self, attachment_id: bytes) -> Carried | None:
        item = self.items.pop(attachment_id, None)
        if item is None:
            return None
        self._by_tier[item.tier] -= item.size
        if item.source is not None:
            left = self._by_source[item.source] - item.size
            if left:
                self._by_source[item.source] = left
            else:
                del self._by_source[item.source]
        return item

    def admit(self, item: Carried, now: float) -> list[bytes] | None:
        """Take a relay copy if its tier's quota allows, evicting worse-protected attachments;
        return the ids evicted, or None if it does not fit."""
        if item.attachment_id in self.items or item.expiry_at <= now:
            return None
        if not self._within_quota(item):
            return None
        victims = self._victims(item.size, item.tier, now)
        if victims is None:
            return None
        for victim in victims:
            self.remove(victim)
        self.add(item)
        return victims

    def expired(self, now: float) -> list[bytes]:
        """Relay and own copies past their expiry (wanted files stay until the user deletes)."""
        return [
            i.attachment_id for i in self.items.values()
            if i.expiry_at <= now and i.role in (Role.RELAY, Role.OWN)
        ]  # fmt: skip

    def next_expiry(self) -> float | None:
        times = [i.expiry_at for i in self.items.values() if i.role in (Role.RELAY, Role.OWN)]
        return min(times, default=None)

    def _within_quota(self, item: Carried) -> bool:
        cap = self._config.max_store_bytes
        if item.size > cap:
            return False
        if item.tier is Tier.STRANGER:
            strangers = self._by_tier[Tier.STRANGER] + item.size
            if strangers > cap * self._config.strangers_total_fraction:
                return False
            mine = self._by_source.get(item.source or b"", 0) + item.size
            return mine <= cap * self._config.stranger_quota_fraction
        return True

    def _victims(self, size: int, tier: Tier, now: float) -> list[bytes] | None:
        need = self.total_bytes + size - self._config.max_store_bytes
        victims: list[bytes] = []
        for candidate in self._eviction_order(tier, now):
            if need <= 0:
                break
            victims.append(candidate.attachment_id)
            need -= candidate.size
        return victims if need <= 0 else None

    def _eviction_order(self, newcomer: Tier, now: float) -> list[Carried]:
        """Relay copies a newcomer may push out: expired first, then the worst tier, then the
        least complete (a nearly complete attachment is worth the most), then soonest expiry."""
        candidates = [
            i for i in self.items.values()
            if i.role is Role.RELAY and (i.expiry_at <= now or i.tier > newcomer)
        ]  # fmt: skip
        return sorted(
            candidates,
            key=lambda i: (i.expiry_at > now, -i.tier, i.held.held / i.held.count, i.expiry_at),
        )
