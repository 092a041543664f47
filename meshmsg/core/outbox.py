"""The outbox: the one place the core queues what it asks of its driver and what it reports.

Every part of the core emits through an :class:`Outbox`: events (``emit``), atomic writes with
an optional action to run once the driver confirmed them (``persist``), frames for a link
(``transmit``, ``flush``), dials and closes. The driver drains effects and events through
:class:`~meshmsg.core.node.Node`, in the order they were queued.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from meshmsg.core.effects import (
    ChunkEffect,
    CloseLink,
    Dial,
    Effect,
    LinkId,
    LoadEnvelope,
    Persist,
    RecordKind,
    StoredRecord,
    Transmit,
)
from meshmsg.core.events import Event
from meshmsg.core.link import LinkState
from meshmsg.core.session import PeerSession
from meshmsg.core.wire import Record
from meshmsg.errors import CloseReason

# Records whose deletion removes keys: a deleted channel, or a group chain (core/groups/).
_KEY_KINDS = frozenset({RecordKind.CHANNEL, RecordKind.GROUP_KEY})

CommitAction = Callable[[float], None]
"""Run with the time of ``storage_committed`` once a Persist is durable."""

ErasesKeys = Callable[[tuple[StoredRecord, ...]], bool]
"""Whether writing these puts replaces key state that still holds deleted keys (and notes the
write): :meth:`meshmsg.core.erasure.KeyErasure.erases` over the node's contacts."""


class Outbox:
    """Queued effects and events, and the actions waiting for a commit."""

    __slots__ = ("_effects", "_erases", "_events", "_next_token", "_on_commit", "durable", "now")

    def __init__(self, now: float, *, erases: ErasesKeys | None = None) -> None:
        self._effects: deque[Effect] = deque()
        self._erases = erases  # None: no key state is tracked (parts tested on their own)
        # Told each envelope id whose ENVELOPE record a commit made durable (its body may
        # leave memory: RelayStore.body_durable), after the commit's own actions.
        self.durable: Callable[[bytes], None] | None = None
        self._events: deque[Event] = deque()
        self._next_token = 1
        self._on_commit: dict[int, list[CommitAction]] = {}
        self.now = now  # the latest time an input told us; used only to stamp queued output

    def next_effect(self) -> Effect | None:
        return self._effects.popleft() if self._effects else None

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def persist(
        self,
        puts: list[StoredRecord],
        *,
        deletes: Iterable[tuple[RecordKind, bytes]] = (),
        then: CommitAction | None = None,
    ) -> int:
        """Queue one atomic ``Persist``; run ``then`` once the driver confirms it."""
        token = self._next_token
        self._next_token += 1
        put_all, delete_all = tuple(puts), tuple(deletes)
        # A write that erases keys is marked so the driver makes the old bytes leave the disk
        # at once (core/erasure.py); a deleted channel (a removed contact) erases all of them.
        erases = self._erases(put_all) if self._erases is not None else False
        erases = erases or any(kind in _KEY_KINDS for kind, _ in delete_all)
        self._effects.append(
            Persist(token=token, puts=put_all, deletes=delete_all, erases_keys=erases)
        )
        if then is not None:
            self._on_commit.setdefault(token, []).append(then)
        durable = self.durable
        envelopes = [r.key for r in put_all if r.kind is RecordKind.ENVELOPE]
        if durable is not None and envelopes:

            def bodies_durable(_: float) -> None:
                for envelope_id in envelopes:
                    durable(envelope_id)

            self._on_commit.setdefault(token, []).append(bodies_durable)
        return token

    def committed(self, token: int, now: float) -> None:
        """The driver committed ``token``: run what waited for it, in the order queued."""
        for action in self._on_commit.pop(token, []):
            action(now)

    def transmit(
        self, session: PeerSession, records: list[Record], envelopes: int = 0, one_bytes: int = 0
    ) -> None:
        """Queue records on a link; envelope-carrying sends leave at once, counted for pacing
        (and, in ONE mode, with the payload bytes they stand for: ``Transmit.one_bytes``)."""
        if session.link.state is not LinkState.ESTABLISHED:
            return
        session.link.send(records)
        if envelopes:
            data = session.link.data_to_send(self.now)
            if data:
                self._effects.append(
                    Transmit(
                        link=session.link_id, data=data, envelopes=envelopes, one_bytes=one_bytes
                    )
                )

    def flush(self, session: PeerSession, now: float, announces: int = 0) -> None:
        """Hand the driver whatever the link has ready to send; ``announces`` (ONE mode) marks
        it as the announcement of a transfer of that many bytes (``Transmit.one_bytes``)."""
        data = session.link.data_to_send(now)
        if data:
            self._effects.append(Transmit(link=session.link_id, data=data, one_bytes=announces))

    def chunk(self, effect: ChunkEffect) -> None:
        """Queue a chunk for the driver's chunk store (docs/architecture.md, chunk bodies)."""
        self._effects.append(effect)

    def load_envelope(self, envelope_id: bytes) -> None:
        """Ask the driver for a carried envelope's body (``LoadEnvelope``)."""
        self._effects.append(LoadEnvelope(envelope_id=envelope_id))

    def dial(self, address: str) -> None:
        self._effects.append(Dial(address=address))

    def close_link(self, link: LinkId, reason: CloseReason) -> None:
        self._effects.append(CloseLink(link=link, reason=reason))
