"""Attachments in a meeting: the carrier (core/attach/carrier.py) over the node's state and outbox.

This part is the carrier's host: records it sends go out on the link, chunk effects and
persisted writes go to the outbox, events to the application. Records of attachments are routed
here by :mod:`.dispatch`; messages that carry attachments are sealed by :mod:`.sending` and
opened by :mod:`.opening`, which call :meth:`Attachments.add_own` and :meth:`Attachments.want`.
"""

from __future__ import annotations

from meshmsg.core.attach.assembly import AttachmentRef
from meshmsg.core.attach.carrier import AttachmentCarrier
from meshmsg.core.attach.table import Carried, Role
from meshmsg.core.effects import ChunkEffect, LinkId, RecordKind, StoredRecord
from meshmsg.core.events import AttachEvent
from meshmsg.core.outbox import Outbox
from meshmsg.core.session import PeerSession
from meshmsg.core.state import NodeState
from meshmsg.core.wire import Record
from meshmsg.errors import CloseReason, RemoteProtocolError


class Attachments:
    """The node's attachment carrier, wired to its links, outbox and records."""

    __slots__ = ("_out", "_state", "carrier")

    def __init__(self, state: NodeState, out: Outbox) -> None:
        self._state = state
        self._out = out
        self.carrier = AttachmentCarrier(state.config, self)

    # --- AttachHost
    def send(self, link: LinkId, record: Record) -> None:
        session = self._state.sessions.get(link)
        if session is not None:
            self._out.transmit(session, [record])

    def violation(self, link: LinkId, reason: CloseReason, detail: str) -> None:
        # Raised through the record handler: the node closes this link only.
        raise RemoteProtocolError(detail, reason=reason)

    def chunk_effect(self, effect: ChunkEffect) -> None:
        self._out.chunk(effect)

    def attach_event(self, event: AttachEvent) -> None:
        self._out.emit(event)

    def persist(
        self, puts: tuple[StoredRecord, ...], deletes: tuple[tuple[RecordKind, bytes], ...]
    ) -> None:
        self._out.persist(list(puts), deletes=deletes)

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

    def of_message(self, message_id: bytes) -> list[Carried]:
        return [i for i in self.carrier.table.items.values() if i.message_id == message_id]
