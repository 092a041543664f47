"""Per-link meeting state: who the peer is and how far the sync exchange has come.

One :class:`PeerSession` exists per open link. It holds no logic: the node's
:mod:`meshmsg.core.exchange` parts read and advance it. Every collection here is bounded by
them (offers and transfers by ``SyncConfig``), and everything dies with the link.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from meshmsg.core.effects import LinkId
from meshmsg.core.keyschedule import KeyShare
from meshmsg.core.link import Link
from meshmsg.core.reconcile import Reconciler
from meshmsg.core.routing import PeerRouting
from meshmsg.core.store import Tier


@dataclass(slots=True, kw_only=True)
class KeyExchangeState:
    """Our half of a pairing/healing exchange (the secret never leaves this object)."""

    secret: bytes
    share: KeyShare
    done: bool = False
    sent_at: float = 0.0  # when our share went: unanswered for long = they have not added us
    # The peer's matching KeyConfirm came (or, for a pairing, none is due): a live heal may follow
    # without a late KeyConfirm meeting the newer exchange (core/pacing.py, issue #17).
    confirmed: bool = False
    # We healed; our KeyConfirm waits until the new epoch is durable (core/exchange/keys.py),
    # and no live heal starts before it went.
    confirm_pending: bool = False


@dataclass(slots=True, kw_only=True)
class InFlight:
    """An envelope handed to the peer and not yet acknowledged."""

    copies: int
    to_recipient: bool
    # A claim we answered with one copy, keeping ours and its budget (exchange/claims.py).
    keeps: bool = False
    # Not sent yet: its body, on disk only, is being read back (``LoadEnvelope``).
    loading: bool = False


@dataclass(slots=True, kw_only=True)
class PeerSession:
    link_id: LinkId
    link: Link
    address: str | None = None
    peer_id: bytes | None = None  # the peer's identity (from its IdentityProof)
    identity_key: bytes | None = None
    tier: Tier = Tier.STRANGER
    is_contact: bool = False
    route: PeerRouting | None = None
    key_exchange: KeyExchangeState | None = None
    heals: int = 0  # heals completed on this link: the first is the meeting's, later ones live
    reconciler: Reconciler | None = None
    synced: bool = False  # reconciliation finished: new items are offered directly
    offered: dict[bytes, None] = field(default_factory=dict)  # awaiting the peer's Reply
    # One entry per Offer record sent, oldest first: the peer answers each Offer with exactly
    # one Reply, in order, so a Reply is checked against (and settles) only its own Offer.
    offer_batches: deque[tuple[bytes, ...]] = field(default_factory=deque)
    in_flight: dict[bytes, InFlight] = field(default_factory=dict)
    # Offered, neither claimed nor held by the peer, and not handed over: offered again once
    # the peer took mail addressed to it, since that moves its tag window to later counters.
    declined: dict[bytes, None] = field(default_factory=dict)
    peer_has: set[bytes] = field(default_factory=set)  # ids the peer told us it holds
    # Ids we claimed as decoys (exchange/claims.py): their transfers are kept as carried
    # copies even if our window slid over them meanwhile (opened in order later). Bounded.
    decoys: dict[bytes, None] = field(default_factory=dict)
    # The peer's KeyExchange while it was not our contact (issue #12): kept so that adding it
    # during this link pairs at once with the share it already sent.
    stranger_share: bytes | None = None
    # Organisation directories: the versions the peer said it holds (org id -> serial), and
    # the one directory being received from it: (org id, serial, total chunks, bytes so far).
    peer_directories: dict[bytes, int] = field(default_factory=dict)
    directory_rx: tuple[bytes, int, int, bytearray] | None = None
    # Items that became durable while this link was still reconciling: offered when it ends
    # (core/lateoffers.py, issue #17.2). At most the node's own item set.
    parked: dict[bytes, None] = field(default_factory=dict)
