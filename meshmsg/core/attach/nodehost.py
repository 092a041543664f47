"""The attachment carrier inside a node: its host over the node's links, effects and records.

Records the carrier sends go out on the link, chunk effects and persisted writes go to the
node's effects, events to the application. :mod:`meshmsg.core.exchange` routes attachment
records here, seals messages that carry attachments and opens them (``add_own``, ``want``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from meshmsg.config import NodeConfig
from meshmsg.core.attach.assembly import AttachmentRef
from meshmsg.core.attach.carrier import AttachmentCarrier
from meshmsg.core.attach.table import Role
from meshmsg.core.effects import ChunkEffect, LinkId, RecordKind, StoredRecord
from meshmsg.core.events import AttachEvent, Event
from meshmsg.core.session import PeerSession
from meshmsg.core.wire import Record
from meshmsg.errors import CloseReason, RemoteProtocolError


class NodeSurface(Protocol):
    """What the carrier's host needs of the node (``meshmsg.core.node.Node``)."""

    @property
    def config(self) -> NodeConfig: ...

    @property
    def sessions(self) -> Mapping[LinkId, PeerSession]: ...

    def transmit(self, session: PeerSession, records: list[Record], envelopes: int = 0) -> None:
        ...

    def persist(
        self, puts: list[StoredRecord], *, deletes: Iterable[tuple[RecordKind, bytes]] = ()
    ) -> int: ...

    def emit(self, event: Event) -> None: ...

    def chunk(self, effect: ChunkEffect) -> None: ...


class Attachments:
    """The node's attachment carrier, wired to its links, effects and records."""

    __slots__ = ("_node", "carrier")

    def __init__(self, node: NodeSurface) -> None:
        self._node = node
        self.carrier = AttachmentCarrier(node.config, self)

    # --- AttachHost
    def send(self, link: LinkId, record: Record) -> None:
        session = self._node.sessions.get(link)
        if session is not None:
            self._node.transmit(session, [record])

    def violation(self, link: LinkId, reason: CloseReason, detail: str) -> None:
        # Raised through the record handler: the node closes this link only.
        raise RemoteProtocolError(detail, reason=reason)

    def chunk_effect(self, effect: ChunkEffect) -> None:
        self._node.chunk(effect)

    def attach_event(self, event: AttachEvent) -> None:
        self._node.emit(event)

    def persist(
        self, puts: tuple[StoredRecord, ...], deletes: tuple[tuple[RecordKind, bytes], ...]
    ) -> None:
        self._node.persist(list(puts), deletes=deletes)

    # --- the node's side
    def on_established(self, session: PeerSession) -> None:
        if session.peer_id is not None:
            self.carrier.link_up(session.link_id, session.peer_id, session.tier)

    def on_closed(self, session: PeerSession) -> None:
        self.carrier.link_down(session.link_id)

    def handle(self, session: PeerSession, record: Record, now: float) -> None:
        self.carrier.handle(session.link_id, record, now)

    def refs_of(self, message_id: bytes) -> list[AttachmentRef]:
        """Our own attachments a message carries (to seal a message that waited for keys)."""
        return [
            item.ref for item in self.carrier.table.items.values()
            if item.message_id == message_id and item.role is Role.OWN and item.ref is not None
        ]  # fmt: skip
