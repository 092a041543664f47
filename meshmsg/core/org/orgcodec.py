"""Organisation directories in the node: persistence, and how they travel between nodes.

Persisted as one META record per joined organisation: ``org:`` ‖ org id → u16 length ‖ the
organisation code ‖ the newest signed directory (or nothing). Restoring re-verifies it.

At a meeting each side sends ``DirectoryHave`` (every organisation it joined, with the serial
of the directory it holds, 0 for none). For each organisation both joined, the side holding
the newer directory sends it as ``DirectoryChunk`` records, in order. The receiver assembles
at most one directory per link, bounded by ``max_directory_bytes``, and verifies it whole
(:meth:`OrgBook.accept`): a forged or malformed one closes that link; one that is not newer
(it crossed a fresher copy) is ignored. A directory taken later is pushed at once to every
linked peer that said it holds an older one, so a revocation reaches every linked node in one
exchange. Only nodes that joined an organisation carry its directory.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final

from meshmsg.core.effects import RecordKind, StoredRecord
from meshmsg.core.events import DirectoryUpdated
from meshmsg.core.org.directory import Directory, OrgBook
from meshmsg.core.org.keys import decode_org_code
from meshmsg.core.records import DirectoryChunk, DirectoryHave, DirectoryVersion
from meshmsg.core.session import PeerSession
from meshmsg.errors import DecodeError, DirectoryError, StorageError

if TYPE_CHECKING:
    from meshmsg.core.node import Node

ORG_KEY: Final = b"org:"
_U16: Final = struct.Struct(">H")


def org_record(book: OrgBook, org_id: bytes) -> StoredRecord:
    joined = book.get(org_id)
    assert joined is not None
    code = joined.org.code().encode("ascii")
    directory = joined.directory.data if joined.directory is not None else b""
    value = _U16.pack(len(code)) + code + directory
    return StoredRecord(kind=RecordKind.META, key=ORG_KEY + org_id, value=value)


def restore(node: Node, record: StoredRecord) -> bool:
    """A persisted organisation? Rebuild it (True), else leave the record to the caller."""
    if not record.key.startswith(ORG_KEY):
        return False
    value = record.value
    try:
        length = _U16.unpack(value[:2])[0]
        org = decode_org_code(value[2 : 2 + length].decode("ascii"))
        node.orgs.join(org)
        if len(value) > 2 + length:
            node.orgs.accept(org.org_id, value[2 + length :])
    except (struct.error, UnicodeDecodeError, DirectoryError) as exc:
        raise StorageError(f"persisted organisation is damaged: {exc}") from exc
    return True


def accept_directory(node: Node, org_id: bytes, data: bytes, *, source: bytes | None) -> Directory:
    """Verify, keep, persist, report and pass on a newer directory. Raises DirectoryError."""
    directory = node.orgs.accept(org_id, data)
    node.persist([org_record(node.orgs, org_id)])
    node.emit(
        DirectoryUpdated(
            org_id=org_id, serial=directory.serial, members=len(directory.entries),
            revoked=len(directory.revocations),
        )
    )  # fmt: skip
    for session in list(node.sessions.values()):
        held = session.peer_directories.get(org_id)
        if session.peer_id != source and held is not None and held < directory.serial:
            send_directory(node, session, org_id)
    return directory


def have(node: Node) -> DirectoryHave:
    versions = [
        DirectoryVersion(org_id=j.org.org_id, serial=j.directory.serial if j.directory else 0)
        for j in node.orgs
    ]
    return DirectoryHave(orgs=tuple(versions))


def on_have(node: Node, session: PeerSession, record: DirectoryHave) -> None:
    session.peer_directories = {v.org_id: v.serial for v in record.orgs}
    for version in record.orgs:
        joined = node.orgs.get(version.org_id)
        ours = joined.directory if joined is not None else None
        if ours is not None and ours.serial > version.serial:
            send_directory(node, session, version.org_id)


def send_directory(node: Node, session: PeerSession, org_id: bytes) -> None:
    joined = node.orgs.get(org_id)
    if joined is None or joined.directory is None:
        return
    data, size = joined.directory.data, node.config.org.chunk_bytes
    total = -(-len(data) // size)
    chunks = [
        DirectoryChunk(
            org_id=org_id, serial=joined.directory.serial, index=i, total=total,
            data=data[i * size : (i + 1) * size],
        )
        for i in range(total)
    ]  # fmt: skip
    session.peer_directories[org_id] = joined.directory.serial
    for chunk in chunks:
        node.transmit(session, [chunk])


def on_chunk(node: Node, session: PeerSession, chunk: DirectoryChunk) -> None:
    """Assemble a directory from the peer. Raises DecodeError (closes the link) if bad."""
    limits = node.config.org
    joined = node.orgs.get(chunk.org_id)
    held = joined.directory.serial if joined is not None and joined.directory else 0
    if joined is None or chunk.serial <= held:
        return  # not ours to keep, or not newer: skip (it may have crossed a fresher copy)
    most = -(-limits.max_directory_bytes // limits.chunk_bytes)
    if not 1 <= chunk.total <= most or chunk.index >= chunk.total:
        raise DecodeError("directory chunk count out of range")
    rx = session.directory_rx
    if chunk.index == 0:
        rx = (chunk.org_id, chunk.serial, chunk.total, bytearray())
    elif rx is None or rx[:3] != (chunk.org_id, chunk.serial, chunk.total):
        raise DecodeError("directory chunk out of order")
    buffer = rx[3]
    in_place = chunk.index * limits.chunk_bytes == len(buffer)
    if not in_place or len(buffer) + len(chunk.data) > limits.max_directory_bytes:
        raise DecodeError("directory chunk out of order or too large")
    buffer += chunk.data
    session.directory_rx = rx
    if chunk.index + 1 < chunk.total:
        return
    session.directory_rx = None
    session.peer_directories[chunk.org_id] = chunk.serial
    current = node.orgs.get(chunk.org_id)
    if current is None or (current.directory and current.directory.serial >= chunk.serial):
        return  # left the organisation, or a fresher copy arrived meanwhile (another link)
    try:
        accept_directory(node, chunk.org_id, bytes(buffer), source=session.peer_id)
    except DirectoryError as exc:
        raise DecodeError(f"bad directory from peer: {exc}") from exc
