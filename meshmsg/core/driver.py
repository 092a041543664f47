"""The one interface between the core and its drivers, and the one way to apply a ``Persist``.

Two drivers run the core: the trio driver in ``meshmsg.net`` (sockets, a disk) and the
simulator in ``meshmsg.sim`` (virtual time, modelled links). Both talk to it through
:class:`DriverInterface`, which :class:`~meshmsg.core.node.Node` implements, and both apply the
core's ``Persist`` effects with :func:`apply_persist`, so a record written in production and one
written in a simulation mean the same thing after a restart.

The contract (docs/architecture.md, "The driver contract"): after any input the driver drains
``next_effect`` and ``next_event`` until both return ``None``, carries the effects out in order,
then calls ``handle_timer`` no later than ``next_deadline()``. Every ``Persist`` is applied
atomically and durably and then answered with ``storage_committed(token)``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from meshmsg.core.effects import Effect, LinkId, Persist, RecordKind
from meshmsg.core.events import Event


@runtime_checkable
class DriverInterface(Protocol):
    """What a driver may call on a node: inputs (each with ``now``) and pulled outputs."""

    def link_opened(
        self, link: LinkId, *, initiator: bool, now: float, address: str | None = None
    ) -> None:
        """A transport connected (we dialed: ``initiator``; or we accepted)."""

    def receive_data(self, link: LinkId, data: bytes, *, now: float) -> None:
        """Bytes arrived on ``link``; never raises for anything the peer sent."""

    def link_lost(self, link: LinkId, *, now: float) -> None:
        """The transport went away; idempotent for unknown links."""

    def peer_discovered(self, address: str, *, now: float) -> None:
        """Discovery reported an address: the node dials it unless already linked."""

    def handle_timer(self, *, now: float) -> None:
        """Time passed (called no later than ``next_deadline()``)."""

    def storage_committed(self, token: int, *, now: float) -> None:
        """The ``Persist`` with this token is durable."""

    def next_effect(self) -> Effect | None:
        """The next thing the driver must do, or None."""

    def next_event(self) -> Event | None:
        """The next fact to report, or None."""

    def next_deadline(self) -> float | None:
        """Absolute time by which ``handle_timer`` must be called, or None."""


@runtime_checkable
class EnvelopeInputs(Protocol):
    """A node's answers to ``LoadEnvelope`` (only a node with ``StoreConfig.bodies_on_disk``
    asks; the simulator's nodes never do)."""

    def envelope_loaded(self, envelope_id: bytes, value: bytes | None, *, now: float) -> None:
        """``value``: the committed ENVELOPE record's value (None: gone or unreadable)."""


class RecordSink(Protocol):
    """Where committed records go: a database transaction, an in-memory dict."""

    def put(self, kind: RecordKind, key: bytes, value: bytes) -> None:
        """Write ``value`` under ``(kind, key)``, replacing any earlier value."""

    def delete(self, kind: RecordKind, key: bytes) -> None:
        """Remove ``(kind, key)``; removing an absent key does nothing."""


def apply_persist(persist: Persist, sink: RecordSink) -> None:
    """Apply one ``Persist`` to ``sink``, in the order every driver uses.

    Order: first every put, in order (a later put of the same key replaces an earlier one),
    then every delete, in order (deleting an absent key does nothing). So a key both put and
    deleted in one ``Persist`` ends up deleted, whatever the order the core listed them in.
    Applying the same ``Persist`` twice gives the same state, so a failed commit may be retried
    (before any later one). Atomicity is the sink's business: a database applies this inside one
    transaction; an in-memory sink cannot fail halfway.
    """
    for record in persist.puts:
        sink.put(record.kind, record.key, record.value)
    for kind, key in persist.deletes:
        sink.delete(kind, key)
