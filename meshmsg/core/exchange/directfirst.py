"""Own mail whose recipient is on a live link goes to the recipient only (issue #17, load).

Spray-and-Wait hands half of a copy budget to the first peers met. On a LAN, where the
recipient is usually linked already, that made every message cost three or four relay
transfers and commits besides the one that delivers it (the five-node load test moved 30
messages/s, 51 without the sprayed copies). While the recipient has a live, reconciled link,
our own copies are therefore not offered to anyone else; when its last link ends with the copy
still here, the copy is offered on every link at once, and routing goes on as before.

ONE mode keeps the ONE's rules (its routers spray whatever the recipient's links), and
``routing.direct_first`` turns it off. Group mail and first-contact mail without a stored
message are not held: they have no one recipient.
"""

from __future__ import annotations

from collections.abc import Iterator

from meshmsg.core.session import PeerSession
from meshmsg.core.state import NodeState
from meshmsg.core.store import StoreItem, Tier


def _holds(state: NodeState) -> bool:
    return state.config.routing.direct_first and not state.store.one_mode


def recipient_of(state: NodeState, item: StoreItem) -> bytes | None:
    """The contact our own ``item`` is addressed to (None: not ours, or no one recipient)."""
    if item.tier is not Tier.OWN:
        return None
    message = state.conversations.by_envelope(item.envelope_id)
    return None if message is None else message.peer_id


def is_linked(state: NodeState, peer_id: bytes) -> bool:
    """A link to ``peer_id`` finished its reconciliation: it moves mail (a link still in its
    handshake or stalled before its sync does not hold anything back)."""
    return any(s.peer_id == peer_id and s.synced for s in state.sessions.values())


def waits_for_its_recipient(state: NodeState, item: StoreItem, session: PeerSession) -> bool:
    """Keep ``item`` from ``session``'s peer: it is ours, and its recipient is on another link."""
    if not _holds(state):
        return False
    recipient = recipient_of(state, item)
    if recipient is None or recipient == session.peer_id:
        return False
    return is_linked(state, recipient)


def released_by(state: NodeState, closed: PeerSession) -> Iterator[StoreItem]:
    """Own copies that waited for ``closed``'s peer, now that its last link is gone."""
    peer = closed.peer_id
    if not _holds(state) or peer is None or is_linked(state, peer):
        return
    for item in state.store.items_in(Tier.OWN):
        if recipient_of(state, item) == peer:
            yield item
