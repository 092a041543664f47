"""Contacts paired as if they had met: for the simulator and tests, never for users.

Real users pair at their first direct meeting, inside a Noise session. The simulator starts
scenarios with every pair of contacts already paired, and many tests need two paired nodes;
:func:`pair_offline` runs the same pairing computation both nodes would run at that meeting,
with each node's own randomness, and installs the result through the node's private hook (this
module is the one caller of ``Node._install_offline_channel``, which is not part of the node's
public surface).
"""

from __future__ import annotations

import hashlib

from meshmsg.core.e2e import ContactChannel, new_key_share
from meshmsg.core.node import Node


def pair_offline(a: Node, b: Node, *, now: float) -> None:
    """Give two nodes pairwise keys as if they had met (simulation and tests only).

    Real users pair at their first direct meeting. The simulator starts scenarios with every
    pair of contacts already paired; this runs the same pairing computation both nodes would
    run inside a Noise session, with each node's own randomness, and installs the result. Both
    nodes must already have each other as contacts.
    """
    contact_b = a.contacts.require(b.identity.peer_id)
    contact_a = b.contacts.require(a.identity.peer_id)
    secret_a, share_a = new_key_share(a._state.rng, now, a.config.message, None)
    secret_b, share_b = new_key_share(b._state.rng, now, b.config.message, None)
    binding = hashlib.blake2b(
        a.identity.peer_id + b.identity.peer_id, digest_size=64, person=b"meshmsg-offline"
    ).digest()
    for node, contact, secret, ours, theirs in (
        (a, contact_b, secret_a, share_a, share_b),
        (b, contact_a, secret_b, share_b, share_a),
    ):
        channel = ContactChannel.pair(
            our_ik=node.identity.public.identity_key, their_ik=contact.public.identity_key,
            our_secret=secret, ours=ours, theirs=theirs, handshake_hash=binding, now=now,
            limits=node.config.message, index=node.tags, peer_id=contact.peer_id,
        )  # fmt: skip
        node._install_offline_channel(contact, channel, now)
