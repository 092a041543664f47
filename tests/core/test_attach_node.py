"""Attachments between real Nodes (sans-IO, in memory): message, relay, cuts, restarts."""

from __future__ import annotations

import random

from meshmsg.config import AttachConfig, NodeConfig
from meshmsg.core.attach.assembly import AttachmentRef, ChunkOpener, Sealer
from meshmsg.core.attach.format import CHUNK_BYTES, chunk_count
from meshmsg.core.attach.table import Role
from meshmsg.core.events import (
    AttachmentComplete,
    AttachmentDelivered,
    AttachmentProgress,
    MessageReceived,
)
from tests.helpers import Mesh

SIZE = 5 * CHUNK_BYTES + 1_000  # six chunks
# One chunk in flight per link, so a cut after k stored chunks leaves exactly k.
ONE_AT_A_TIME = NodeConfig(attach=AttachConfig(requests_in_flight=1))


def seal_into(mesh: Mesh, name: str, data: bytes, seed: int = 0) -> AttachmentRef:
    """What the application does (app/files.py): seal chunk by chunk into the chunk store."""
    rng = random.Random(seed)
    key, done = rng.randbytes(32), rng.randbytes(16)
    sealer = Sealer(key, done, len(data), mesh.configs[name].attach)
    bodies = []
    for index in range(chunk_count(len(data))):
        start = index * CHUNK_BYTES
        bodies.append(sealer.seal(data[start : start + sealer.next_length]))
    manifest, tree = sealer.finish()
    for index, body in enumerate(bodies):
        mesh.chunks[name][(manifest.attachment_id, index)] = (tree.proof(index), body)
    return AttachmentRef(
        manifest.attachment_id, manifest.encode(), key, done, "report.pdf", len(data),
        "application/pdf",
    )  # fmt: skip


def opened(mesh: Mesh, name: str, ref: AttachmentRef) -> bytes:
    opener = ChunkOpener(ref.key, ref.check(mesh.configs[name].attach), ref.size)
    disk = mesh.chunks[name]
    return b"".join(
        opener.open(i, disk[(ref.attachment_id, i)][1]) for i in range(chunk_count(ref.size))
    )


def sent(mesh: Mesh, data: bytes) -> AttachmentRef:
    mesh.befriend("a", "c", pair=True)
    ref = seal_into(mesh, "a", data)
    mesh.nodes["a"].send_files(mesh.peer_id("c"), "the report", [ref], now=mesh.now)
    mesh.run()
    return ref


def test_a_file_reaches_a_recipient_never_online_with_the_sender() -> None:
    mesh = Mesh(["a", "b", "c"])
    data = random.Random(1).randbytes(SIZE)
    ref = sent(mesh, data)
    mesh.connect("a", "b")
    assert mesh.chunks_written["b"] == 6  # the relay took a copy of the attachment
    assert mesh.nodes["b"].attachments[ref.attachment_id].role is Role.RELAY
    mesh.disconnect("a", "b")
    mesh.connect("b", "c")
    (received,) = mesh.of_type("c", MessageReceived)
    assert received.body == "the report"
    assert mesh.of_type("c", AttachmentComplete) == [
        AttachmentComplete(attachment_id=ref.attachment_id)
    ]
    assert opened(mesh, "c", ref) == data
    assert len(mesh.of_type("c", AttachmentProgress)) == 6
    # C's completion receipt purged B's copy, and reaches A through B.
    assert ref.attachment_id not in mesh.nodes["b"].attachments
    mesh.disconnect("b", "c")
    mesh.connect("a", "b")
    assert mesh.of_type("a", AttachmentDelivered) == [
        AttachmentDelivered(attachment_id=ref.attachment_id)
    ]
    assert not any(key[0] == ref.attachment_id for key in mesh.chunks["a"])


def test_a_relay_restarted_mid_transfer_resumes_without_refetching() -> None:
    mesh = Mesh(["a", "b", "c"], config=ONE_AT_A_TIME)
    data = random.Random(2).randbytes(SIZE)
    ref = sent(mesh, data)
    mesh.cut_after_chunks["b"] = 2
    mesh.connect("a", "b")  # the contact ends after two chunks
    assert mesh.chunks_written["b"] == 2
    assert not mesh.linked("a", "b")
    mesh.stop("b")
    mesh.start("b")  # kill -9 and restart: the two chunks are on its disk
    assert mesh.nodes["b"].attachments[ref.attachment_id].held.held == 2
    mesh.connect("a", "b")
    assert mesh.chunks_written["b"] == 6  # four more, not six
    mesh.disconnect("a", "b")
    mesh.cut_after_chunks["c"] = 3
    mesh.connect("b", "c")
    assert mesh.chunks_written["c"] == 3
    mesh.stop("c")
    mesh.start("c")
    mesh.connect("b", "c")
    assert mesh.chunks_written["c"] == 6
    assert opened(mesh, "c", ref) == data


def test_the_recipient_resumes_from_another_relay() -> None:
    mesh = Mesh(["a", "b", "d", "c"], config=ONE_AT_A_TIME)
    data = random.Random(3).randbytes(SIZE)
    ref = sent(mesh, data)
    mesh.connect("a", "b")
    mesh.connect("a", "d")
    mesh.disconnect("a", "b")
    mesh.disconnect("a", "d")
    mesh.cut_after_chunks["c"] = 4
    mesh.connect("b", "c")  # four chunks from B, then the contact ends
    assert mesh.chunks_written["c"] == 4
    mesh.connect("d", "c")  # the rest from D
    assert mesh.chunks_written["c"] == 6
    assert opened(mesh, "c", ref) == data


def test_attachments_survive_a_restart_of_sender_and_recipient() -> None:
    mesh = Mesh(["a", "c"])
    data = random.Random(4).randbytes(SIZE)
    ref = sent(mesh, data)
    mesh.stop("a")
    mesh.start("a")
    assert mesh.nodes["a"].attachments[ref.attachment_id].held.complete
    mesh.connect("a", "c")
    assert opened(mesh, "c", ref) == data
    mesh.stop("c")
    mesh.start("c")
    item = mesh.nodes["c"].attachments[ref.attachment_id]
    assert (item.role, item.held.complete, item.ref) == (Role.WANTED, True, ref)
