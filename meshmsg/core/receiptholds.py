"""Receipts kept from the relay that delivered their mail (issue #11, finding 4).

A relay that hands an envelope to a peer and sees a fresh envelope come back from that peer a
moment later learns that the peer was the recipient. So a delivered receipt for mail that a
relay (not its sender) handed over is not offered on that relay's links for
``message.receipt_hold_s`` after it was sealed: it leaves by another peer where one exists.
After the hold it may go anywhere (a LAN where that relay is our only peer still gets its
receipts through), and when the relay's last link ends the hold ends with it (a new link
reconciles from scratch, as with any peer).

Holds are not persisted: a restart ends every link, the relay's included, which ends the hold
anyway. ONE mode never holds anything (``core/exchange/receipts.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

from meshmsg.config import MessageLimits
from meshmsg.core.deadline import Deadline
from meshmsg.core.rng import Rng


def relayed_receipt_delay(limits: MessageLimits, rng: Rng) -> float:
    """A uniform random delay in ``receipt_relayed_delay_min_s..max_s`` (ms steps): when a
    receipt for mail a relay handed over is sealed (pairwise and group receipts alike)."""
    low, high = limits.receipt_relayed_delay_min_s, limits.receipt_relayed_delay_max_s
    span_ms = int((high - low) * 1000)
    return low + rng.randbelow(span_ms + 1) / 1000 if span_ms > 0 else low


class ReceiptHolds:
    """Envelope id -> the relays it is kept from, each until its own deadline."""

    __slots__ = ("_holds",)

    def __init__(self) -> None:
        self._holds: dict[bytes, dict[bytes, Deadline]] = {}

    def __len__(self) -> int:
        return len(self._holds)

    def hold(self, envelope_id: bytes, relays: Iterable[bytes], until: float, now: float) -> None:
        """Keep ``envelope_id`` from each of ``relays`` until ``until`` (a delay from ``now``:
        a wall clock stepped back moves it back too, core/deadline.py)."""
        kept = self._holds.setdefault(envelope_id, {})
        for relay in relays:
            deadline = kept.setdefault(relay, Deadline())
            deadline.follow_clock(now)
            if deadline.at is None or deadline.at < until:
                deadline.clear()
                deadline.no_later_than(until, now)
        if not kept:
            del self._holds[envelope_id]

    def keeps_from(self, envelope_id: bytes, peer_id: bytes | None) -> bool:
        """Whether ``envelope_id`` must not be offered to ``peer_id`` now."""
        kept = self._holds.get(envelope_id)
        return kept is not None and peer_id is not None and peer_id in kept

    @property
    def next_at(self) -> float | None:
        """When the next hold ends (for ``next_deadline``)."""
        ats = [d.at for kept in self._holds.values() for d in kept.values() if d.at is not None]
        return min(ats) if ats else None

    def take_due(self, now: float) -> list[tuple[bytes, bytes]]:
        """The holds that ended by ``now``: (envelope id, relay), now free to be offered."""
        ended: list[tuple[bytes, bytes]] = []
        for envelope_id, kept in list(self._holds.items()):
            for relay, deadline in list(kept.items()):
                if deadline.due(now):
                    del kept[relay]
                    ended.append((envelope_id, relay))
            if not kept:
                del self._holds[envelope_id]
        return ended

    def link_ended(self, peer_id: bytes) -> list[bytes]:
        """``peer_id``'s last link ended: nothing is kept from it any more (its next link
        reconciles afresh). Returns the envelope ids that were kept from it."""
        freed: list[bytes] = []
        for envelope_id, kept in list(self._holds.items()):
            if kept.pop(peer_id, None) is not None:
                freed.append(envelope_id)
            if not kept:
                del self._holds[envelope_id]
        return freed

    def forget(self, envelope_id: bytes) -> None:
        """The envelope left our store (delivered, purged, expired)."""
        self._holds.pop(envelope_id, None)
