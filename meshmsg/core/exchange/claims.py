"""Claims that do not name the recipient (issue #11, finding 4).

A peer answers an Offer with ``Reply.for_me`` for envelopes it says are its own mail. A relay in
Spray-and-Wait's wait phase (one copy left) hands its copy only to such a claimant, so until now
a claim told the relay who the recipient was, and was always right.

Two rules together take that certainty away, outside ONE mode:

* **Decoys.** A node claims, with probability ``message.decoy_claim_rate``, each offered envelope
  that it lacks and cannot open. A claim is then the recipient's or a decoy's, and the relay
  cannot tell which.
* **A claim is a hand-over of one copy.** The giver sends one copy and keeps its own with its
  whole budget, as if the claimant were one more carrier. A decoy therefore takes no mail away
  from its recipient and only carries one copy; the real recipient opens it, and its purge
  token, held from the delivering relay like its receipt (``receiptholds.py``), cleans the
  relay's copy up later.

Our *own* mail is different: we know its recipient. A claim by that contact is a delivery, as
before (the whole budget goes, our copy is dropped); a claim by anyone else gets one copy and
ours stays. The recipient itself may claim, as a decoy, its own mail beyond its tag window.
A decoy copy that turns out to be ours (our window slid over it while it travelled) is opened
at once if it lies in the lower half of the window, and otherwise kept as a carried copy and
opened in counter order when the window reaches it: opened at once, it would overtake the mail
still on its way and push their counters out of the skipped set. Group and first-contact mail
is opened on arrival (a group chain that came in the same meeting probes only the store, and
the copy would wait for the next probe).
Own group mail keeps its rule (one copy per member, ours kept for the others).

ONE mode keeps the old claim, so the reference runs keep the ONE's semantics.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from meshmsg.core.e2e import Match
from meshmsg.core.exchange.directfirst import recipient_of
from meshmsg.core.session import PeerSession
from meshmsg.core.state import NodeState
from meshmsg.core.store import StoreItem, Tier

_SCALE = 1 << 30  # resolution of the decoy draw (randbelow on an integer range)


@dataclass(frozen=True, slots=True)
class ClaimHandOver:
    """What a claim gets: ``copies`` in the transfer; ``keeps``: our copy and budget stay."""

    copies: int
    keeps: bool


def decoy_claims(state: NodeState, session: PeerSession, lacking: Iterable[bytes]) -> list[bytes]:
    """The offered ids we lack and cannot open that we claim all the same (decoys),
    remembered on ``session`` so that their transfers are kept as carried copies."""
    rate = state.config.message.decoy_claim_rate
    if rate <= 0.0 or state.store.one_mode:
        return []
    threshold = int(rate * _SCALE)
    chosen = [i for i in lacking if state.rng.randbelow(_SCALE) < threshold]
    decoys = session.decoys
    for envelope_id in chosen:
        decoys[envelope_id] = None
    while len(decoys) > state.config.wire.max_container_items:  # a giver that never sends
        del decoys[next(iter(decoys))]
    return chosen


def is_decoy_transfer(session: PeerSession, envelope_id: bytes) -> bool:
    """A transfer we claimed as a decoy: carried, whatever our tags say now (our window may
    have slid over it meanwhile; opened in counter order later, exchange/opening.py)."""
    if envelope_id not in session.decoys:
        return False
    del session.decoys[envelope_id]
    return True


def hand_over_claim(state: NodeState, item: StoreItem, session: PeerSession) -> ClaimHandOver:
    """How to answer ``session``'s peer claiming ``item`` (see the module docstring)."""
    if state.groups.keeps(item.envelope_id):
        return ClaimHandOver(copies=1, keeps=True)  # one copy per member, ours for the others
    whole = ClaimHandOver(copies=item.copies, keeps=False)
    if state.store.one_mode:
        return whole
    if item.tier is Tier.OWN and recipient_of(state, item) == session.peer_id:
        return whole  # our own mail, taken by its recipient: delivered
    return ClaimHandOver(copies=1, keeps=True)


def opens_in_order(state: NodeState, match: Match, tag: bytes) -> Match | None:
    """``match`` if opening our decoy copy now keeps its contact's window in counter order
    (the lower half, e2estate.openable_tags); None: keep it as a carried copy, opened when
    the window reaches it. Group and first-contact mail is opened on arrival as usual."""
    contact = state.contacts.get(match.peer_id)
    channel = None if contact is None else contact.channel
    if channel is not None and tag in channel.openable_tags(in_order=True):
        return match
    return None
