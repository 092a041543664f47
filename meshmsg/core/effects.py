"""Effects: what the core asks its driver to do (imperative commands).

After any input the driver drains ``Node.next_effect()`` until it returns ``None`` and carries
each effect out in order. The trio driver (``meshmsg.net``) and the simulator (``meshmsg.sim``)
handle exactly this closed set; a ``match`` over :data:`Effect` ending in ``assert_never`` keeps
them honest.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from meshmsg.errors import CloseReason

LinkId = int
"""A link is named by the driver: any int unique among the node's open links."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Transmit:
    """Send ``data`` (whole encrypted frames) on ``link``, in order.

    ``envelopes`` counts the envelope transfers inside, so a link model can pace them (the
    simulator's ONE mode charges one transfer step per envelope); it is 0 for control traffic.
    It is a simulator concern kept in the core on purpose: the frames are encrypted, so only
    the core knows how many envelopes they carry. The trio driver ignores it.
    """

    link: LinkId
    data: bytes
    envelopes: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Dial:
    """Open a link to ``address`` (``host:port`` in net/, a node name in the simulator)."""

    address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseLink:
    """Close ``link`` after sending what was already queued; ``reason`` is for logs and stats."""

    link: LinkId
    reason: CloseReason


class RecordKind(enum.IntEnum):
    """What a persisted record holds; the value bytes are the core's own strict encoding."""

    META = 0  # node-wide counters and settings (the monotonic period, ...)
    CONTACT = 1  # a contact: public identity, trust, name, state
    CHANNEL = 2  # end-to-end key state of one contact (counters, period keys)
    ENVELOPE = 3  # a relay store item: envelope bytes plus routing state
    MESSAGE = 4  # one message of a conversation, with its timeline
    TOMBSTONE = 5  # a purge token or a delivered id, remembered until it expires


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredRecord:
    """One record to write: ``(kind, key)`` is unique; ``value`` replaces any earlier value."""

    kind: RecordKind
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Persist:
    """Commit these writes and deletes atomically and durably, then call
    ``Node.storage_committed(token, now=...)``.

    The core acknowledges custody, and lets an envelope whose key state changed leave, only after
    that call: durable state is committed before it is acknowledged.
    """

    token: int
    puts: tuple[StoredRecord, ...] = ()
    deletes: tuple[tuple[RecordKind, bytes], ...] = ()
    # Some put or delete removes key material (a period rollover, a heal, a removed contact):
    # the driver makes the replaced bytes leave the files at once (a WAL checkpoint).
    erases_keys: bool = False


Effect = Transmit | Dial | CloseLink | Persist
