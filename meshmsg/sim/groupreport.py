"""What group traffic achieved and cost: delivery per member, latency, relay copies and bytes.

:class:`GroupRecorder` stands between the engine and the run's
:class:`~meshmsg.sim.report.Recorder`: it passes every observation on unchanged and keeps, for
the group traffic (``meshmsg.sim.grouptraffic``):

* **delivery per member**: a message to a group of *n* is *n - 1* (message, member) pairs; a
  pair is delivered when that member's application gets the message (``GroupMessageReceived``
  for group mail, ``MessageReceived`` for fan-out); latency is creation to that moment.
  Planned messages that could not be created still count their pairs, undelivered.
* **copies and bytes carried**: every completed transfer of a traffic envelope
  (``EnvelopeAccepted``) with the envelope's size. A copy taken by a node that is not a
  recipient of that envelope is a *relay copy* (a fan-out envelope is for one member, so a
  copy at another member is a relay copy too; a group envelope is for every member). Other
  envelopes (group operations and chains, receipts, purge tokens) are counted apart.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from meshmsg.core.events import (
    EnvelopeAccepted,
    Event,
    GroupMessageReceived,
    MessageQueued,
    MessageReceived,
)
from meshmsg.sim.report import Recorder, average
from meshmsg.sim.traces import ContactEvent, MessageEvent


@dataclass(slots=True, kw_only=True)
class _Message:
    created_at: float
    sender: int
    recipients: tuple[int, ...]
    size: int = 0  # bytes of one envelope of it (0: none sealed yet)
    not_created: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupSummary:
    """One run's group traffic, as the table in docs/simulator.md shows it."""

    delivery: str
    groups: int
    members: int  # sum of group sizes
    setup_failed: int
    messages: int
    not_created: int
    pairs: int
    pairs_delivered: int
    delivery_ratio: float
    member_ratio_min: float  # the worst-served member's delivered fraction
    member_ratio_median: float
    all_members_ratio: float  # messages that reached every member
    latency_avg_s: float
    latency_median_s: float
    latency_p90_s: float
    copies: int  # traffic envelope copies taken, recipients included
    copy_bytes: int
    relay_copies: int  # taken by a node that is not the envelope's recipient
    relay_bytes: int
    other_copies: int  # other envelopes: group operations and chains, receipts
    not_created_why: dict[str, int] = field(default_factory=dict)  # the node's words: count
    per_member: dict[str, list[int]] = field(default_factory=dict)  # address: [got, pairs]


class GroupRecorder:
    """Observer wrapper for one run (see the module docstring)."""

    def __init__(self, inner: Recorder, *, delivery: str, groups: list[tuple[int, ...]]) -> None:
        self.inner = inner
        self._delivery = delivery
        self._groups = groups
        self._messages: dict[str, _Message] = {}
        self._by_mid: dict[bytes, tuple[str, int | None]] = {}  # message id -> (sim id, member)
        self._envelopes: dict[bytes, tuple[str, frozenset[int]]] = {}  # -> (sim id, recipients)
        self._sizes: dict[bytes, int] = {}
        self._delivered: dict[tuple[str, int], float] = {}
        self._setup_failed: set[int] = set()
        self.copies = self.copy_bytes = self.relay_copies = self.relay_bytes = 0
        self.other_copies = 0

    # ---- told by the group traffic --------------------------------------------------------

    def planned(self, sim_id: str, at: float, sender: int, members: tuple[int, ...]) -> None:
        recipients = tuple(m for m in members if m != sender)
        self._messages[sim_id] = _Message(created_at=at, sender=sender, recipients=recipients)

    def not_created(self, sim_id: str, now: float, why: str) -> None:
        self._messages[sim_id].not_created = why

    def setup_failed(self, group: int, why: str) -> None:
        self._setup_failed.add(group)

    def sent_group(
        self, sim_id: str, now: float, mid: bytes, recipients: list[int], sizes: dict[bytes, int]
    ) -> None:
        self._by_mid[mid] = (sim_id, None)
        for envelope_id, size in sizes.items():
            self._envelopes[envelope_id] = (sim_id, frozenset(recipients))
            self._sizes[envelope_id] = size
            self._messages[sim_id].size = size

    def sent_fanout(
        self, sim_id: str, now: float, sent: dict[bytes, int], sizes: dict[bytes, int]
    ) -> None:
        for mid, member in sent.items():
            self._by_mid[mid] = (sim_id, member)
        self._sizes.update(sizes)
        if sizes:
            self._messages[sim_id].size = next(iter(sizes.values()))

    # ---- Observer (passed on) -------------------------------------------------------------

    def contact(self, now: float, event: ContactEvent) -> None:
        self.inner.contact(now, event)

    def created(
        self, now: float, event: MessageEvent, message_id: bytes | None, *, reason: str = ""
    ) -> None:
        self.inner.created(now, event, message_id, reason=reason)

    def transfer(self, now: float, sender: int, receiver: int, envelopes: int, *, ok: bool) -> None:
        self.inner.transfer(now, sender, receiver, envelopes, ok=ok)

    def node_state(self, now: float, address: int, *, up: bool) -> None:
        self.inner.node_state(now, address, up=up)

    def attachment_created(self, now: float, event: MessageEvent, attachment_id: bytes) -> None:
        self.inner.attachment_created(now, event, attachment_id)

    def node_event(self, now: float, address: int, event: Event, peer: int | None) -> None:
        self.inner.node_event(now, address, event, peer)
        match event:
            case GroupMessageReceived(message_id=mid) | MessageReceived(message_id=mid):
                self._received(now, address, mid)
            case MessageQueued(message_id=mid, envelope_id=eid) if mid in self._by_mid:
                sim_id, member = self._by_mid[mid]
                if member is not None:
                    self._envelopes[eid] = (sim_id, frozenset((member,)))
            case EnvelopeAccepted(envelope_id=eid):
                self._accepted(address, eid)
            case _:
                pass

    def _received(self, now: float, address: int, mid: bytes) -> None:
        found = self._by_mid.get(mid)
        if found is None:
            return
        sim_id, _ = found
        message = self._messages[sim_id]
        if address in message.recipients:
            self._delivered.setdefault((sim_id, address), now)

    def _accepted(self, address: int, envelope_id: bytes) -> None:
        found = self._envelopes.get(envelope_id)
        if found is None:
            self.other_copies += 1
            return
        sim_id, recipients = found
        size = self._sizes.get(envelope_id) or self._messages[sim_id].size
        self.copies += 1
        self.copy_bytes += size
        if address not in recipients:
            self.relay_copies += 1
            self.relay_bytes += size

    # ---- results ----------------------------------------------------------------------------

    def summary(self) -> GroupSummary:
        pairs = [(s, m) for s, msg in self._messages.items() for m in msg.recipients]
        latencies = sorted(
            t - self._messages[s].created_at for (s, _), t in self._delivered.items()
        )
        per_member: dict[int, list[int]] = {}
        for s, m in pairs:
            got = per_member.setdefault(m, [0, 0])
            got[0] += (s, m) in self._delivered
            got[1] += 1
        ratios = sorted(got / total for got, total in per_member.values())
        complete = [
            all((s, m) in self._delivered for m in msg.recipients)
            for s, msg in self._messages.items()
        ]
        return GroupSummary(
            delivery=self._delivery,
            groups=len(self._groups),
            members=sum(len(g) for g in self._groups),
            setup_failed=len(self._setup_failed),
            messages=len(self._messages),
            not_created=sum(m.not_created is not None for m in self._messages.values()),
            pairs=len(pairs),
            pairs_delivered=len(self._delivered),
            delivery_ratio=len(self._delivered) / len(pairs) if pairs else math.nan,
            member_ratio_min=ratios[0] if ratios else math.nan,
            member_ratio_median=ratios[len(ratios) // 2] if ratios else math.nan,
            all_members_ratio=sum(complete) / len(complete) if complete else math.nan,
            latency_avg_s=average(latencies),
            latency_median_s=latencies[len(latencies) // 2] if latencies else math.nan,
            latency_p90_s=latencies[int(0.9 * (len(latencies) - 1))] if latencies else math.nan,
            copies=self.copies,
            copy_bytes=self.copy_bytes,
            relay_copies=self.relay_copies,
            relay_bytes=self.relay_bytes,
            other_copies=self.other_copies,
            not_created_why=dict(
                Counter(m.not_created for m in self._messages.values() if m.not_created is not None)
            ),
            per_member={str(a): v for a, v in sorted(per_member.items())},
        )

    def write(self, path: Path) -> GroupSummary:
        """Write the summary as JSON (``group_traffic.json`` in the run folder)."""
        summary = self.summary()
        path.write_text(json.dumps(asdict(summary), allow_nan=True) + "\n", "utf-8")
        return summary
