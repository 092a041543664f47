"""Attachment throughput over one link: two real Nodes in two processes, loopback TCP.

Like the link-messages row, the two ends run in two processes: this one is the recipient, a
child (``python -m meshmsg.bench.attach _serve``) the sender. The child seals a random file
into its chunk store (not timed) and sends it in a message; the recipient dials it. The clock
runs from the recipient's ``MessageReceived`` (it now knows of the attachment; the link, the
pairing of the two contacts at their first meeting and the message itself took ~0.07–0.09 s
before that, which is the link-setup row's business, as link-messages also starts on a link
that is up) to its ``AttachmentComplete``: holdings, requests, chunk reads, Merkle checks,
Noise, and durable chunk writes (``meshmsg.net.chunkstore``: one sync per batch) on both
sides. The figure is in bytes per second, next to the in-process Noise limit of the
link-messages row in bytes per second, measured in the same call.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from meshmsg.bench.measure import PAYLOAD_BYTES, noise_transport_rate
from meshmsg.config import NodeConfig
from meshmsg.core.events import AttachmentComplete, MessageReceived
from meshmsg.core.identity import ContactCard, Identity, PublicIdentity
from meshmsg.core.node import Node
from meshmsg.errors import TransportError
from meshmsg.net.chunkstore import ChunkStore
from meshmsg.net.runner import open_node
from meshmsg.net.tcp import format_address
from meshmsg.sysrng import SystemRng

_LOCALHOST = "127.0.0.1"
_TIMEOUT_S = 300.0


def measure_attachment_throughput(size: int) -> dict[str, float]:
    """Bytes/s of one attachment of ``size`` bytes over one link, and the Noise limit.

    Raises:
        TransportError: the sender's process did not start, or the attachment did not arrive.
    """
    limit = noise_transport_rate() * PAYLOAD_BYTES
    rng = SystemRng()
    sender, recipient = Identity.generate(rng), Identity.generate(rng)
    with tempfile.TemporaryDirectory(prefix="meshmsg-bench-attach-") as root:
        setup = {
            "identity": sender.to_bytes().hex(), "peer": recipient.public.to_bytes().hex(),
            "size": size, "dir": str(Path(root) / "sender"),
        }  # fmt: skip
        child = subprocess.Popen(
            [sys.executable, "-m", "meshmsg.bench.attach", "_serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            address = _child_address(child, json.dumps(setup))
            node = _contact_node(recipient, sender.public)
            elapsed = trio.run(_receive, node, ChunkStore(Path(root) / "recipient"), address)
        finally:
            _stop(child)
    return {"attach_bytes_per_s": size / elapsed, "limit_bytes_per_s": limit}


def _contact_node(identity: Identity, peer: PublicIdentity) -> Node:
    node = Node(identity=identity, config=NodeConfig(), rng=SystemRng(), now=time.time())
    node.add_contact(ContactCard(public=peer), verified=True, now=time.time())
    return node


async def _receive(node: Node, chunks: ChunkStore, address: str) -> float:
    """Seconds from the message that carries the attachment to the attachment complete."""
    async with open_node(node, host=_LOCALHOST, chunks=chunks) as recipient:
        with recipient.subscribe(capacity=1 << 16) as events, trio.fail_after(_TIMEOUT_S):
            await recipient.peer_discovered(address)
            start: float | None = None
            async for event in events:
                if isinstance(event, MessageReceived) and start is None:
                    start = time.perf_counter()
                elif isinstance(event, AttachmentComplete) and start is not None:
                    return time.perf_counter() - start
    raise TransportError("the attachment did not arrive")


def _child_address(child: subprocess.Popen[str], setup: str) -> str:
    assert child.stdin is not None
    assert child.stdout is not None
    child.stdin.write(setup + "\n")
    child.stdin.flush()
    line = child.stdout.readline()
    if not line.startswith("PORT "):
        raise TransportError(f"the sender's process failed to start: {line!r}")
    return format_address(_LOCALHOST, int(line.split()[1]))


def _stop(child: subprocess.Popen[str]) -> None:
    """Close the child's stdin (its signal to stop) and wait for it."""
    if child.stdin is not None:
        child.stdin.close()
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    if child.stdout is not None:
        child.stdout.close()


# --- the sender's process ----------------------------------------------------------------------


def _serve() -> None:
    """Seal the file, send it in a message, listen; run until stdin closes."""
    setup = json.loads(sys.stdin.readline())
    identity = Identity.from_bytes(bytes.fromhex(setup["identity"]))
    peer = PublicIdentity.from_bytes(bytes.fromhex(setup["peer"]))
    size, rng, node = int(setup["size"]), SystemRng(), _contact_node(identity, peer)
    store = ChunkStore(Path(setup["dir"]))
    ref = store.seal_file(
        io.BytesIO(os.urandom(size)), size, "bench.bin", "", key=rng.randbytes(32),
        done_token=rng.randbytes(16), config=node.config.attach,
    )  # fmt: skip
    node.send_files(peer.peer_id, "", [ref], now=time.time())

    async def main() -> None:
        async with open_node(node, host=_LOCALHOST, chunks=store) as runner:
            print(f"PORT {runner.port}", flush=True)
            await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)

    trio.run(main)


if __name__ == "__main__":
    if sys.argv[1:] != ["_serve"]:
        raise SystemExit("usage: python -m meshmsg.bench.attach _serve (started by the bench)")
    _serve()
