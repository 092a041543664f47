"""Link models: how long a frame takes from one node to another, and what a contact's end does.

A link is opened for every contact "up" (one per interface) and carries whole encrypted frames
(``Transmit.data``) in both directions, in order. Two models:

* **messenger** (default): each direction serialises frames at the link rate, so several frames
  of a contact are in flight at once; a frame arrives ``len/rate + latency`` after its turn
  starts. ``loss_prob`` models a lost TCP segment: the frame (and, to keep the stream in order,
  every later frame) is held back by ``retransmit_s``. ``corrupt_prob`` flips one byte, which
  the receiver's AEAD must catch. Nothing is rounded to steps.
* **one** (the ONE simulator's ``ActiveRouter`` + ``CBRConnection`` semantics, for comparison):
  a node takes part in at most one *envelope transfer* at a time, sending or receiving; a frame
  carrying envelopes waits until both ends are free, then occupies both for
  ``len/envelopes/rate`` per envelope, each envelope completing at the first update instant (a
  0.1 s step or an external event) at which less than one byte remains, exactly as the ONE
  finalises transfers; a contact that goes down aborts the transfer (nothing delivered) unless
  it had already completed at that instant. Control frames (``envelopes == 0``: handshake,
  sync, keepalives) neither need nor hold a node's slot and cost ``len/rate`` with no step
  rounding; on one link direction they still queue behind a transfer in progress (the stream is
  ordered).

Times are virtual seconds. The engine implements :class:`LinkHost`; this module never touches
the nodes itself.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

from meshmsg.sim.rng import SeededRng


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkParams:
    """Physical properties of one link (one contact on one interface)."""

    rate_bps: float
    """Bytes per second in each direction."""
    latency_s: float = 0.0
    loss_prob: float = 0.0
    retransmit_s: float = 0.2
    corrupt_prob: float = 0.0


class Frame:
    """One ``Transmit``: its bytes and the envelope transfers inside."""

    __slots__ = ("altered", "announce", "data", "envelopes", "size", "started_at", "unit_due",
                 "units_left")  # fmt: skip

    def __init__(self, data: bytes, envelopes: int, one_bytes: int = 0) -> None:
        self.data = data
        # ONE mode charges the payload the envelopes stand for (``Transmit.one_bytes``); a
        # control frame with one_bytes announces such a transfer and costs only its own bytes.
        self.announce = not envelopes and one_bytes > 0
        self.size = len(data) if self.announce else max(len(data), one_bytes)
        self.altered = False  # the link changed the bytes on the way (corruption)
        self.envelopes = envelopes
        self.started_at: float | None = None
        self.units_left = max(envelopes, 1)
        self.unit_due = 0.0  # one mode: when the unit on the air is due


class Direction:
    """One direction of a link: an ordered queue of frames from ``sender`` to ``receiver``."""

    __slots__ = ("busy", "free_at", "holding", "index", "last_arrival", "queue", "receiver",
                 "sender")  # fmt: skip

    def __init__(self, index: int, sender: int, receiver: int) -> None:
        self.index = index
        self.sender = sender
        self.receiver = receiver
        self.queue: deque[Frame] = deque()
        self.busy = False  # one mode: the head frame is on the air
        self.holding = False  # one mode: an announcement took both slots for the next transfer
        self.free_at = 0.0  # messenger mode: when the next frame may start
        self.last_arrival = 0.0  # messenger mode: arrivals never overtake


class Link:
    """An open link between nodes ``a`` and ``b`` (``a < b``); ``id`` is unique in the run."""

    __slots__ = ("a", "b", "closing_by", "dirs", "id", "interface", "open", "params")

    def __init__(self, link_id: int, a: int, b: int, interface: str, params: LinkParams) -> None:
        self.id = link_id
        self.a = a
        self.b = b
        self.interface = interface
        self.params = params
        self.open = True
        self.closing_by: int | None = None
        self.dirs = (Direction(0, a, b), Direction(1, b, a))

    def direction_from(self, sender: int) -> Direction:
        return self.dirs[0] if sender == self.a else self.dirs[1]

    def peer_of(self, node: int) -> int:
        return self.b if node == self.a else self.a


class LinkHost(Protocol):
    """What a link model needs from the engine."""

    def schedule_arrival(self, time: float, link: Link, direction: Direction, frame: Frame) -> None:
        """Deliver ``frame`` at exactly ``time`` (messenger mode)."""
        ...

    def schedule_completion(
        self, due: float, link: Link, direction: Direction, frame: Frame, *, quantized: bool
    ) -> None:
        """Call :meth:`OneLinks.complete` for ``frame`` when its unit is due: at exactly ``due``,
        or (``quantized``) at the first update instant where less than one byte remains."""
        ...

    def deliver(self, link: Link, direction: Direction, frame: Frame, now: float) -> None:
        """Hand ``frame`` to the receiving node now."""
        ...

    def transfer_started(
        self, link: Link, direction: Direction, envelopes: int, now: float
    ) -> None: ...

    def transfer_aborted(
        self, link: Link, direction: Direction, envelopes: int, now: float
    ) -> None: ...

    def direction_idle(self, link: Link, direction: Direction, now: float) -> None:
        """Everything queued on ``direction`` has been delivered (a pending close may proceed)."""
        ...


class MessengerLinks:
    """Messenger-mode model: pipelined frames at the link rate, plus latency, loss, corruption."""

    __slots__ = ("_host", "_rng")

    def __init__(self, host: LinkHost, rng: SeededRng) -> None:
        self._host = host
        self._rng = rng

    def transmit(self, link: Link, sender: int, frame: Frame, now: float) -> None:
        d = link.direction_from(sender)
        p = link.params
        start = max(now, d.free_at)
        done = start + len(frame.data) / p.rate_bps
        d.free_at = done
        arrival = done + p.latency_s
        if p.loss_prob > 0.0 and self._rng.random() < p.loss_prob:
            arrival += p.retransmit_s
        if p.corrupt_prob > 0.0 and frame.data and self._rng.random() < p.corrupt_prob:
            frame.data = _flip_byte(frame.data, self._rng)
            frame.altered = True
        arrival = max(arrival, d.last_arrival)
        d.last_arrival = arrival
        frame.started_at = start
        d.queue.append(frame)
        if frame.envelopes:
            self._host.transfer_started(link, d, frame.envelopes, now)
        self._host.schedule_arrival(arrival, link, d, frame)

    def arrived(self, link: Link, direction: Direction, frame: Frame, now: float) -> None:
        """The scheduled arrival of the head frame (arrivals are in queue order)."""
        if not link.open or not direction.queue or direction.queue[0] is not frame:
            return  # the link went down before: already aborted
        direction.queue.popleft()
        self._host.deliver(link, direction, frame, now)
        if not direction.queue:
            self._host.direction_idle(link, direction, now)

    def drain_before_close(self, link: Link, now: float) -> None:
        """A contact ended at ``now``: nothing in flight survives in messenger mode."""

    def abort(self, link: Link, now: float) -> None:
        """Drop every frame in flight; count started envelope transfers as aborted."""
        link.open = False
        for d in link.dirs:
            for frame in d.queue:
                if frame.envelopes:
                    self._host.transfer_aborted(link, d, frame.envelopes, now)
            d.queue.clear()

    def pending(self, link: Link, sender: int) -> bool:
        return bool(link.direction_from(sender).queue)


class OneLinks:
    """ONE-mode model: one envelope transfer per node at a time, step-quantised completion."""

    __slots__ = ("_busy", "_host", "_wait_seq", "_waiting")

    def __init__(self, host: LinkHost, node_count: int) -> None:
        self._host = host
        self._busy = [False] * node_count
        # Directions whose head frame waits for a free slot, per node, with a global FIFO number.
        self._waiting: list[dict[tuple[int, int], tuple[int, Link]]] = [
            {} for _ in range(node_count)
        ]
        self._wait_seq = 0

    def is_busy(self, node: int) -> bool:
        return self._busy[node]

    def transmit(self, link: Link, sender: int, frame: Frame, now: float) -> None:
        d = link.direction_from(sender)
        d.queue.append(frame)
        if len(d.queue) == 1 and not d.busy:
            self._start_head(link, d, now)

    def _start_head(self, link: Link, d: Direction, now: float) -> None:
        """Start the head frame of ``d`` if it can go now; otherwise register it as waiting."""
        frame = d.queue[0]
        if frame.announce:  # arrives when its transfer can start: it takes the slots for it
            if self._busy[d.sender] or self._busy[d.receiver]:
                self._wait(link, d)
                return
            self._busy[d.sender] = self._busy[d.receiver] = d.holding = True
        if not frame.envelopes:
            d.busy = True
            frame.started_at = now
            self._schedule_unit(link, d, frame, now)
            return
        if not d.holding and (self._busy[d.sender] or self._busy[d.receiver]):
            self._wait(link, d)
            return
        self._busy[d.sender] = self._busy[d.receiver] = True
        d.busy, d.holding = True, False
        frame.started_at = now
        self._host.transfer_started(link, d, frame.envelopes, now)
        self._schedule_unit(link, d, frame, now)

    def _schedule_unit(self, link: Link, d: Direction, frame: Frame, now: float) -> None:
        frame.unit_due = now + self._unit_s(link, frame)
        self._host.schedule_completion(
            frame.unit_due, link, d, frame, quantized=frame.envelopes > 0
        )

    @staticmethod
    def _unit_s(link: Link, frame: Frame) -> float:
        return frame.size / max(frame.envelopes, 1) / link.params.rate_bps

    def _wait(self, link: Link, d: Direction) -> None:
        key = (link.id, d.index)
        self._wait_seq += 1
        entry = (self._wait_seq, link)
        self._waiting[d.sender].setdefault(key, entry)
        self._waiting[d.receiver].setdefault(key, entry)

    def _unwait(self, link: Link, d: Direction) -> None:
        key = (link.id, d.index)
        self._waiting[d.sender].pop(key, None)
        self._waiting[d.receiver].pop(key, None)

    def complete(self, link: Link, d: Direction, frame: Frame, now: float) -> None:
        """A unit of ``frame`` is due (called at an update instant, or exactly for control)."""
        if not link.open or not d.busy or not d.queue or d.queue[0] is not frame:
            return  # stale: aborted, or already completed when the contact ended
        if frame.envelopes:
            frame.units_left -= 1
            if frame.units_left > 0:
                self._schedule_unit(link, d, frame, now)
                return
        d.queue.popleft()
        d.busy = False
        freed: tuple[int, ...] = ()
        no_transfer_next = frame.announce and not (d.queue and d.queue[0].envelopes)
        if frame.envelopes or no_transfer_next:
            self._busy[d.sender] = self._busy[d.receiver] = d.holding = False
            freed = (d.sender, d.receiver)
        self._host.deliver(link, d, frame, now)
        if link.open and d.queue:
            self._start_head(link, d, now)
        elif link.open:
            self._host.direction_idle(link, d, now)
        for node in freed:
            self._start_waiting(node, now)

    def _start_waiting(self, node: int, now: float) -> None:
        """A slot freed at ``node``: start waiting transfers in the order they began waiting."""
        if self._busy[node] or not self._waiting[node]:
            return
        for key, (_, link) in sorted(self._waiting[node].items(), key=lambda kv: kv[1][0]):
            d = link.dirs[key[1]]
            if self._busy[d.sender] or self._busy[d.receiver] or d.busy:
                continue
            self._unwait(link, d)
            self._start_head(link, d, now)
            if self._busy[node]:
                return

    def drain_before_close(self, link: Link, now: float) -> None:
        """Complete units already done at ``now``: the ONE finalises before it aborts."""
        for d in link.dirs:
            while link.open and d.busy and d.queue and self._done_at(link, d.queue[0], now):
                self.complete(link, d, d.queue[0], now)

    @staticmethod
    def _done_at(link: Link, frame: Frame, now: float) -> bool:
        if not frame.envelopes:
            return frame.unit_due <= now
        # CBRConnection: remaining = (int)((doneTime - now) * speed); done when it is 0.
        return (frame.unit_due - now) * link.params.rate_bps < 1.0

    def abort(self, link: Link, now: float) -> None:
        """Contact ended: abort the transfer on the air, drop queued frames, free the slots."""
        link.open = False
        freed: list[int] = []
        for d in link.dirs:
            self._unwait(link, d)
            if d.busy and d.queue and d.queue[0].envelopes:
                self._host.transfer_aborted(link, d, d.queue[0].envelopes, now)
            if (d.busy and d.queue and d.queue[0].envelopes) or d.holding:
                self._busy[d.sender] = self._busy[d.receiver] = False
                freed += [d.sender, d.receiver]
            d.busy = d.holding = False
            d.queue.clear()
        for node in sorted(set(freed)):
            self._start_waiting(node, now)

    def pending(self, link: Link, sender: int) -> bool:
        return bool(link.direction_from(sender).queue)


def _flip_byte(data: bytes, rng: SeededRng) -> bytes:
    i = rng.randbelow(len(data))
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
