"""Attachment throughput over one link: two real Nodes on the trio driver, loopback TCP.

The sender's file is sealed into its chunk store first (not timed); the clock runs from the
recipient dialling the sender to its ``AttachmentComplete``: holdings, requests, chunk reads,
Merkle checks, Noise, durable chunk writes (fsync per chunk) on both sides. Both nodes run in
this one process, so they share one core's worth of Python: a pessimistic figure next to the
in-process Noise limit of the link-messages row, in bytes per second.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path

import trio

from meshmsg.bench.measure import PAYLOAD_BYTES, noise_transport_rate
from meshmsg.config import NodeConfig
from meshmsg.core.events import AttachmentComplete
from meshmsg.core.identity import ContactCard, Identity
from meshmsg.core.node import Node
from meshmsg.core.offlinepair import pair_offline
from meshmsg.errors import TransportError
from meshmsg.net.chunkstore import ChunkStore
from meshmsg.net.runner import open_node
from meshmsg.net.tcp import format_address
from meshmsg.sysrng import SystemRng

_LOCALHOST = "127.0.0.1"
_TIMEOUT_S = 300.0


def measure_attachment_throughput(size: int) -> dict[str, float]:
    """Bytes/s of one attachment of ``size`` bytes over one link, and the Noise limit."""
    limit = noise_transport_rate() * PAYLOAD_BYTES
    with tempfile.TemporaryDirectory(prefix="meshmsg-bench-attach-") as root:
        elapsed = trio.run(_transfer, Path(root), size)
    return {"attach_bytes_per_s": size / elapsed, "limit_bytes_per_s": limit}


async def _transfer(root: Path, size: int) -> float:
    config, rng, now = NodeConfig(), SystemRng(), time.time()
    ids = Identity.generate(rng), Identity.generate(rng)
    nodes = [Node(identity=i, config=config, rng=rng, now=now) for i in ids]
    for node, other in ((nodes[0], ids[1]), (nodes[1], ids[0])):
        node.add_contact(ContactCard(public=other.public), verified=True, now=now)
    pair_offline(nodes[0], nodes[1], now=now)
    stores = [ChunkStore(root / "sender"), ChunkStore(root / "recipient")]
    ref = stores[0].seal_file(
        io.BytesIO(os.urandom(size)), size, "bench.bin", "", key=rng.randbytes(32),
        done_token=rng.randbytes(16), config=config.attach,
    )  # fmt: skip
    nodes[0].send_files(ids[1].peer_id, "", [ref], now=now)
    async with (
        open_node(nodes[0], host=_LOCALHOST, chunks=stores[0]) as sender,
        open_node(nodes[1], host=_LOCALHOST, chunks=stores[1]) as recipient,
    ):
        with recipient.subscribe(capacity=1 << 16) as events, trio.fail_after(_TIMEOUT_S):
            start = time.perf_counter()
            await recipient.peer_discovered(format_address(_LOCALHOST, sender.port))
            async for event in events:
                if isinstance(event, AttachmentComplete):
                    return time.perf_counter() - start
    raise TransportError("the attachment did not arrive")
