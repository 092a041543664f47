"""Attachments in a meeting: the carrier (core/attach/carrier.py) over the node's state and outbox.

This part is the carrier's host: records it sends go out on the link, chunk effects and
persisted writes go to the outbox, events to the application. Records of attachments are routed
here by :mod:`.dispatch`; messages that carry attachments are sealed by :mod:`.sending` and
opened by :mod:`.opening`, which call :meth:`Attachments.add_own` and :meth:`Attachments.want`.

Group messages with files (``core/groups/mail.py``) come through :meth:`add_group_own` and
:meth:`want_group`. An attachment of a group message is *shared*: every member fetches the one
encrypted copy, so a member that completes it sends no completion receipt (that would purge
the relays' copies the other members still need, as a pairwise purge token would for group
mail) and offers its chunks to the members it meets instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from meshmsg.core.attach.assembly import AttachmentRef
from meshmsg.core.attach.carrier import AttachmentCarrier
from meshmsg.core.attach.table import Carried, Role
from meshmsg.core.attach.wirestate import ref_from_entry
from meshmsg.core.effects import ChunkEffect, LinkId, RecordKind, StoredRecord
from meshmsg.core.events import AttachEvent
from meshmsg.core.groups.book import GroupMessage
from meshmsg.core.identity import peer_id_of
from meshmsg.core.outbox import Outbox
from meshmsg.core.session import PeerSession
from meshmsg.core.state import NodeState
from meshmsg.core.wire import Record
from meshmsg.errors import CloseReason, InvalidAttachment, RemoteProtocolError


class Attachments:
    """The node's attachment carrier, wired to its links, outbox and records."""

    __slots__ = ("_out", "_state", "carrier")

    def __init__(self, state: NodeState, out: Outbox) -> None:
        self._state = state
        self._out = out
        self.carrier = AttachmentCarrier(state.config, self)
        self.carrier.shared = self._of_group_message

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

    # --- group messages with files
    def add_group_own(
        self, refs: Sequence[AttachmentRef], message_id: bytes, expiry_at: float
    ) -> None:
        """Attachments of our group message (checked by the caller): carried for every member."""
        for ref in refs:
            self.carrier.add_own(ref, peer_id=None, message_id=message_id, expiry_at=expiry_at)

    def want_group(self, message: GroupMessage, now: float) -> None:
        """Attachments of a group message we opened: fetched now or pending, as pairwise ones.
        A reference that fails its checks is left out; the text is still shown."""
        expiry = now + self._state.config.message.max_ttl_s
        for entry in message.refs[: self._state.config.attach.max_attachments_per_message]:
            with contextlib.suppress(InvalidAttachment):
                self.carrier.want(
                    ref_from_entry(entry), peer_id=peer_id_of(message.sender),
                    message_id=message.message_id, expiry_at=expiry, now=now,
                )  # fmt: skip

    def _of_group_message(self, item: Carried) -> bool:
        mid = item.message_id
        return mid is not None and any(
            mid in entry.messages for entry in self._state.groups.entries.values()
        )
