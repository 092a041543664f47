"""Measurements of a run: the ONE's MessageStatsReport, per-message records, time series.

:class:`Recorder` observes the engine (contacts, transfers, the nodes' events) and keeps what the
reports need. Field definitions follow the ONE's ``report/MessageStatsReport.java``:

* ``created``: messages created; ``started``: envelope transfers begun; ``relayed``: transfers
  of traffic messages completed (``EnvelopeAccepted``, including those to the destination;
  receipts and other protocol envelopes are counted apart in ``extras.relayed_other``);
  ``aborted``: transfers cut by a contact's end; ``dropped``: copies let go for buffer
  overflow or TTL
  (``DropReason.EVICTED``/``EXPIRED``); ``removed``: copies let go for other reasons (a purge
  after delivery, a single copy handed over); ``delivered``: first arrivals at the destination.
* ``delivery_prob = delivered / created``; ``overhead_ratio = (relayed - delivered) / delivered``;
  ``latency``: creation to first delivery; ``hopcount``: links on the delivered copy's path (the
  core's ``hops``); ``buffertime``: time a copy sat in a buffer until dropped or removed;
  ``response_prob`` and ``rtt`` are 0 and NaN (no request/response traffic).
* Averages print with 4 decimals, medians are ``sorted[n // 2]`` (the ONE's), NaN when empty and
  ``hopcount_med`` 0 when empty.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from meshmsg.core.events import (
    AttachmentComplete,
    AttachmentProgress,
    DropReason,
    EnvelopeAccepted,
    EnvelopeDropped,
    EnvelopeHandedOver,
    Event,
    MessageQueued,
    MessageReceived,
)
from meshmsg.errors import LocalProtocolError
from meshmsg.sim.observer import RelayObserver
from meshmsg.sim.traces import ContactEvent, ContactLogWriter, MessageEvent

DROPPED_REASONS = (DropReason.EXPIRED, DropReason.EVICTED)
REMOVED_REASONS = (DropReason.PURGED, DropReason.HANDED_OVER)
STATS_FIELDS = (
    "created", "started", "relayed", "aborted", "dropped", "removed", "delivered",
    "delivery_prob", "response_prob", "overhead_ratio", "latency_avg", "latency_med",
    "hopcount_avg", "hopcount_med", "buffertime_avg", "buffertime_med", "rtt_avg", "rtt_med",
)  # fmt: skip


@dataclass(slots=True, kw_only=True)
class MessageRecord:
    """Everything that happened to one message (mutable while the run goes on)."""

    id: str
    source: int
    destination: int
    size: int
    created_at: float
    message_id: str | None
    hops: list[tuple[float, int | None, int]] = field(default_factory=list)
    delivered_at: float | None = None
    hopcount: int | None = None
    drops: list[tuple[float, int, str]] = field(default_factory=list)
    not_created: str | None = None
    """Why the source could not create it (the node's refusal, or the node was down)."""
    attachment_at: float | None = None
    """Messenger mode, a message sent as a file: when its recipient held every chunk."""

    def to_json(self) -> str:
        extra = {} if self.attachment_at is None else {"attachment_at": self.attachment_at}
        return json.dumps(
            {
                "id": self.id,
                "source": self.source,
                "destination": self.destination,
                "size": self.size,
                "created_at": self.created_at,
                "message_id": self.message_id,
                "hops": [{"t": t, "from": f, "to": to} for t, f, to in self.hops],
                "delivered_at": self.delivered_at,
                "latency_s": None
                if self.delivered_at is None
                else self.delivered_at - self.created_at,
                "hopcount": self.hopcount,
                "drops": [{"t": t, "node": n, "reason": r} for t, n, r in self.drops],
                "not_created": self.not_created,
                **extra,
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageStats:
    """The ONE's MessageStatsReport values."""

    sim_time: float
    created: int
    started: int
    relayed: int
    aborted: int
    dropped: int
    removed: int
    delivered: int
    delivery_prob: float
    response_prob: float
    overhead_ratio: float
    latency_avg: float
    latency_med: float
    hopcount_avg: float
    hopcount_med: int
    buffertime_avg: float
    buffertime_med: float
    rtt_avg: float
    rtt_med: float

    def to_text(self, scenario: str) -> str:
        """The report exactly as the ONE writes it."""
        lines = [f"Message stats for scenario {scenario}", f"sim_time: {_fmt(self.sim_time)}"]
        for name in STATS_FIELDS:
            value = getattr(self, name)
            lines.append(f"{name}: {value if isinstance(value, int) else _fmt(value)}")
        return "\n".join(lines) + "\n"

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in ("sim_time", *STATS_FIELDS)}


def _fmt(value: float) -> str:
    return "NaN" if math.isnan(value) else f"{value:.4f}"


def average(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else math.nan


def one_median(values: list[float]) -> float:
    """The ONE's median: the element at ``n // 2`` of the sorted values (no interpolation)."""
    return sorted(values)[len(values) // 2] if values else math.nan


def compute_stats(
    *,
    sim_time: float,
    created: int,
    started: int,
    relayed: int,
    aborted: int,
    dropped: int,
    removed: int,
    latencies: list[float],
    hopcounts: list[int],
    buffertimes: list[float],
) -> MessageStats:
    """Apply the ONE's definitions (``MessageStatsReport.done``) to raw counts."""
    delivered = len(latencies)
    return MessageStats(
        sim_time=sim_time,
        created=created,
        started=started,
        relayed=relayed,
        aborted=aborted,
        dropped=dropped,
        removed=removed,
        delivered=delivered,
        delivery_prob=delivered / created if created else 0.0,
        response_prob=0.0,
        overhead_ratio=(relayed - delivered) / delivered if delivered else math.nan,
        latency_avg=average(latencies),
        latency_med=one_median(latencies),
        hopcount_avg=average([float(h) for h in hopcounts]),
        hopcount_med=sorted(hopcounts)[len(hopcounts) // 2] if hopcounts else 0,
        buffertime_avg=average(buffertimes),
        buffertime_med=one_median(buffertimes),
        rtt_avg=math.nan,
        rtt_med=math.nan,
    )


def _raise_violation(text: str) -> None:
    raise LocalProtocolError(f"simulation invariant violated: {text}")


class Recorder:
    """Observer of one run (implements :class:`meshmsg.sim.engine.Observer`)."""

    def __init__(
        self,
        *,
        sample_interval_s: float,
        contact_log: TextIO | None = None,
        contact_log_interfaces: bool = False,
        relay_observer: RelayObserver | None = None,
    ) -> None:
        self.records: dict[str, MessageRecord] = {}
        self.relay_observer = relay_observer  # what curious relays learn (issue #11, 4)
        self._by_message: dict[bytes, str] = {}
        self._by_envelope: dict[bytes, str] = {}
        self._held: dict[tuple[int, bytes], float] = {}  # (node, envelope) -> arrival time
        # (node, envelope) -> transfers on the path that brought it there: hop counts measured
        # here, not read from the transfers, whose initial hop count is random (issue #11, 4).
        self._path_hops: dict[tuple[int, bytes], int] = {}
        self._envelope_of: dict[str, bytes] = {}  # message's sim id -> its envelope id
        self._received: dict[str, int] = {}
        self._violation: Callable[[str], None] = _raise_violation
        self._progress: Callable[[float], None] | None = None
        self.in_contact: set[int] = set()  # nodes that had a contact up at some point
        self._contact_log = (
            ContactLogWriter(contact_log, interfaces=contact_log_interfaces)
            if contact_log is not None
            else None
        )
        self.started = self.aborted = self.relayed = self.dropped = self.removed = 0
        self.refused = self.creation_failed = self.contacts = self.crashes = 0
        self.relayed_other = 0
        self.latencies: list[float] = []
        # Attachments (messenger mode, messages larger than a text body): sim id and creation
        # time by attachment id; chunk deliveries at any node; last-chunk latencies.
        self._attachments: dict[bytes, tuple[str, float]] = {}
        self.attachments_delivered: set[bytes] = set()
        self.chunk_deliveries = 0
        self.last_chunk_latencies: list[float] = []
        self.hopcounts: list[int] = []
        self.buffertimes: list[float] = []
        self.delivery_times: list[float] = []
        # Sampled (t, copies held in buffers just before t): every interval from 0.
        self.copies: list[tuple[float, int]] = []
        self._interval = sample_interval_s
        self._next_sample = 0.0

    def on_violation(self, handler: Callable[[str], None]) -> None:
        """Route invariant failures found here (a double delivery) to ``handler``."""
        self._violation = handler

    def on_progress(self, callback: Callable[[float], None]) -> None:
        """Call ``callback(now)`` at most once per ``sample_interval_s`` of simulated time: the
        samples already mark its passage, so a progress display costs the event loop nothing."""
        self._progress = callback

    # ---- Observer ----------------------------------------------------------------------------

    def contact(self, now: float, event: ContactEvent) -> None:
        self._sample(now)
        if event.up:
            self.contacts += 1
            self.in_contact.update((event.a, event.b))
            if self.relay_observer is not None:
                self.relay_observer.contact(event.a, event.b)
        if self._contact_log is not None:
            self._contact_log.write(event)

    def created(
        self, now: float, event: MessageEvent, message_id: bytes | None, *, reason: str = ""
    ) -> None:
        self._sample(now)
        self.records[event.message_id] = MessageRecord(
            id=event.message_id,
            source=event.source,
            destination=event.destination,
            size=event.size,
            created_at=now,
            message_id=None if message_id is None else message_id.hex(),
        )
        if message_id is None:
            self.creation_failed += 1
            self.records[event.message_id].not_created = reason or "not given"
        else:
            self._by_message[message_id] = event.message_id

    def transfer(self, now: float, sender: int, receiver: int, envelopes: int, *, ok: bool) -> None:
        if ok:
            self.started += envelopes
        else:
            self.aborted += envelopes

    def attachment_created(self, now: float, event: MessageEvent, attachment_id: bytes) -> None:
        self._attachments[attachment_id] = (event.message_id, now)

    def node_state(self, now: float, address: int, *, up: bool) -> None:
        if not up:
            self.crashes += 1
            # A crash loses nothing committed; copies stay counted until the node drops them.

    def node_event(self, now: float, address: int, event: Event, peer: int | None) -> None:
        self._sample(now)
        match event:
            case MessageQueued():
                sim_id = self._by_message.get(event.message_id)
                if sim_id is not None:
                    self._by_envelope[event.envelope_id] = sim_id
                    self._envelope_of[sim_id] = event.envelope_id
                    self._held[(address, event.envelope_id)] = now
                    self._path_hops[(address, event.envelope_id)] = 0
            case EnvelopeAccepted():
                self._accepted(now, address, event, peer)
                if self.relay_observer is not None:
                    self.relay_observer.accepted(now, address, event, peer)
            case EnvelopeHandedOver() if self.relay_observer is not None:
                self.relay_observer.handed_over(now, address, event, peer)
            case MessageReceived():
                self._message_received(now, address, event)
            case EnvelopeDropped():
                self._dropped(now, address, event)
            case AttachmentProgress():
                self.chunk_deliveries += 1
            case AttachmentComplete(attachment_id=aid) if aid in self._attachments:
                self._attachment_complete(now, address, aid)
            case _:
                pass

    def message_ends(self, envelope_id: bytes) -> tuple[int, int] | None:
        """(sender, recipient) of a traffic message's envelope; None for other envelopes."""
        sim_id = self._by_envelope.get(envelope_id)
        if sim_id is None:
            return None
        record = self.records[sim_id]
        return record.source, record.destination

    def _attachment_complete(self, now: float, address: int, attachment_id: bytes) -> None:
        sim_id, created = self._attachments[attachment_id]
        if self.records[sim_id].destination != address:
            return
        if attachment_id not in self.attachments_delivered:
            self.attachments_delivered.add(attachment_id)
            self.records[sim_id].attachment_at = now
            self.last_chunk_latencies.append(now - created)

    def _accepted(
        self, now: float, address: int, event: EnvelopeAccepted, peer: int | None
    ) -> None:
        sim_id = self._by_envelope.get(event.envelope_id)
        if sim_id is None:
            self.relayed_other += 1  # a receipt or other protocol envelope, not traffic
            return
        self.relayed += 1
        record = self.records[sim_id]
        record.hops.append((now, peer, address))
        before = None if peer is None else self._path_hops.get((peer, event.envelope_id))
        hops = event.hops if before is None else before + 1
        self._path_hops[(address, event.envelope_id)] = hops
        if event.for_us:
            self._delivered(now, record, hops)
        else:
            self._held[(address, event.envelope_id)] = now

    def _message_received(self, now: float, address: int, event: MessageReceived) -> None:
        sim_id = self._by_message.get(event.message_id)
        if sim_id is None:
            return
        envelope = self._envelope_of.get(sim_id)
        measured = None if envelope is None else self._path_hops.get((address, envelope))
        count = self._received.get(sim_id, 0) + 1
        self._received[sim_id] = count
        if count > 1:
            self._violation(f"t={now}: message {sim_id} delivered to the application twice")
        self._delivered(now, self.records[sim_id], event.hops if measured is None else measured)

    def _delivered(self, now: float, record: MessageRecord, hops: int) -> None:
        if record.delivered_at is not None:
            return
        record.delivered_at = now
        record.hopcount = hops
        self.latencies.append(now - record.created_at)
        self.hopcounts.append(hops)
        self.delivery_times.append(now)

    def _dropped(self, now: float, address: int, event: EnvelopeDropped) -> None:
        sim_id = self._by_envelope.get(event.envelope_id)
        if sim_id is None:
            return  # not a traffic message (a receipt): the ONE has no such envelopes
        arrived = self._held.pop((address, event.envelope_id), None)
        if event.reason in DROPPED_REASONS:
            self.dropped += 1
        elif event.reason in REMOVED_REASONS:
            self.removed += 1
        else:
            if event.reason == DropReason.REFUSED:
                self.refused += 1
            return
        self.buffertimes.append(now - (now if arrived is None else arrived))
        self.records[sim_id].drops.append((now, address, event.reason.name.lower()))

    def _sample(self, now: float) -> None:
        if now < self._next_sample:
            return
        while now >= self._next_sample:
            self.copies.append((self._next_sample, len(self._held)))
            self._next_sample += self._interval
        if self._progress is not None:
            self._progress(now)

    # ---- results -----------------------------------------------------------------------------

    def stats(self, sim_time: float) -> MessageStats:
        self._sample(sim_time)
        return compute_stats(
            sim_time=sim_time,
            created=len(self.records),
            started=self.started,
            relayed=self.relayed,
            aborted=self.aborted,
            dropped=self.dropped,
            removed=self.removed,
            latencies=self.latencies,
            hopcounts=self.hopcounts,
            buffertimes=self.buffertimes,
        )

    def extras(self) -> dict[str, int]:
        """Counts the ONE has no field for."""
        return {
            "refused": self.refused,
            "relayed_other": self.relayed_other,
            "creation_failed": self.creation_failed,
            "contacts": self.contacts,
            "crashes": self.crashes,
            "copies_held_at_end": len(self._held),
            "attachments_created": len(self._attachments),
            "attachments_delivered": len(self.attachments_delivered),
            "chunk_deliveries": self.chunk_deliveries,
            # Median time from creation to the recipient's last chunk, whole seconds.
            "attachment_latency_median_s": round(one_median(self.last_chunk_latencies))
            if self.last_chunk_latencies
            else 0,
        }

    def write_messages(self, path: Path) -> None:
        """Per-message records as JSON lines, in creation order."""
        with path.open("w", encoding="utf-8") as out:
            for record in self.records.values():
                out.write(record.to_json() + "\n")
