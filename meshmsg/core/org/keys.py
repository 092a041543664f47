"""The organisation key, its code, and what it signs: member entries and revocations.

Theory of operation
-------------------
An administrator holds an Ed25519 *organisation key* offline. Its public half travels as an
*organisation code* (``MMORG1:`` + Crockford base32, like a contact code) that members import to
join. The key signs two things, each a fixed binary layout under its own context string (so no
signature of one kind verifies as another, nor as a meshmsg device certificate)::

    entry       = 1 ‖ member public identity (161) ‖ u64 expires_at ‖ name ‖ unit ‖ role
    revocation  = 1 ‖ member identity key (32) ‖ u64 revoked_at
    signature   = Ed25519(org, context ‖ org key ‖ body)

with ``name``/``unit``/``role`` each a length byte and UTF-8 (name 1-64 bytes, unit and role
0-64, no control or bidirectional characters: the same rule as contact names). The org key is
inside the signed message, so an entry signed by another organisation never verifies under
ours. The member's own device certificate is checked too: an entry only vouches for keys the
member's identity key signed.

Byte layout and trust model: ``docs/protocol/identity.md`` §8.
"""

from __future__ import annotations

import hashlib
import struct
import unicodedata
from dataclasses import dataclass
from typing import Final

import nacl.exceptions
import nacl.signing

from meshmsg.core.identity import (
    PUBLIC_BYTES,
    PublicIdentity,
    b32decode,
    b32encode,
    peer_id_of,
)
from meshmsg.core.rng import Rng
from meshmsg.errors import DirectoryError, InvalidContactCode

ORG_PREFIX: Final = "MMORG1:"
ENTRY_PREFIX: Final = "MMENT1:"
KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
FIELD_MAX_BYTES: Final = 64  # name, unit, role: labels, not profiles (part of the format)
ENTRY_CONTEXT: Final = b"meshmsg org entry v1"
REVOCATION_CONTEXT: Final = b"meshmsg org revocation v1"
_VERSION: Final = 1
_CHECKSUM_BYTES: Final = 5
_CHECKSUM_PERSON: Final = b"meshmsg/org-chk"
_U64: Final = struct.Struct(">Q")
_BIDI: Final = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
REVOCATION_BYTES: Final = 1 + KEY_BYTES + 8 + SIGNATURE_BYTES


def check_label(text: str, what: str, *, required: bool = False) -> bytes:
    """UTF-8 of a name, unit or role, or DirectoryError if it could not be shown safely."""
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DirectoryError(f"{what} is not valid Unicode") from exc
    if required and not encoded:
        raise DirectoryError(f"{what} is empty")
    if len(encoded) > FIELD_MAX_BYTES:
        raise DirectoryError(f"{what} is longer than {FIELD_MAX_BYTES} bytes")
    for char in text:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI:
            raise DirectoryError(f"{what} contains control character U+{ord(char):04X}")
    return encoded


def _sign(seed: bytes, context: bytes, org_key: bytes, body: bytes) -> bytes:
    return nacl.signing.SigningKey(seed).sign(context + org_key + body).signature


def _verify(org_key: bytes, context: bytes, body: bytes, signature: bytes, what: str) -> None:
    try:
        nacl.signing.VerifyKey(org_key).verify(context + org_key + body, signature)
    except nacl.exceptions.CryptoError as exc:  # bad signature, or a key that is no point
        raise DirectoryError(f"{what}: signature is not this organisation's") from exc


class _Cursor:
    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DirectoryError(f"{self.what}: truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u64(self) -> int:
        value: int = _U64.unpack(self.take(8))[0]
        return value

    def label(self, what: str, *, required: bool = False) -> str:
        raw = self.take(self.take(1)[0])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DirectoryError(f"{self.what}: {what} is not UTF-8") from exc
        check_label(text, f"{self.what}: {what}", required=required)
        return text

    def end(self) -> None:
        if self.pos != len(self.data):
            raise DirectoryError(f"{self.what}: trailing bytes")


# --- The organisation ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OrgPublic:
    key: bytes  # Ed25519 public key
    name: str

    @property
    def org_id(self) -> bytes:
        """16-byte id, as a peer id is for a person."""
        return peer_id_of(self.key)

    def code(self) -> str:
        name = check_label(self.name, "organisation name", required=True)
        body = bytes([_VERSION]) + self.key + bytes([len(name)]) + name
        return ORG_PREFIX + b32encode(body + _checksum(body))


def _checksum(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=_CHECKSUM_BYTES, person=_CHECKSUM_PERSON).digest()


def _decode_text(text: str, prefix: str, what: str) -> bytes:
    text = "".join(text.split()).replace("-", "").upper()
    if not text.startswith(prefix):
        raise DirectoryError(f"not a meshmsg {what}: it should start with {prefix!r}")
    try:
        data = b32decode(text[len(prefix) :])
    except InvalidContactCode as exc:
        raise DirectoryError(f"{what}: {exc}") from exc
    body, check = data[:-_CHECKSUM_BYTES], data[-_CHECKSUM_BYTES:]
    if len(data) <= _CHECKSUM_BYTES or _checksum(body) != check:
        raise DirectoryError(f"{what}: checksum mismatch (typo?)")
    return data[:-_CHECKSUM_BYTES]


def decode_org_code(text: str) -> OrgPublic:
    """Parse an organisation code. Raises DirectoryError with a one-line reason."""
    cursor = _Cursor(_decode_text(text, ORG_PREFIX, "organisation code"), "organisation code")
    if cursor.take(1)[0] != _VERSION:
        raise DirectoryError("organisation code: unsupported version")
    key = cursor.take(KEY_BYTES)
    name = cursor.label("name", required=True)
    cursor.end()
    return OrgPublic(key=key, name=name)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrgSecret:
    """The administrator's key: kept offline, used only by ``meshmsg org`` commands."""

    seed: bytes
    name: str

    @classmethod
    def generate(cls, rng: Rng, name: str) -> OrgSecret:
        check_label(name, "organisation name", required=True)
        return cls(seed=rng.randbytes(KEY_BYTES), name=name)

    @property
    def public(self) -> OrgPublic:
        key = bytes(nacl.signing.SigningKey(self.seed).verify_key)
        return OrgPublic(key=key, name=self.name)

    def sign_entry(
        self, member: PublicIdentity, *, name: str, unit: str, role: str, expires_at: int
    ) -> SignedEntry:
        member.verify()
        body = _entry_body(member, name=name, unit=unit, role=role, expires_at=expires_at)
        signature = _sign(self.seed, ENTRY_CONTEXT, self.public.key, body)
        return SignedEntry.parse(body + signature, self.public.key)

    def revoke(self, identity_key: bytes, *, revoked_at: int) -> Revocation:
        if len(identity_key) != KEY_BYTES or not 0 <= revoked_at < 1 << 64:
            raise DirectoryError("revocation: bad identity key or time")
        body = bytes([_VERSION]) + identity_key + _U64.pack(revoked_at)
        signature = _sign(self.seed, REVOCATION_CONTEXT, self.public.key, body)
        return Revocation.parse(body + signature, self.public.key)

    def to_bytes(self) -> bytes:
        name = check_label(self.name, "organisation name", required=True)
        return b"MMOK" + bytes([_VERSION]) + self.seed + bytes([len(name)]) + name

    @classmethod
    def from_bytes(cls, data: bytes) -> OrgSecret:
        cursor = _Cursor(data, "organisation key file")
        if cursor.take(4) != b"MMOK" or cursor.take(1)[0] != _VERSION:
            raise DirectoryError("not a meshmsg organisation key (or an unsupported version)")
        seed = cursor.take(KEY_BYTES)
        name = cursor.label("name", required=True)
        cursor.end()
        return cls(seed=seed, name=name)


# --- Entries and revocations ---------------------------------------------------------------


def _entry_body(
    member: PublicIdentity, *, name: str, unit: str, role: str, expires_at: int
) -> bytes:
    if not 0 <= expires_at < 1 << 64:
        raise DirectoryError("entry: expiry out of range")
    fields = [
        check_label(name, "member name", required=True),
        check_label(unit, "unit"),
        check_label(role, "role"),
    ]
    out = bytes([_VERSION]) + member.to_bytes() + _U64.pack(expires_at)
    return out + b"".join(bytes([len(f)]) + f for f in fields)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedEntry:
    """A member's contact keys with name, unit and role, as the organisation signed them."""

    data: bytes  # body ‖ signature: exactly what was signed, kept to re-encode unchanged
    member: PublicIdentity
    expires_at: int
    name: str
    unit: str
    role: str

    @property
    def peer_id(self) -> bytes:
        return self.member.peer_id

    @classmethod
    def parse(cls, data: bytes, org_key: bytes) -> SignedEntry:
        """Parse and verify against ``org_key``. Raises DirectoryError (forged, other org ...)."""
        if len(data) <= SIGNATURE_BYTES:
            raise DirectoryError("entry: truncated")
        body, signature = data[:-SIGNATURE_BYTES], data[-SIGNATURE_BYTES:]
        cursor = _Cursor(body, "entry")
        if cursor.take(1)[0] != _VERSION:
            raise DirectoryError("entry: unsupported version")
        try:
            member = PublicIdentity.from_bytes(cursor.take(PUBLIC_BYTES))
        except InvalidContactCode as exc:
            raise DirectoryError(f"entry: {exc}") from exc
        expires_at = cursor.u64()
        name = cursor.label("name", required=True)
        unit, role = cursor.label("unit"), cursor.label("role")
        cursor.end()
        _verify(org_key, ENTRY_CONTEXT, body, signature, "entry")
        return cls(
            data=bytes(data), member=member, expires_at=expires_at, name=name, unit=unit, role=role
        )

    def text(self) -> str:
        """``MMENT1:`` text form, for handing a signed entry from the admin's machine around."""
        return ENTRY_PREFIX + b32encode(self.data + _checksum(self.data))


def decode_entry_text(text: str, org_key: bytes) -> SignedEntry:
    return SignedEntry.parse(_decode_text(text, ENTRY_PREFIX, "signed entry"), org_key)


@dataclass(frozen=True, slots=True, kw_only=True)
class Revocation:
    data: bytes
    identity_key: bytes
    revoked_at: int

    @property
    def peer_id(self) -> bytes:
        return peer_id_of(self.identity_key)

    @classmethod
    def parse(cls, data: bytes, org_key: bytes) -> Revocation:
        if len(data) != REVOCATION_BYTES:
            raise DirectoryError("revocation: wrong length")
        body, signature = data[:-SIGNATURE_BYTES], data[-SIGNATURE_BYTES:]
        if body[0] != _VERSION:
            raise DirectoryError("revocation: unsupported version")
        _verify(org_key, REVOCATION_CONTEXT, body, signature, "revocation")
        revoked_at = _U64.unpack(body[33:41])[0]
        return cls(data=bytes(data), identity_key=body[1:33], revoked_at=revoked_at)
