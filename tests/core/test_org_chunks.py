"""A directory in chunks from a peer: chunks out of order, of an impossible count or over the
size limit close that link (and nothing is accepted), a directory split across several chunks
is assembled, and chunks that are not newer than ours or of an organisation we did not join
are skipped without harm."""

from __future__ import annotations

import dataclasses

import pytest

from meshmsg.config import NodeConfig, OrgLimits
from meshmsg.core.events import LinkClosed
from meshmsg.core.identity import Identity
from meshmsg.core.org.directory import Directory, build_directory
from meshmsg.core.org.keys import OrgSecret
from meshmsg.core.records import DirectoryChunk
from meshmsg.sim.rng import SeededRng
from tests.core.node_tools import AttackMesh, Injector

ORG = OrgSecret.generate(SeededRng(3, "org"), "Crisis Staff")
SMALL_CHUNKS = OrgLimits(chunk_bytes=1_000)
YEAR = 365 * 86_400


def _mesh() -> AttackMesh:
    mesh = AttackMesh(["carol"], config=NodeConfig(org=SMALL_CHUNKS))
    mesh.nodes["carol"].join_org(ORG.public, now=mesh.now)
    mesh.run()
    return mesh


def _directory(serial: int, now: float, members: int = 8) -> Directory:
    entries = [
        ORG.sign_entry(Identity.generate(SeededRng(i, "m")).public, name=f"Member {i}",
                       unit="Ops", role="", expires_at=int(now) + YEAR)
        for i in range(members)
    ]  # fmt: skip
    return build_directory(ORG, serial=serial, issued_at=int(now), entries=entries,
                           revocations=[], limits=SMALL_CHUNKS)  # fmt: skip


def _chunks(directory: Directory, org_id: bytes | None = None) -> list[DirectoryChunk]:
    size = SMALL_CHUNKS.chunk_bytes
    data = directory.data
    total = -(-len(data) // size)
    return [
        DirectoryChunk(org_id=org_id or ORG.public.org_id, serial=directory.serial, index=i,
                       total=total, data=data[i * size : (i + 1) * size])
        for i in range(total)
    ]  # fmt: skip


def _held_serial(mesh: AttackMesh) -> int | None:
    joined = mesh.nodes["carol"].orgs.get(ORG.public.org_id)
    assert joined is not None
    return None if joined.directory is None else joined.directory.serial


def _peer(mesh: AttackMesh, label: str) -> Injector:
    return mesh.inject("carol", mesh.stranger(label))


def test_a_directory_in_several_chunks_is_assembled() -> None:
    mesh = _mesh()
    chunks = _chunks(_directory(1, mesh.now))
    assert len(chunks) > 2
    peer = _peer(mesh, "relay")
    for chunk in chunks[:-1]:
        peer.send([chunk])
        assert _held_serial(mesh) is None  # nothing before the last chunk
    peer.send([chunks[-1]])
    assert _held_serial(mesh) == 1
    assert peer.up
    peer.send(_chunks(_directory(1, mesh.now)))  # the same serial again: skipped quietly
    other = OrgSecret.generate(SeededRng(4, "other"), "Impostors")
    foreign = build_directory(other, serial=5, issued_at=int(mesh.now), entries=[],
                              revocations=[], limits=SMALL_CHUNKS)  # fmt: skip
    peer.send(_chunks(foreign, org_id=other.public.org_id))  # not joined: skipped quietly
    assert peer.up
    assert _held_serial(mesh) == 1


@pytest.mark.parametrize(
    "spoil",
    [
        lambda c: [c[1]],  # starts in the middle
        lambda c: [c[0], c[2]],  # skips one
        lambda c: [c[0], dataclasses.replace(c[1], total=c[1].total + 1)],  # the count changes
        lambda c: [dataclasses.replace(c[0], total=0)],  # no chunks at all
        lambda c: [dataclasses.replace(c[0], index=c[0].total)],  # past the count
        lambda c: [c[0], dataclasses.replace(c[1], data=c[1].data + b"x"), c[2]],  # misplaced
    ],
)
def test_chunks_out_of_order_or_out_of_bounds_close_the_link(spoil: object) -> None:
    mesh = _mesh()
    chunks = _chunks(_directory(1, mesh.now))
    peer = _peer(mesh, "spoiler")
    for chunk in spoil(chunks):  # type: ignore[operator]
        if peer.up:
            peer.send([chunk])
    assert not peer.up
    assert mesh.of_type("carol", LinkClosed)
    assert _held_serial(mesh) is None


def test_chunks_beyond_the_directory_size_limit_close_the_link() -> None:
    tight = OrgLimits(chunk_bytes=1_000, max_directory_bytes=1_500)
    for total, why in ((2, "too large"), (3, "more chunks than the size limit allows")):
        mesh = AttackMesh(["carol"], config=NodeConfig(org=tight))
        mesh.nodes["carol"].join_org(ORG.public, now=mesh.now)
        mesh.run()
        peer = _peer(mesh, "big")
        for index in range(total):
            if peer.up:
                peer.send([DirectoryChunk(org_id=ORG.public.org_id, serial=1, index=index,
                                          total=total, data=bytes(1_000))])  # fmt: skip
        assert not peer.up, why
        assert _held_serial(mesh) is None
