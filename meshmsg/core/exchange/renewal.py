"""Starting key exchanges: at a meeting, and on a live link whose budget runs low (#17).

A contact's ``KeyExchange`` is started here, at a meeting (:mod:`.meeting` through
:mod:`.keys`) and, between meetings, by a *live heal* on a link that stays up: once the
contact's sending budget falls to ``renew_below_fraction`` of the period's cap
(:func:`meshmsg.core.pacing.renewal_link` has the rules), so the pair is never silent until the
next period. Sending, receipts and key confirmation ask :meth:`Renewal.renew_if_low` after they
spend or settle the budget; the answer and the heal itself are :mod:`.keys`'s.
"""

from __future__ import annotations

from meshmsg.core.contacts import Contact
from meshmsg.core.e2e import new_key_share
from meshmsg.core.outbox import Outbox
from meshmsg.core.pacing import renewal_link
from meshmsg.core.records import KeyExchange
from meshmsg.core.session import KeyExchangeState, PeerSession
from meshmsg.core.state import NodeState


class Renewal:
    """Starts key exchanges: the meeting's, and live heals when a budget runs low."""

    __slots__ = ("_out", "_state")

    def __init__(self, state: NodeState, out: Outbox) -> None:
        self._state = state
        self._out = out

    def start(self, session: PeerSession, contact: Contact, now: float) -> None:
        """Send a fresh share of ours on ``session``; no sealing until the exchange ends."""
        state = self._state
        secret, share = new_key_share(state.rng, now, state.config.message, contact.channel)
        session.key_exchange = KeyExchangeState(secret=secret, share=share)
        contact.exchanging = True  # no sealing for this contact until the exchange ends
        self._out.transmit(session, [KeyExchange(share=share.to_bytes())])

    def renew_if_low(self, contact: Contact, now: float) -> None:
        """Issue #17: a budget running low on a live link is renewed by a live heal, so the
        pair is never silent until the next period (core/pacing.py has the rules)."""
        sessions = self._state.sessions.values()
        session = renewal_link(sessions, contact, self._state.config.message, now)
        if session is not None:
            self.start(session, contact, now)
