"""Large messages in ONE mode: a message over a text body travels with a declared size.

The ONE's default scenario writes 500 kB-1 MB messages, whole-message transfers that the ONE
charges at the link rate and counts in 5 MB buffers. The core's text body holds 32 KiB
(``message.max_body_bytes``), and ONE mode sends every message as text, as the ONE does (no
chunks to resume). So a ONE-mode message larger than a text body is sent as a short body
(``"<id>:"``) that *declares* its size: ``send_message(..., one_size=size)``. The core carries
the declaration beside the envelope (``records.OneModeSize``), its ONE-mode store counts
``size`` bytes for it, and the ONE link model charges ``size`` bytes of link time for its
transfer (``Transmit.one_bytes``). Messages that fit a text body keep their real bytes, so the
reference trace (1-2 kB messages) replays exactly as before. docs/simulator.md, "Large
messages in ONE mode", says why this and not real megabytes.
"""

from __future__ import annotations

from typing import Final

from meshmsg.config import MessageLimits
from meshmsg.sim.host import SimulatedNode
from meshmsg.sim.traces import MessageEvent

TEXT_BODY_BYTES: Final = MessageLimits().max_body_bytes
"""Above this a ONE-mode message declares its size instead of carrying its bytes."""


def send_one_mode(
    node: SimulatedNode, peer: bytes, event: MessageEvent, *, now: float, ttl_s: float
) -> bytes:
    """Send ``event``'s message in ONE mode: its real bytes, or a declared size if too large."""
    if event.size <= TEXT_BODY_BYTES:
        body = (event.message_id + ":" + "." * event.size)[: max(event.size, 1)]
        return node.send_message(peer, body, now=now, ttl_s=ttl_s)
    declared = event.message_id + ":"
    return node.send_message(peer, declared, now=now, ttl_s=ttl_s, one_size=event.size)
