"""The node-wide tag index: which contact, epoch, period and counter a 16-byte tag belongs to.

Theory of operation
-------------------
Every envelope carries only a pseudo-random tag. A node recognises mail for itself by looking
the tag up here: one dict lookup, whatever the number of contacts (BTP's precomputed tag
table). The entries are written by the contacts' :class:`~meshmsg.core.e2e.ContactChannel`
objects, which derive the tags of their receive windows and keep them up to date as windows
slide, periods end and epochs are dropped; nothing else writes here. The index holds no key:
tags are one-way outputs, so keeping a deleted period's tags for a while (as EXPIRED, to report
late mail) does not weaken forward secrecy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from meshmsg.config import MessageLimits
from meshmsg.errors import LocalProtocolError


class MatchKind(enum.Enum):
    """What a recognised tag means."""

    LIVE = "live"  # decryptable: hand the envelope to ContactChannel.open
    RECEIVED = "received"  # already delivered: a duplicate, drop it (do not relay it)
    EXPIRED = "expired"  # ours, but its keys are deleted: report it, it cannot be decrypted


@dataclass(frozen=True, slots=True, kw_only=True)
class Match:
    """A recognised tag."""

    peer_id: bytes
    epoch: int
    period: int
    counter: int
    kind: MatchKind


TagEntry = tuple[bytes, int, int, int, MatchKind]
"""(peer id, epoch, period, counter, kind): a tuple, as ~10^5 entries live per node."""


class TagIndex:
    """Map from tag to (contact, epoch, period, counter, kind), bounded by ``max_contacts``.

    :meth:`lookup` is for the Node; :meth:`put`, :meth:`drop`, :meth:`entry` and
    :meth:`entries_of` are for channels, which own their contact's entries.
    """

    __slots__ = ("_entries", "_max_contacts", "_owners")

    def __init__(self, *, max_contacts: int = MessageLimits().max_contacts) -> None:
        self._entries: dict[bytes, TagEntry] = {}
        self._owners: dict[bytes, int] = {}  # peer id -> entries it holds
        self._max_contacts = max_contacts

    def lookup(self, tag: bytes) -> Match | None:
        """Whose tag this is, or ``None`` (not for us: relay it)."""
        entry = self._entries.get(tag)
        if entry is None:
            return None
        peer_id, epoch, period, counter, kind = entry
        return Match(peer_id=peer_id, epoch=epoch, period=period, counter=counter, kind=kind)

    def __len__(self) -> int:
        return len(self._entries)

    def count(self, peer_id: bytes) -> int:
        """Entries held for one contact."""
        return self._owners.get(peer_id, 0)

    def forget_contact(self, peer_id: bytes) -> None:
        """Remove every tag of ``peer_id`` (contact removed or re-paired). O(index size)."""
        if self._owners.pop(peer_id, None) is None:
            return
        for tag in [t for t, e in self._entries.items() if e[0] == peer_id]:
            del self._entries[tag]

    def entry(self, tag: bytes) -> TagEntry | None:
        return self._entries.get(tag)

    def entries_of(self, peer_id: bytes) -> list[tuple[bytes, TagEntry]]:
        """All entries of one contact. O(index size): for moving a channel between indexes."""
        return [(t, e) for t, e in self._entries.items() if e[0] == peer_id]

    def put(self, tag: bytes, entry: TagEntry) -> None:
        """Add or update a tag.

        Raises:
            LocalProtocolError: a new contact would exceed ``max_contacts``.
        """
        existing = self._entries.get(tag)
        if existing is not None and existing[0] != entry[0]:
            return  # a 2^-128 collision with another contact's tag: the first owner keeps it
        if existing is None:
            owners = self._owners
            if entry[0] not in owners and len(owners) >= self._max_contacts:
                raise LocalProtocolError(f"tag index full: over {self._max_contacts} contacts")
            owners[entry[0]] = owners.get(entry[0], 0) + 1
        self._entries[tag] = entry

    def drop(self, tag: bytes, peer_id: bytes) -> None:
        """Remove a tag if ``peer_id`` owns it."""
        existing = self._entries.get(tag)
        if existing is None or existing[0] != peer_id:
            return
        del self._entries[tag]
        left = self._owners[peer_id] - 1
        if left:
            self._owners[peer_id] = left
        else:
            del self._owners[peer_id]
