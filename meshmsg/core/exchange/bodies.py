"""Bodies of carried envelopes read back from disk: the answers to ``LoadEnvelope``.

With ``StoreConfig.bodies_on_disk`` a carried envelope's body leaves memory once its record is
committed (:meth:`meshmsg.core.store.RelayStore.body_durable`); the item keeps its id, tag, size
and routing state. Two things need the body again, and ask for it through
:meth:`~meshmsg.core.exchange.holdings.Holdings.load_body` (one load per item at a time):

* a transfer the routing decided (``Sync``): it waits in ``InFlight.loading`` and goes out when
  the body comes back;
* the item's record, to be written again when a custody changed its copies;
* an opening: mail we carry whose tag became ours (a new key, a new first-contact period, a
  group chain): it is opened when the body comes back, by the part that recognised it.

A body that cannot be read back (the row is gone or damaged) ends the transfers waiting for
it and nothing else: the item is dropped with ``DropReason.UNREADABLE`` (no link is closed).
"""

from __future__ import annotations

from meshmsg.core import codec
from meshmsg.core.e2e import MatchKind
from meshmsg.core.events import DropReason
from meshmsg.core.exchange.firstmail import FirstOpening
from meshmsg.core.exchange.holdings import Holdings
from meshmsg.core.exchange.opening import Opening
from meshmsg.core.exchange.sync import Sync
from meshmsg.core.groups.mail import GroupMail
from meshmsg.core.outbox import Outbox
from meshmsg.core.state import NodeState
from meshmsg.core.store import StoreItem


class Bodies:
    """Hands bodies read back from disk to the transfers and openings that wait for them."""

    __slots__ = ("_first", "_groups", "_holdings", "_opening", "_out", "_state", "_sync")

    def __init__(
        self, state: NodeState, out: Outbox, holdings: Holdings, sync: Sync, opening: Opening,
        first: FirstOpening, groups: GroupMail,
    ) -> None:  # fmt: skip
        self._state = state
        self._out = out
        self._holdings = holdings
        self._sync = sync
        self._opening = opening
        self._first = first
        self._groups = groups

    def loaded(self, envelope_id: bytes, value: bytes | None, now: float) -> None:
        """The driver read the ENVELOPE record ``envelope_id``: its value is ``value`` (None:
        the record is gone or could not be read)."""
        state = self._state
        wanted = state.body_loads.pop(envelope_id, None)
        if wanted is None:
            return  # nothing asked for it (a driver's mistake): nothing waits
        body = None if value is None else codec.stored_envelope(value, envelope_id, state.config)
        if body is None:
            self._lost(envelope_id)
            return
        self._sync.send_loaded(envelope_id, body, now)
        item = state.store.get(envelope_id)
        if wanted.rewrite and item is not None and item.envelope is None:
            self._out.persist([codec.envelope_record(item, body)])  # its copies changed
        if wanted.to_open and item is not None and item.envelope is None:
            item.envelope = body  # the opening parts read it from the item
            self._open(item, wanted.via, now)
            if state.store.get(envelope_id) is item:
                item.envelope = None  # still carried (group mail, a forgery): back on disk

    def _lost(self, envelope_id: bytes) -> None:
        self._sync.load_failed(envelope_id)
        self._holdings.drop_item(envelope_id, DropReason.UNREADABLE)

    def _open(self, item: StoreItem, via: bytes | None, now: float) -> None:
        """Open the item by whichever part's tags recognise it now (as on arrival)."""
        match = self._state.tags.lookup(item.tag)
        if match is not None and match.kind is MatchKind.LIVE:
            self._opening.open_stored(item, match, now, via)
        elif self._first.recognises(item.tag):
            self._first.open_carried(item, now)
        else:
            self._groups.open_loaded(item, now)
