"""The seam between the simulator and the protocol core: what a simulated node must offer.

The engine drives every node through :class:`SimulatedNode`, exactly the interface the trio driver
uses (``meshmsg.core.node.Node``), so a run exercises production code. Nodes are built by a
:class:`NodeFactory`; the factory also names each node's identity (so the engine can address
``send_message``) and may pre-pair nodes: every node with every other (the reference scenario
lets any node write to any other) or only the pairs that write to each other. This module only
defines the seam: the real core (:mod:`meshmsg.sim.corehost`), the reference agents
(:mod:`meshmsg.sim.agents`) and test fakes implement it, and :mod:`meshmsg.sim.factories`
picks one for a run.

Persistence: each node's committed records live in a :class:`RecordStore` owned by the engine.
``Persist`` effects are applied to it and acknowledged at once (virtual time); a node restarted
after a crash is rebuilt from it, which is how crash/restart tests durability.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from meshmsg.core.driver import DriverInterface, apply_persist
from meshmsg.core.effects import Persist, RecordKind
from meshmsg.sim.rng import SeededRng

RecordKey = tuple[RecordKind, bytes]


@dataclass(frozen=True, slots=True)
class CodesOnly:
    """These pairs hold each other's contact code but never met: mail goes by first contact
    until they meet (``nodes.pre_pair = "codes"``, issue #12)."""

    pairs: frozenset[tuple[int, int]]


PrePairing = bool | frozenset[tuple[int, int]] | CodesOnly
"""Who is paired before t=0: ``True`` every pair of nodes, ``False`` nobody, exactly the
given pairs of addresses ``(a, b)`` with ``a < b`` (pairing is symmetric), or
:class:`CodesOnly` pairs that are contacts without keys."""


class SimulatedNode(DriverInterface, Protocol):
    """What the simulator drives: the one driver interface (``core.driver.DriverInterface``,
    the trio driver's too), plus ``send_message``, which the traffic trace calls.

    Contract: after every input the driver drains ``next_effect()`` and ``next_event()`` and
    then re-reads ``next_deadline()``.
    """

    def send_message(
        self, peer_id: bytes, body: str, *, now: float, ttl_s: float | None = None,
        one_size: int = 0,
    ) -> bytes:  # fmt: skip
        """Queue ``body`` for ``peer_id``; ``one_size`` (ONE mode, messages over a text body)
        is the size the message stands for (:mod:`meshmsg.sim.onesize`)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSetup:
    """Everything the scenario says about one node; the factory turns it into a node."""

    address: int
    name: str
    buffer_bytes: int
    ttl_s: float
    one_mode: bool
    routing: Mapping[str, object] = field(default_factory=dict)
    """The scenario's ``[routing]`` table (policy, copies, binary, PRoPHET parameters, ...)."""
    tag_window: int = 64
    receipts: bool = True


class NodeFactory(Protocol):
    """Builds simulated nodes. One factory instance serves one run."""

    def prepare(self, setups: Sequence[NodeSetup], *, seed: int, pre_pair: PrePairing) -> None:
        """Create identities for all nodes and pair those ``pre_pair`` names before t=0."""
        ...

    def identity(self, address: int) -> bytes:
        """The peer id ``send_message`` expects for the node at ``address``."""
        ...

    def build(
        self,
        setup: NodeSetup,
        *,
        rng: SeededRng,
        now: float,
        records: Mapping[RecordKey, bytes],
    ) -> SimulatedNode:
        """A node at ``now``; ``records`` is empty at first start, the committed state after."""
        ...


class RecordStore:
    """Committed records of one node: what survives a crash."""

    __slots__ = ("_records",)

    def __init__(self) -> None:
        self._records: dict[RecordKey, bytes] = {}

    def apply(self, persist: Persist) -> None:
        """Apply one atomic commit in the drivers' one order (``core.driver.apply_persist``)."""
        apply_persist(persist, self)

    def put(self, kind: RecordKind, key: bytes, value: bytes) -> None:
        self._records[(kind, key)] = value

    def delete(self, kind: RecordKind, key: bytes) -> None:
        self._records.pop((kind, key), None)

    def snapshot(self) -> dict[RecordKey, bytes]:
        return dict(self._records)

    def __len__(self) -> int:
        return len(self._records)
