"""The signed organisation directory: versioned, bounded, verified on arrival; and the book of
organisations a node joined.

Theory of operation
-------------------
A directory is the organisation's whole list at one moment, signed as one document::

    magic "MMDR" ‖ 1 ‖ org key (32) ‖ u64 serial ‖ u64 issued_at
    ‖ u16 n ‖ n × (u16 length ‖ signed entry) ‖ u16 m ‖ m × revocation (105)
    ‖ Ed25519(org, "meshmsg org directory v1" ‖ org key ‖ everything above)

Every entry and revocation carries its own signature as well, so one can be shown alone. A
node accepts a directory only for an organisation it joined, only with a serial above the one
it holds (a replayed older directory is refused, so a revocation cannot be undone by replaying
the list from before it), and only if every signature verifies and every member appears once.
Counts and the total size are bounded by :class:`~meshmsg.config.OrgLimits`.

Status of a peer (:meth:`OrgBook.status`): *member* (listed, not expired, not revoked),
*revoked* (its identity key is on a revocation list of an organisation we joined: mail from
it is flagged), *expired*, or nothing. The UI shows "verified by <organisation>" apart from
"verified in person"; a revoked member loses the mark everywhere at once, because the mark is
computed from the current directory, never stored beside the contact.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from meshmsg.config import OrgLimits
from meshmsg.core.org.keys import (
    REVOCATION_BYTES,
    SIGNATURE_BYTES,
    OrgPublic,
    OrgSecret,
    Revocation,
    SignedEntry,
    _Cursor,
    _sign,
    _verify,
)
from meshmsg.errors import DirectoryError

MAGIC: Final = b"MMDR"
DIRECTORY_CONTEXT: Final = b"meshmsg org directory v1"
_VERSION: Final = 1
_HEAD: Final = struct.Struct(">4sB32sQQ")
_U16: Final = struct.Struct(">H")


@dataclass(frozen=True, slots=True, kw_only=True)
class Directory:
    data: bytes
    org_key: bytes
    serial: int
    issued_at: int
    entries: tuple[SignedEntry, ...]
    revocations: tuple[Revocation, ...]
    by_peer: dict[bytes, SignedEntry] = field(compare=False, repr=False)
    revoked: dict[bytes, Revocation] = field(compare=False, repr=False)

    @classmethod
    def parse(cls, data: bytes, org_key: bytes, limits: OrgLimits) -> Directory:
        """Parse and verify a directory of ``org_key``. Raises DirectoryError, one line."""
        if len(data) > limits.max_directory_bytes:
            raise DirectoryError(f"directory larger than {limits.max_directory_bytes} bytes")
        if len(data) < _HEAD.size + 4 + SIGNATURE_BYTES:
            raise DirectoryError("directory: truncated")
        body, signature = data[:-SIGNATURE_BYTES], data[-SIGNATURE_BYTES:]
        magic, version, key, serial, issued_at = _HEAD.unpack_from(body)
        if magic != MAGIC or version != _VERSION:
            raise DirectoryError("not a meshmsg directory (or an unsupported version)")
        if key != org_key:
            raise DirectoryError("directory of another organisation")
        _verify(org_key, DIRECTORY_CONTEXT, body, signature, "directory")
        cursor = _Cursor(body, "directory")
        cursor.take(_HEAD.size)
        count = _U16.unpack(cursor.take(2))[0]
        if count > limits.max_directory_entries:
            raise DirectoryError(f"directory: more than {limits.max_directory_entries} entries")
        entries = tuple(
            SignedEntry.parse(cursor.take(_U16.unpack(cursor.take(2))[0]), org_key)
            for _ in range(count)
        )
        count = _U16.unpack(cursor.take(2))[0]
        if count > limits.max_revocations:
            raise DirectoryError(f"directory: more than {limits.max_revocations} revocations")
        revocations = tuple(
            Revocation.parse(cursor.take(REVOCATION_BYTES), org_key) for _ in range(count)
        )
        cursor.end()
        by_peer = {e.peer_id: e for e in entries}
        revoked = {r.peer_id: r for r in revocations}
        if len(by_peer) != len(entries) or len(revoked) != len(revocations):
            raise DirectoryError("directory: a member is listed twice")
        return cls(
            data=bytes(data), org_key=org_key, serial=serial, issued_at=issued_at,
            entries=entries, revocations=revocations, by_peer=by_peer, revoked=revoked,
        )  # fmt: skip


def build_directory(
    secret: OrgSecret,
    *,
    serial: int,
    issued_at: int,
    entries: list[SignedEntry],
    revocations: list[Revocation],
    limits: OrgLimits,
) -> Directory:
    """Sign a directory (administrator side). Revoked members are left out of the entries."""
    gone = {r.peer_id for r in revocations}
    kept = [e for e in entries if e.peer_id not in gone]
    key = secret.public.key
    out = bytearray(_HEAD.pack(MAGIC, _VERSION, key, serial, issued_at))
    out += _U16.pack(len(kept))
    for entry in kept:
        out += _U16.pack(len(entry.data)) + entry.data
    out += _U16.pack(len(revocations)) + b"".join(r.data for r in revocations)
    body = bytes(out)
    return Directory.parse(body + _sign(secret.seed, DIRECTORY_CONTEXT, key, body), key, limits)


class OrgStatus(enum.Enum):
    MEMBER = "member"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class Membership:
    org: OrgPublic
    status: OrgStatus
    entry: SignedEntry | None


@dataclass(slots=True, kw_only=True)
class JoinedOrg:
    org: OrgPublic
    directory: Directory | None = None


class OrgBook:
    """Organisations this node joined and the newest directory of each."""

    def __init__(self, limits: OrgLimits) -> None:
        self.limits = limits
        self._orgs: dict[bytes, JoinedOrg] = {}

    def __iter__(self) -> Iterator[JoinedOrg]:
        return iter(list(self._orgs.values()))

    def __len__(self) -> int:
        return len(self._orgs)

    def get(self, org_id: bytes) -> JoinedOrg | None:
        return self._orgs.get(org_id)

    def join(self, org: OrgPublic) -> JoinedOrg:
        joined = self._orgs.get(org.org_id)
        if joined is not None:
            return joined
        if len(self._orgs) >= self.limits.max_orgs:
            raise DirectoryError(f"already in {self.limits.max_orgs} organisations")
        joined = self._orgs[org.org_id] = JoinedOrg(org=org)
        return joined

    def leave(self, org_id: bytes) -> bool:
        return self._orgs.pop(org_id, None) is not None

    def accept(self, org_id: bytes, data: bytes) -> Directory:
        """Verify and take a directory that is newer than ours.

        Raises:
            DirectoryError: unknown organisation, forged, malformed, or not newer (replay).
        """
        joined = self._orgs.get(org_id)
        if joined is None:
            raise DirectoryError("directory of an organisation we did not join")
        directory = Directory.parse(data, joined.org.key, self.limits)
        held = joined.directory
        if held is not None and directory.serial <= held.serial:
            raise DirectoryError(
                f"directory version {directory.serial} is not newer than ours ({held.serial})"
            )
        joined.directory = directory
        return directory

    def status(self, peer_id: bytes, now: float) -> list[Membership]:
        """What every joined organisation says of this peer (empty: none knows it)."""
        out: list[Membership] = []
        for joined in self._orgs.values():
            directory = joined.directory
            if directory is None:
                continue
            if peer_id in directory.revoked:
                out.append(Membership(org=joined.org, status=OrgStatus.REVOKED, entry=None))
                continue
            entry = directory.by_peer.get(peer_id)
            if entry is None:
                continue
            status = OrgStatus.MEMBER if entry.expires_at > now else OrgStatus.EXPIRED
            out.append(Membership(org=joined.org, status=status, entry=entry))
        return out

    def revoked(self, peer_id: bytes) -> bool:
        return any(
            j.directory is not None and peer_id in j.directory.revoked for j in self._orgs.values()
        )

    def search(
        self, text: str, now: float, *, limit: int = 50
    ) -> list[tuple[OrgPublic, SignedEntry]]:
        """Members whose name, unit or role contains ``text`` (case-insensitive), not expired."""
        needle = text.casefold().strip()
        found: list[tuple[OrgPublic, SignedEntry]] = []
        for joined in self._orgs.values():
            if joined.directory is None:
                continue
            for entry in joined.directory.entries:
                hay = f"{entry.name}\n{entry.unit}\n{entry.role}".casefold()
                if needle in hay and entry.expires_at > now:
                    found.append((joined.org, entry))
                    if len(found) >= limit:
                        return found
        return found
