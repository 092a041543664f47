"""Pacing a contact's sending budget: renew it on a live link, and say why sealing waits.

Theory of operation
-------------------
A channel seals at most ``max_messages_per_period`` messages per (epoch, direction, period)
(``docs/protocol/e2e.md`` §5). A period cannot end early, but an epoch can: every heal starts a
fresh epoch whose counters start at zero. Meetings heal, so offline the cap renews at each
meeting and each period; a link that stays up for hours used to be one meeting, and at the cap
the pair fell silent until midnight (issue #17).

The fix is a *live heal*: once the budget left falls to ``renew_below_fraction`` of the cap and
the contact is linked, the node sends a ``KeyExchange`` on that link; the peer answers with a
share of its own and both heal exactly as at a meeting. Starting before the cap leaves a round
trip of headroom, so sending does not stall on a LAN. A live heal is started only on a link
whose peer announced :data:`LIVE_HEAL` in its ``Hello`` (an older peer would close the link on a
second ``KeyExchange``) and whose previous exchange is over and confirmed (so a late
``KeyConfirm`` never meets a newer exchange).

Cost and limits: an answered live heal costs two X25519 operations and one channel write, what
a reconnect costs without its Noise handshake; only an authenticated contact can ask for one
(blocking it ends that). Each heal leaves the previous receive epoch open until its mail
arrived (``max_epochs_retained``, e2e.md §8); on a live link that mail is offered at once, and
a further heal needs a round trip behind it on the same ordered link, so the receiver stays
within an epoch or two of the sender (3,000 messages at a cap of 100 over loopback: none lost).

While sealing waits, :func:`seal_wait` names the reason and, where one exists, the time it ends.
This module only reads node state; the :class:`~meshmsg.core.exchange.Exchange` acts on it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from typing import Protocol

from meshmsg.config import MessageLimits, NodeConfig
from meshmsg.core.contacts import Contact, ContactBook
from meshmsg.core.conversations import Conversations
from meshmsg.core.events import MessageStatus
from meshmsg.core.link import LinkState
from meshmsg.core.records import Hello
from meshmsg.core.session import PeerSession


class NodeView(Protocol):
    """What :func:`outbox_waits` reads of a Node (a Protocol: no import cycle into node.py)."""

    @property
    def config(self) -> NodeConfig: ...
    @property
    def contacts(self) -> ContactBook: ...
    @property
    def conversations(self) -> Conversations: ...
    @property
    def now(self) -> float: ...


QUEUED = MessageStatus.QUEUED
LIVE_HEAL = 2  # Hello capability: "a KeyExchange after the meeting's exchange is answered"


class SealWait(enum.Enum):
    """Why an own message is not sealed yet (the outbox reasons of the local API)."""

    PAIRING = "waiting_for_pairing"  # no channel: the first direct meeting pairs
    KEY_EXCHANGE = "waiting_for_key_exchange"  # a pairing or heal is under way: one round trip
    CHANNEL_BUDGET = "waiting_for_channel_budget"  # the period's counters are used up
    OUTBOX_ROOM = "waiting_for_outbox_room"  # our store has no room for more own mail


def renewal_threshold(limits: MessageLimits) -> int:
    """Budget left (messages) at or below which a live link renews the channel."""
    cap = limits.max_messages_per_period
    return max(0, min(cap - 1, math.ceil(cap * limits.renew_below_fraction)))


def heals_live(session: PeerSession) -> bool:
    """Whether the peer of this link announced that it answers a live heal."""
    peer = session.link.peer
    if peer is None:
        return False
    return any(isinstance(r, Hello) and LIVE_HEAL in r.capabilities for r in peer.records)


def renewal_link(
    sessions: Iterable[PeerSession], contact: Contact, limits: MessageLimits, now: float
) -> PeerSession | None:
    """The link on which to renew ``contact``'s channel now; None if not low or no such link."""
    channel = contact.channel
    if channel is None or contact.exchanging:
        return None
    if channel.remaining(now) > renewal_threshold(limits):
        return None
    for session in sessions:
        state = session.key_exchange
        settled = state is not None and state.done and state.confirmed
        live = session.link.state is LinkState.ESTABLISHED
        if session.peer_id == contact.peer_id and settled and live and heals_live(session):
            return session
    return None


def seal_wait(contact: Contact | None, limits: MessageLimits, now: float) -> SealWait:
    """Why an unsealed own message to ``contact`` waits (read-only: moves no clock)."""
    if contact is None or contact.channel is None:
        return SealWait.PAIRING
    if contact.exchanging:
        return SealWait.KEY_EXCHANGE
    if contact.channel.remaining(now) <= 0:
        return SealWait.CHANNEL_BUDGET
    return SealWait.OUTBOX_ROOM


def wait_until(contact: Contact | None, reason: SealWait, limits: MessageLimits) -> float | None:
    """When a wait ends at the latest, if that is known: the budget at the next period (or
    earlier, at the next meeting or live heal); the others end with an event, not a time."""
    if reason is not SealWait.CHANNEL_BUDGET or contact is None or contact.channel is None:
        return None
    return (contact.channel.period + 1) * limits.period_s


def outbox_waits(node: NodeView) -> dict[str, tuple[int, float | None]]:
    """Unsealed own messages still due, by reason: (how many, when the wait ends if known)."""
    limits, now = node.config.message, node.now
    waits: dict[str, tuple[int, float | None]] = {}
    for peer_id in node.conversations.peers():
        due = [m for m in node.conversations.unsealed_for(peer_id) if m.status is QUEUED]
        if not due:
            continue
        contact = node.contacts.get(peer_id)
        reason = seal_wait(contact, limits, now)
        count, until = waits.get(reason.value, (0, None))
        end = wait_until(contact, reason, limits)
        soonest = end if until is None else until if end is None else min(until, end)
        waits[reason.value] = (count + len(due), soonest)
    return waits
