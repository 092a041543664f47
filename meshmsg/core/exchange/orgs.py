"""Organisation directories between nodes (issue #12, docs/protocol/identity.md §8).

At a meeting each side sends ``DirectoryHave`` (every organisation it joined, with the serial
of the directory it holds, 0 for none). For each organisation both joined, the side holding
the newer directory sends it as ``DirectoryChunk`` records, in order. The receiver assembles
at most one directory per link, bounded by ``max_directory_bytes``, and verifies it whole
(:meth:`~meshmsg.core.org.directory.OrgBook.accept`): a forged or malformed one closes that
link; one that is not newer (it crossed a fresher copy) is ignored. A directory taken later is
pushed at once to every linked peer that said it holds an older one, so a revocation reaches
every linked node in one exchange. Only nodes that joined an organisation carry its directory.
"""

from __future__ import annotations

from meshmsg.core.events import DirectoryUpdated
from meshmsg.core.org.directory import Directory
from meshmsg.core.org.orgcodec import org_record
from meshmsg.core.outbox import Outbox
from meshmsg.core.records import DirectoryChunk, DirectoryHave, DirectoryVersion
from meshmsg.core.session import PeerSession
from meshmsg.core.state import NodeState
from meshmsg.errors import DecodeError, DirectoryError


class OrgSync:
    """Sends, receives, verifies and passes on organisation directories."""

    __slots__ = ("_out", "_state")

    def __init__(self, state: NodeState, out: Outbox) -> None:
        self._state = state
        self._out = out

    def greet(self, session: PeerSession) -> None:
        """At a meeting: what we hold of every organisation we joined."""
        orgs = self._state.orgs
        if not len(orgs):
            return
        versions = [
            DirectoryVersion(org_id=j.org.org_id, serial=j.directory.serial if j.directory else 0)
            for j in orgs
        ]
        self._out.transmit(session, [DirectoryHave(orgs=tuple(versions))])

    def accept(self, org_id: bytes, data: bytes, *, source: bytes | None) -> Directory:
        """Verify, keep, persist, report and pass on a newer directory. Raises DirectoryError."""
        state = self._state
        directory = state.orgs.accept(org_id, data)
        self._out.persist([org_record(state.orgs, org_id)])
        self._out.emit(
            DirectoryUpdated(
                org_id=org_id, serial=directory.serial, members=len(directory.entries),
                revoked=len(directory.revocations),
            )
        )  # fmt: skip
        for session in list(state.sessions.values()):
            held = session.peer_directories.get(org_id)
            if session.peer_id != source and held is not None and held < directory.serial:
                self._send(session, org_id)
        return directory

    def on_have(self, session: PeerSession, record: DirectoryHave) -> None:
        session.peer_directories = {v.org_id: v.serial for v in record.orgs}
        for version in record.orgs:
            joined = self._state.orgs.get(version.org_id)
            ours = joined.directory if joined is not None else None
            if ours is not None and ours.serial > version.serial:
                self._send(session, version.org_id)

    def _send(self, session: PeerSession, org_id: bytes) -> None:
        joined = self._state.orgs.get(org_id)
        if joined is None or joined.directory is None:
            return
        data, size = joined.directory.data, self._state.config.org.chunk_bytes
        total = -(-len(data) // size)
        session.peer_directories[org_id] = joined.directory.serial
        for i in range(total):
            chunk = DirectoryChunk(
                org_id=org_id, serial=joined.directory.serial, index=i, total=total,
                data=data[i * size : (i + 1) * size],
            )  # fmt: skip
            self._out.transmit(session, [chunk])

    def on_chunk(self, session: PeerSession, chunk: DirectoryChunk) -> None:
        """Assemble a directory from the peer. Raises DecodeError (closes the link) if bad."""
        limits = self._state.config.org
        joined = self._state.orgs.get(chunk.org_id)
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
        try:
            self.accept(chunk.org_id, bytes(buffer), source=session.peer_id)
        except DirectoryError as exc:
            raise DecodeError(f"bad directory from peer: {exc}") from exc
