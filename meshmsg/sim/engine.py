"""The discrete-event engine: virtual clock, event heap, and the driver loop around each Node.

Theory of operation
-------------------
One heap of ``(time, priority, seq, kind, a, b, c)`` entries orders everything; ``seq`` is a
counter, so equal times resolve in scheduling order and a run is a pure function of its inputs
and seed. External inputs (contacts, message creations, faults) come from time-ordered iterators,
one pending entry per source, so traces stream instead of loading.

For every node the engine is the driver of ``meshmsg.core``'s contract: after every input it
drains effects (``Transmit`` goes to the link model, ``Persist`` is committed to the node's
:class:`~meshmsg.sim.host.RecordStore` and acknowledged at once, ``CloseLink``/``Dial`` act on
links) and events (handed to the observer), then re-reads ``next_deadline()``. A changed
deadline bumps a per-node generation number; heap entries of older generations are skipped
when popped, which makes re-arming a timer O(log n) with no search.

ONE mode adds the ONE's *update instants*: the 0.1 s steps, computed by repeated float addition
exactly as ``World.update`` does, and every external event's time. Timers and envelope
transfer completions wait in a second heap and run at the first update instant that satisfies
them (a timer at or after its deadline; a transfer once less than one byte remains). A step is
put on the main heap only when something waits for it, so idle stretches cost nothing.

Anything that would call into another node while a node's effects are being drained (closing
a link, dialling) is scheduled at the current instant instead, so no node is ever re-entered.

Invariants (checked always): a frame is delivered only on an open link whose contact is up;
custody and delivery events come only from ``receive_data``; a message is delivered at most
once (checked by the observer).
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TextIO, assert_never

from meshmsg.config import NetConfig, WireLimits
from meshmsg.core import effects as fx
from meshmsg.core.effects import CloseLink, Dial, Persist, Transmit
from meshmsg.core.events import EnvelopeAccepted, EnvelopeHandedOver, Event, MessageReceived
from meshmsg.errors import InvalidAttachment, InvalidMessage, LocalProtocolError
from meshmsg.sim.commands import REFUSALS, NodeCommand
from meshmsg.sim.faults import NodeCrash, NodeRestart, Partition
from meshmsg.sim.files import ChunkBodies, ChunkStore, carry_out_chunk, send_as_file
from meshmsg.sim.host import NodeFactory, NodeSetup, PrePairing, RecordStore, SimulatedNode
from meshmsg.sim.links import Direction, Frame, Link, LinkParams, MessengerLinks, OneLinks
from meshmsg.sim.oneclock import StepGrid, one_ttl_s
from meshmsg.sim.onesize import send_one_mode
from meshmsg.sim.rng import SeededRng
from meshmsg.sim.traces import ContactEvent, MessageEvent, parse_host

External = ContactEvent | MessageEvent | NodeCommand | NodeCrash | NodeRestart | Partition

# Heap entry kinds and priorities: at equal times external events come first, then internal
# deliveries, then the ONE step (an event at a step's time is processed before that step).
_EXT, _TIMER, _ARRIVE, _DONE, _STEP, _CLOSE, _DIAL = range(7)
_P_EXT, _P_INTERNAL, _P_STEP = 0, 1, 2
_DUE_TIMER, _DUE_UNIT = 0, 1
_PEER_EVENTS = (EnvelopeAccepted, EnvelopeHandedOver)  # events the observer gets the peer of
_WHOLE_FRAME_BYTES = WireLimits().max_receive_buffer_bytes  # larger: read in pieces (deliver)
_READ_BYTES = NetConfig().read_chunk_bytes
MAX_SAME_INSTANT_TIMERS = 10_000  # a node re-arming for "now" forever is a bug, not a workload


class Observer(Protocol):
    """Receives everything a report needs; :class:`meshmsg.sim.report.Recorder` implements it."""

    def contact(self, now: float, event: ContactEvent) -> None: ...

    def created(  # message_id None: not created, for ``reason``
        self, now: float, event: MessageEvent, message_id: bytes | None, *, reason: str = ""
    ) -> None: ...

    def node_event(self, now: float, address: int, event: Event, peer: int | None) -> None: ...

    def transfer(self, now: float, sender: int, receiver: int, envelopes: int, *, ok: bool) -> None:
        """A transfer started (``ok``) or was aborted (not ``ok``)."""
        ...

    def node_state(self, now: float, address: int, *, up: bool) -> None: ...

    def attachment_created(self, now: float, event: MessageEvent, attachment_id: bytes) -> None:
        """The message ``event`` left as a file (messenger mode, larger than a text body)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    mode: str  # "one" | "messenger"
    duration_s: float
    seed: int
    step_s: float = 0.1
    interfaces: dict[str, LinkParams] = field(default_factory=dict)
    default_interface: str = "default"
    strict: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineResult:
    end_time: float
    event_log_hash: str
    heap_events: int
    node_inputs: int
    violations: tuple[str, ...]


class _Slot:
    __slots__ = ("chunks", "links", "node", "records", "rng", "same_instant", "setup",
                 "timer_at", "timer_gen")  # fmt: skip

    def __init__(self, setup: NodeSetup, rng: SeededRng) -> None:
        self.setup = setup
        self.rng = rng
        self.node: SimulatedNode | None = None
        self.records = RecordStore()
        self.chunks: ChunkStore = {}  # the node's attachment chunks, kept like its records
        self.links: dict[int, Link] = {}
        self.timer_at: float | None = None
        self.timer_gen = 0
        self.same_instant = (-1.0, 0)


class Engine:
    """Runs one simulation. Build, then call :meth:`run` once."""

    def __init__(
        self,
        config: EngineConfig,
        setups: Sequence[NodeSetup],
        factory: NodeFactory,
        sources: Sequence[Iterable[External]],
        observer: Observer,
        *,
        pre_pair: PrePairing = False,
        keep_records: bool = True,
        event_log: TextIO | None = None,
    ) -> None:
        """``keep_records``: keep every node's committed records for a restart. Without
        restarts nothing reads them, and they would hold a second copy of every envelope
        carried (the node holds the first); ``Persist`` is acknowledged and logged either way.
        """
        self.config = config
        self.now = 0.0
        self._factory = factory
        self._observer = observer
        self._event_log = event_log
        self._hash = hashlib.blake2b(digest_size=32, person=b"meshmsg-simlog")
        self._heap: list[tuple[float, int, int, int, object, object, object]] = []
        self._seq = 0
        self._sources: list[Iterator[External]] = [iter(s) for s in sources]
        self._slots = [_Slot(s, SeededRng(config.seed, f"node:{s.address}")) for s in setups]
        for i, s in enumerate(setups):
            if s.address != i:
                raise LocalProtocolError(f"node setups must be addresses 0..n-1 in order ({i})")
        self._contacts: dict[tuple[int, int, str], Link | None] = {}
        self._group = [0] * len(setups)
        self._next_link = 1
        self._violations: list[str] = []
        self._input: str = ""
        self._inputs = 0
        self._popped = 0
        self._one = config.mode == "one"
        self._one_links = OneLinks(self, len(setups)) if self._one else None
        self._msg_links = MessengerLinks(self, SeededRng(config.seed, "links"))
        self._grid = StepGrid(config.step_s)
        self._due: list[tuple[float, int, int, object, object, object, float]] = []
        self._steps_pending: set[float] = set()
        self._keep_records = keep_records
        self._bodies = ChunkBodies()  # one body per attachment chunk for the run (sim/files.py)
        factory.prepare(setups, seed=config.seed, pre_pair=pre_pair)

    # ---- the main loop ---------------------------------------------------------------------

    def run(self) -> EngineResult:
        """Run to ``duration_s`` and return the event-log hash and counters.

        Raises:
            LocalProtocolError: an invariant failed (with ``strict``), or a node misbehaved.
        """
        for slot in self._slots:
            self._boot(slot)
        for index, source in enumerate(self._sources):
            self._pull(index, source)
        end = self.config.duration_s
        heap = self._heap
        while heap and heap[0][0] <= end:
            time, _, _, kind, a, b, c = heapq.heappop(heap)
            self._popped += 1
            self.now = time
            self._dispatch(kind, a, b, c)
        self.now = end
        return EngineResult(
            end_time=end,
            event_log_hash=self._hash.hexdigest(),
            heap_events=self._popped,
            node_inputs=self._inputs,
            violations=tuple(self._violations),
        )

    def _dispatch(self, kind: int, a: object, b: object, c: object) -> None:
        if kind == _EXT:
            assert isinstance(a, int)
            self._external(b)  # type: ignore[arg-type]
            self._pull(a, self._sources[a])
            if self._one:
                self._update()
        elif kind == _ARRIVE:
            self._msg_links.arrived(a, b, c, self.now)  # type: ignore[arg-type]
        elif kind == _DONE:
            assert self._one_links is not None
            self._one_links.complete(a, b, c, self.now)  # type: ignore[arg-type]
        elif kind == _STEP:
            self._steps_pending.discard(self.now)
            self._update()
        elif kind == _TIMER:
            self._fire_timer(a, b)  # type: ignore[arg-type]
        elif kind == _CLOSE:
            self._teardown(a, closer=b)  # type: ignore[arg-type]
        elif kind == _DIAL:
            self._dial(a, b)  # type: ignore[arg-type]

    def _push(self, time: float, prio: int, kind: int, a: object, b: object, c: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (time, prio, self._seq, kind, a, b, c))

    def _pull(self, index: int, source: Iterator[External]) -> None:
        event = next(source, None)
        if event is not None:
            if event.time < self.now:
                raise LocalProtocolError(f"external event at {event.time} is in the past")
            self._push(event.time, _P_EXT, _EXT, index, event, None)

    # ---- ONE update instants -----------------------------------------------------------------

    def _update(self) -> None:
        """Run every waiting timer and transfer unit that is due at this update instant."""
        due, now = self._due, self.now
        while due:
            key, _, kind, a, b, c, rate = due[0]
            if kind == _DUE_TIMER:
                if key > now:
                    break
                heapq.heappop(due)
                self._fire_timer(a, b)  # type: ignore[arg-type]
            else:
                frame_due = key + 1.0 / rate
                if (frame_due - now) * rate >= 1.0:
                    break
                heapq.heappop(due)
                assert self._one_links is not None
                self._one_links.complete(a, b, c, now)  # type: ignore[arg-type]
        if due:
            step = self._grid.at_or_after(due[0][0])
            if step <= now:
                step = self._grid.after(now)
            if step not in self._steps_pending:
                self._steps_pending.add(step)
                self._push(step, _P_STEP, _STEP, None, None, None)

    def _wait_update(
        self, key: float, kind: int, a: object, b: object, c: object, rate: float
    ) -> None:
        self._seq += 1
        heapq.heappush(self._due, (key, self._seq, kind, a, b, c, rate))
        step = self._grid.at_or_after(key)
        if step <= self.now:
            step = self._grid.after(self.now)
        if step not in self._steps_pending:
            self._steps_pending.add(step)
            self._push(step, _P_STEP, _STEP, None, None, None)

    # ---- LinkHost (called by the link models) ------------------------------------------------

    def schedule_arrival(self, time: float, link: Link, direction: Direction, frame: Frame) -> None:
        self._push(time, _P_INTERNAL, _ARRIVE, link, direction, frame)

    def schedule_completion(
        self, due: float, link: Link, direction: Direction, frame: Frame, *, quantized: bool
    ) -> None:
        if quantized:
            rate = link.params.rate_bps
            self._wait_update(due - 1.0 / rate, _DUE_UNIT, link, direction, frame, rate)
        else:
            self._push(due, _P_INTERNAL, _DONE, link, direction, frame)

    def deliver(self, link: Link, direction: Direction, frame: Frame, now: float) -> None:
        if not link.open or self._contacts.get(self._contact_key(link), None) is not link:
            self._violation(f"t={now}: frame delivered on link {link.id} without a contact")
            return
        if link.closing_by == direction.receiver:
            return  # the receiver closed its side: late data is discarded, as TCP would
        slot = self._slots[direction.receiver]
        if slot.node is None:
            return
        # The tx line already bound these bytes into the hash: digest them again only if the
        # link altered them (hashing every frame twice was 1 % of an Epidemic replay).
        received = frame.data if frame.altered else b""
        self._log(f"{now!r} rx {direction.receiver} {link.id} {len(frame.data)}", received)
        self._input = "receive_data"
        if len(frame.data) <= _WHOLE_FRAME_BYTES or getattr(slot.node, "frames_whole", False):
            slot.node.receive_data(link.id, frame.data, now=now)
            self._drain(slot)
            return
        # A Transmit larger than a receive buffer (many 40 KiB group-history envelopes) is read
        # the way the trio driver reads a socket: ``read_chunk_bytes`` at a time.
        for start in range(0, len(frame.data), _READ_BYTES):
            if slot.node is None or link.closing_by == direction.receiver:
                return
            slot.node.receive_data(link.id, frame.data[start : start + _READ_BYTES], now=now)
            self._drain(slot)

    def transfer_started(
        self, link: Link, direction: Direction, envelopes: int, now: float
    ) -> None:
        self._observer.transfer(now, direction.sender, direction.receiver, envelopes, ok=True)

    def transfer_aborted(
        self, link: Link, direction: Direction, envelopes: int, now: float
    ) -> None:
        self._observer.transfer(now, direction.sender, direction.receiver, envelopes, ok=False)

    def direction_idle(self, link: Link, direction: Direction, now: float) -> None:
        if link.closing_by == direction.sender:
            self._push(now, _P_INTERNAL, _CLOSE, link, direction.sender, None)

    # ---- external events ---------------------------------------------------------------------

    def _external(self, event: External) -> None:
        now = self.now
        match event:
            case ContactEvent():
                self._observer.contact(now, event)
                iface = event.interface or self.config.default_interface
                state = "up" if event.up else "down"
                self._log(f"{now!r} CONN {event.a} {event.b} {state} {iface}")
                self._contact(event, iface)
            case MessageEvent():
                self._log(f"{now!r} C {event.message_id} {event.source} {event.destination}")
                self._create(event)
            case NodeCommand():
                self._log(f"{now!r} cmd {event.address} {event.label}")
                self._command(event)
            case NodeCrash():
                self._log(f"{now!r} crash {event.address}")
                self._crash(self._slots[event.address])
            case NodeRestart():
                self._log(f"{now!r} restart {event.address}")
                self._restart(self._slots[event.address])
            case Partition():
                self._log(f"{now!r} partition {event.groups!r}")
                self._partition(event.groups)
            case _:
                assert_never(event)

    def _contact(self, event: ContactEvent, iface: str) -> None:
        key = (event.a, event.b, iface)
        if event.up:
            if key in self._contacts:
                self._violation(f"t={self.now}: contact {key} up twice")
                return
            self._contacts[key] = None
            self._maybe_open(key, initiator=event.a)
            return
        if key not in self._contacts:
            self._violation(f"t={self.now}: contact {key} down while not up")
            return
        link = self._contacts[key]
        if link is not None:
            self._teardown(link, closer=None)
        del self._contacts[key]

    def _maybe_open(self, key: tuple[int, int, str], *, initiator: int) -> None:
        a, b, iface = key
        sa, sb = self._slots[a], self._slots[b]
        if self._contacts.get(key, 1) is not None or sa.node is None or sb.node is None:
            return
        if self._group[a] != self._group[b]:
            return
        params = self.config.interfaces.get(iface)
        if params is None:
            raise LocalProtocolError(f"no rate configured for interface {iface!r}")
        link = Link(self._next_link, a, b, iface, params)
        self._next_link += 1
        self._contacts[key] = link
        for slot in (sa, sb) if initiator == a else (sb, sa):
            address = slot.setup.address
            slot.links[link.id] = link
            self._log(f"{self.now!r} open {address} {link.id} {address == initiator}")
            self._input = "link_opened"
            assert slot.node is not None
            slot.node.link_opened(link.id, initiator=address == initiator, now=self.now)
            self._drain(slot)

    def _teardown(self, link: Link, *, closer: int | None) -> None:
        """Close ``link`` (contact down, crash, partition, or ``CloseLink`` by ``closer``)."""
        if not link.open:
            return
        now = self.now
        if self._one_links is not None:
            self._one_links.drain_before_close(link, now)
            self._one_links.abort(link, now)
        else:
            self._msg_links.abort(link, now)
        key = self._contact_key(link)
        if self._contacts.get(key) is link:
            self._contacts[key] = None
        for address in (link.a, link.b):
            slot = self._slots[address]
            if slot.links.pop(link.id, None) is None or address == closer or slot.node is None:
                continue
            self._log(f"{now!r} lost {address} {link.id}")
            self._input = "link_lost"
            slot.node.link_lost(link.id, now=now)
            self._drain(slot)

    @staticmethod
    def _contact_key(link: Link) -> tuple[int, int, str]:
        return (link.a, link.b, link.interface)

    def _create(self, event: MessageEvent) -> None:
        slot = self._slots[event.source]
        if slot.node is None:
            self._observer.created(self.now, event, None, reason="the source node is down")
            return
        peer = self._factory.identity(event.destination)
        self._input = "send_message"
        self._inputs += 1
        try:
            ttl_s = slot.setup.ttl_s
            if slot.setup.one_mode:
                ttl_s = one_ttl_s(self.now, ttl_s)
            sent = None if slot.setup.one_mode else send_as_file(
                slot.node, slot.chunks, self._bodies, event, peer, slot.rng, now=self.now,
                ttl_s=ttl_s,
            )  # fmt: skip
            if sent is not None:  # messenger mode: a message larger than a text body is a file
                message_id, attachment_id = sent
                self._observer.attachment_created(self.now, event, attachment_id)
            else:  # ONE mode, or a text body: a larger message declares its size (sim/onesize)
                message_id = send_one_mode(slot.node, peer, event, now=self.now, ttl_s=ttl_s)
        except (LocalProtocolError, InvalidMessage, InvalidAttachment) as exc:
            # Not a contact, or a body the core refuses: the application could not send it.
            self._log(f"{self.now!r} refused {event.message_id} {exc}")
            self._observer.created(self.now, event, None, reason=str(exc))
            self._drain(slot)
            return
        self._observer.created(self.now, event, message_id)
        self._drain(slot)

    def _command(self, event: NodeCommand) -> None:
        slot = self._slots[event.address]
        if slot.node is None:
            event.skipped(self.now, "the source node is down")
            return
        self._input = "command"
        self._inputs += 1
        try:
            event.run(slot.node, self.now)
        except REFUSALS as exc:
            self._log(f"{self.now!r} refused {event.label} {exc}")
            event.skipped(self.now, str(exc))
        self._drain(slot)

    # ---- faults ------------------------------------------------------------------------------

    def _crash(self, slot: _Slot) -> None:
        if slot.node is None:
            return
        for link_id in sorted(slot.links):
            self._teardown(slot.links[link_id], closer=slot.setup.address)
        slot.node = None
        slot.timer_gen += 1
        slot.timer_at = None
        self._observer.node_state(self.now, slot.setup.address, up=False)

    def _restart(self, slot: _Slot) -> None:
        if slot.node is not None:
            return
        self._boot(slot)
        self._observer.node_state(self.now, slot.setup.address, up=True)
        self._open_pending(slot.setup.address)

    def _partition(self, groups: tuple[tuple[int, ...], ...]) -> None:
        self._group = [len(groups) + 1] * len(self._slots) if groups else [0] * len(self._slots)
        for index, members in enumerate(groups, 1):
            for address in members:
                self._group[address] = index
        for link in [lk for lk in self._contacts.values() if lk is not None]:
            if self._group[link.a] != self._group[link.b]:
                self._teardown(link, closer=None)
        self._open_pending(None)

    def _open_pending(self, address: int | None) -> None:
        """Open links for contacts that are up but have none (after a restart or a heal)."""
        for key in [k for k, lk in self._contacts.items() if lk is None]:
            if address is None or address in key[:2]:
                self._maybe_open(key, initiator=key[0])

    # ---- the driver contract -----------------------------------------------------------------

    def _boot(self, slot: _Slot) -> None:
        slot.node = self._factory.build(
            slot.setup, rng=slot.rng, now=self.now, records=slot.records.snapshot()
        )
        self._input = "boot"
        self._drain(slot)

    def _fire_timer(self, address: int, gen: int) -> None:
        slot = self._slots[address]
        if gen != slot.timer_gen or slot.node is None:
            return
        last, count = slot.same_instant
        count = count + 1 if last == self.now else 1
        slot.same_instant = (self.now, count)
        if count > MAX_SAME_INSTANT_TIMERS:
            raise LocalProtocolError(f"node {address} re-arms its timer for t={self.now} forever")
        slot.timer_at = None
        self._log(f"{self.now!r} timer {address}")
        self._input = "handle_timer"
        slot.node.handle_timer(now=self.now)
        self._drain(slot)

    def _drain(self, slot: _Slot) -> None:
        """Carry out the node's effects, pass on its events, re-arm its timer."""
        node = slot.node
        assert node is not None
        self._inputs += 1
        now, address = self.now, slot.setup.address
        effect = node.next_effect()
        while effect is not None:
            match effect:
                case Transmit():
                    self._transmit(slot, effect)
                case Persist():
                    self._log(
                        f"{now!r} persist {address} {effect.token} {len(effect.puts)} "
                        f"{len(effect.deletes)}"
                    )
                    if self._keep_records:
                        slot.records.apply(effect)
                    node.storage_committed(effect.token, now=now)
                case CloseLink():
                    self._log(f"{now!r} close {address} {effect.link} {effect.reason.name}")
                    self._close_by(slot, effect.link)
                case Dial():
                    self._log(f"{now!r} dial {address} {effect.address}")
                    self._push(now, _P_INTERNAL, _DIAL, address, effect.address, None)
                case fx.StoreChunk() | fx.LoadChunk() | fx.DeleteChunks():
                    carry_out_chunk(slot.chunks, self._bodies, node, effect, now)
                case fx.LoadEnvelope():  # the simulator keeps bodies in memory (no disk)
                    raise LocalProtocolError(f"node {address} runs with bodies_on_disk")
                case _:
                    assert_never(effect)
            effect = node.next_effect()
        event = node.next_event()
        while event is not None:
            self._log(f"{now!r} ev {address} {event!r}")
            self._check_event(address, event)
            peer = None
            if isinstance(event, _PEER_EVENTS) and event.link in slot.links:
                peer = slot.links[event.link].peer_of(address)
            self._observer.node_event(now, address, event, peer)
            event = node.next_event()
        deadline = node.next_deadline()
        if deadline != slot.timer_at:
            slot.timer_gen += 1
            slot.timer_at = deadline
            if deadline is not None:
                self._arm(address, slot.timer_gen, deadline)

    def _arm(self, address: int, gen: int, deadline: float) -> None:
        if self._one:
            # A router acts once per update instant: "now" means the next instant, as in the ONE.
            key = deadline if deadline > self.now else math.nextafter(self.now, math.inf)
            self._wait_update(key, _DUE_TIMER, address, gen, None, 1.0)
        else:
            self._push(max(deadline, self.now), _P_INTERNAL, _TIMER, address, gen, None)

    def _transmit(self, slot: _Slot, effect: Transmit) -> None:
        address = slot.setup.address
        self._log(f"{self.now!r} tx {address} {effect.link} {effect.envelopes}", effect.data)
        link = slot.links.get(effect.link)
        if link is None:
            self._violation(f"t={self.now}: node {address} transmits on unknown link {effect.link}")
            return
        if link.closing_by == address:
            self._violation(f"t={self.now}: node {address} transmits after closing {link.id}")
            return
        frame = Frame(effect.data, effect.envelopes, effect.one_bytes)
        if self._one_links is not None:
            self._one_links.transmit(link, address, frame, self.now)
        else:
            self._msg_links.transmit(link, address, frame, self.now)

    def _close_by(self, slot: _Slot, link_id: int) -> None:
        link = slot.links.get(link_id)
        if link is None or link.closing_by is not None:
            return
        address = slot.setup.address
        link.closing_by = address
        pending = (self._one_links or self._msg_links).pending(link, address)
        if not pending:
            self._push(self.now, _P_INTERNAL, _CLOSE, link, address, None)

    def _dial(self, address: int, target: str) -> None:
        """A node asked for a link: granted only while a contact between the two is up."""
        try:
            peer = parse_host(target)
        except ValueError:
            return
        if peer == address or not 0 <= peer < len(self._slots):
            return
        a, b = min(address, peer), max(address, peer)
        for key in [k for k, lk in self._contacts.items() if lk is None]:
            if key[:2] == (a, b):
                self._maybe_open(key, initiator=address)
                return

    def _check_event(self, address: int, event: Event) -> None:
        if isinstance(event, EnvelopeAccepted | MessageReceived) and self._input != "receive_data":
            self._violation(
                f"t={self.now}: node {address} reported {type(event).__name__} "
                f"outside receive_data (during {self._input})"
            )

    def violation(self, text: str) -> None:
        """Record an invariant failure (raised at once when the run is strict)."""
        self._violation(text)

    def _violation(self, text: str) -> None:
        self._violations.append(text)
        self._log(f"violation {text}")
        if self.config.strict:
            raise LocalProtocolError(f"simulation invariant violated: {text}")

    def _log(self, line: str, data: bytes = b"") -> None:
        self._hash.update(line.encode())
        if data:
            self._hash.update(hashlib.blake2b(data, digest_size=16).digest())
        self._hash.update(b"\n")
        if self._event_log is not None:
            self._event_log.write(line + "\n")
