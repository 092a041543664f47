"""Test-only agents for the simulator: scripted nodes that record every input.

The ONE-rule reference agents (direct delivery, Epidemic, Spray-and-Wait) are a supported API in
:mod:`meshmsg.sim.agents`; what stays here only exercises the engine in tests.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from meshmsg.core.effects import Effect, LinkId, Transmit
from meshmsg.core.events import Event
from meshmsg.sim.agents import ident
from meshmsg.sim.host import NodeSetup, PrePairing, RecordKey, SimulatedNode
from meshmsg.sim.rng import SeededRng


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    """A frame a :class:`ScriptNode` sends when a link opens (to the peer with this address)."""

    to: int
    data: bytes
    envelopes: int = 1
    one_bytes: int = 0  # ONE mode: the payload it stands for, or (control) announces


class ScriptNode:
    """Records every input with its time; sends scripted frames when a link opens.

    The peer of a link is learnt from a 1-byte-address hello (control frame) each side sends
    first, so scripts can address peers by number.
    """

    def __init__(self, address: int, script: Sequence[Send], now: float) -> None:
        self.address = address
        self.script = list(script)
        self.log: list[tuple[float, str, int, bytes]] = [(now, "boot", -1, b"")]
        self.links: dict[LinkId, int | None] = {}
        self.deadline: float | None = None
        self.timer_calls: list[float] = []
        self.committed: list[int] = []
        self._effects: deque[Effect] = deque()
        self._events: deque[Event] = deque()

    def peer_discovered(self, address: str, *, now: float) -> None:
        return None  # the simulator has no discovery: links come from the contact trace

    def link_opened(
        self, link: LinkId, *, initiator: bool, now: float, address: str | None = None
    ) -> None:
        self.log.append((now, "open", link, b""))
        self.links[link] = None
        self._effects.append(Transmit(link=link, data=b"h" + bytes([self.address])))

    def receive_data(self, link: LinkId, data: bytes, *, now: float) -> None:
        self.log.append((now, "rx", link, data))
        if data[:1] == b"h":
            peer = data[1]
            self.links[link] = peer
            for send in self.script:
                if send.to == peer:
                    self._effects.append(
                        Transmit(
                            link=link,
                            data=send.data,
                            envelopes=send.envelopes,
                            one_bytes=send.one_bytes,
                        )
                    )

    def link_lost(self, link: LinkId, *, now: float) -> None:
        self.log.append((now, "lost", link, b""))
        self.links.pop(link, None)

    def handle_timer(self, *, now: float) -> None:
        self.timer_calls.append(now)
        self.deadline = None

    def storage_committed(self, token: int, *, now: float) -> None:
        self.committed.append(token)

    def send_message(
        self, peer_id: bytes, body: str, *, now: float, ttl_s: float | None = None,
        one_size: int = 0,
    ) -> bytes:  # fmt: skip
        return body.encode()

    def push_effect(self, effect: Effect) -> None:
        self._effects.append(effect)

    def push_event(self, event: Event) -> None:
        self._events.append(event)

    def next_effect(self) -> Effect | None:
        return self._effects.popleft() if self._effects else None

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        return self.deadline

    def received(self) -> list[tuple[float, bytes]]:
        """Data frames received (hellos left out), with their times."""
        return [(t, d) for t, kind, _, d in self.log if kind == "rx" and d[:1] != b"h"]


class ScriptFactory:
    """Builds :class:`ScriptNode` s from per-address scripts; keeps every node it built."""

    def __init__(self, scripts: Mapping[int, Sequence[Send]] | None = None) -> None:
        self.scripts = dict(scripts or {})
        self.built: dict[int, list[ScriptNode]] = {}
        self.records_seen: list[Mapping[RecordKey, bytes]] = []

    def prepare(self, setups: Sequence[NodeSetup], *, seed: int, pre_pair: PrePairing) -> None:
        self.pre_pair = pre_pair

    def identity(self, address: int) -> bytes:
        return ident(address)

    def build(
        self, setup: NodeSetup, *, rng: SeededRng, now: float, records: Mapping[RecordKey, bytes]
    ) -> SimulatedNode:
        node = ScriptNode(setup.address, self.scripts.get(setup.address, ()), now)
        self.built.setdefault(setup.address, []).append(node)
        self.records_seen.append(records)
        return node

    def node(self, address: int) -> ScriptNode:
        return self.built[address][-1]
