"""Items that become durable while a link still reconciles are offered when it ends (#17.2).

Theory of operation
-------------------
A reconciled link learns of every later item at once: new mail, an envelope taken on another
link, a receipt, a purge token (``docs/protocol.md``, meeting step 8). A link still reconciling
cannot take offers yet, and its reconciliation may miss an item added meanwhile (the result is
exact only for ids whose presence did not change during the session, ``core/reconcile.py``):
such an item used to wait for the next meeting, which on a LAN may be hours away.

So an item that becomes durable while a link is established but not yet reconciled is *parked*
on that link and offered in the step that ends its reconciliation, together with what the
reconciliation found. The bound: an item durable while a link is up is offered on it no later
than the end of that link's reconciliation (at most ``max_round_trips`` round trips; on an idle
LAN link a few milliseconds). A link still in its handshake parks nothing: its reconciliation
has not started, so it sees every item already in the set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from meshmsg.core.session import PeerSession
from meshmsg.core.store import RelayStore

# Takes no Node or Exchange (callers pass what is needed): no import cycle back into them.
Offer = Callable[[PeerSession, list[bytes]], None]


def offer_everywhere(
    sessions: Iterable[PeerSession], offer: Offer, ids: Sequence[bytes], source: bytes | None
) -> None:
    """Offer items on every reconciled link but the one to ``source``; park them on the links
    that are established and still reconciling."""
    for session in list(sessions):
        if session.peer_id is None or session.peer_id == source:
            continue  # still in the handshake (its reconciliation will see them), or the source
        if session.synced:
            offer(session, list(ids))
        else:
            session.parked.update(dict.fromkeys(ids))


def take_parked(store: RelayStore, session: PeerSession) -> list[bytes]:
    """The items parked on a link whose reconciliation just ended (none came from its peer:
    an envelope taken from this peer later, on another link, is not offered back)."""
    parked = list(session.parked)
    session.parked.clear()
    peer = session.peer_id
    return [i for i in parked if (item := store.get(i)) is None or item.source != peer]
