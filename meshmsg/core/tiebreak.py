"""Which of two links to one peer both sides keep (issue #17.6).

Two nodes that find each other at once dial each other, and both links come up. Each side
must close the same one, whatever order its handshakes finished in, or each keeps a different
link and the pair holds two until one of them drops (on a LAN, for hours).

So the rank of a link uses only what both ends of it know identically once its Noise
handshake is over: who initiated it (both know both peer ids) and the handshake hash (the
same on both sides, and different for every handshake). The link with the lower rank is kept.
A node that sees a second link to a peer closes the higher-ranked one of the two; the
lowest-ranked link of a pair is then never closed by this rule on either side, and every
other link is closed by whichever side sees it next to a lower one. Nothing is lost by
closing a link mid-transfer: custody is acknowledged only after a commit, so a closed link's
unacknowledged mail is offered again on the kept one.
"""

from __future__ import annotations

LinkRank = tuple[bytes, bytes]


def link_rank(*, initiator_id: bytes, handshake_hash: bytes) -> LinkRank:
    """The rank of one established link: lower initiator peer id first, then handshake hash."""
    return (initiator_id, handshake_hash)


def keeps_new(new: LinkRank, existing: LinkRank) -> bool:
    """Whether the new link replaces the existing one (else the new one is closed).

    Equal ranks cannot happen between two handshakes (their hashes differ); if they did, the
    existing link is kept, which both sides would also agree on only by luck, so it is moot.
    """
    return new < existing
