"""Signed, hash-linked group membership operations and their strict codec.

Theory of operation
-------------------
A group's membership is the resolution (:mod:`meshmsg.core.groups.resolve`) of a set of signed
operations. Each operation names the operations its author had seen (``deps``, hash links), so
the set is a DAG rooted at the one ``CREATE``; two members holding the same set compute the same
state, whatever order the operations arrived in.

Bytes (docs/protocol/groups.md §2)::

    op      = CBOR record 0x3D [signed_body: bytes, signature: bytes(64)]
    body    = CBOR record 0x3C [version=1, group, kind, author, deps, target, name, at]
    signed  = Ed25519(author's identity key, "meshmsg group op v1" ‖ 0x00 ‖ body)
    op id   = BLAKE2b-256(op, person="meshmsg1/gopid")

The body travels as the exact bytes that were signed, so no re-encoding can change what the
signature covers, and the strict CBOR decoder (one encoding per value) makes the id of an
operation unique. ``group`` is 32 random bytes in a ``CREATE`` (so two groups never share a
root) and the id of that ``CREATE`` in every other operation: the group id.

What this module does not decide: whether the author may do what the operation says (that is
the resolution's job, which needs the rest of the graph).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, TypeVar

import nacl.exceptions
import nacl.signing

from meshmsg.config import GroupLimits, WireLimits
from meshmsg.core.identity import PUBLIC_BYTES, PublicIdentity
from meshmsg.core.wire import (
    UINT64_MAX,
    Bytes,
    ListOf,
    Optional,
    RecordRegistry,
    Text,
    UInt,
    decode_records,
    encode_record,
    record,
    wire,
)
from meshmsg.errors import DecodeError, InvalidContactCode, InvalidMessage, LocalProtocolError

OP_VERSION: Final = 1
ID_BYTES: Final = 32  # hash links: a member crafting a collision must not fork the graph
KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
# Wire bounds (the configured GroupLimits may only be tighter).
MAX_DEPS_WIRE: Final = 32
MAX_NAME_BYTES_WIRE: Final = 256
MAX_BODY_BYTES: Final = 2_048  # 32 deps x 34 B + a public identity + a name: about 1.4 kB
MAX_OP_BYTES: Final = MAX_BODY_BYTES + SIGNATURE_BYTES + 8
SIGN_CONTEXT: Final = b"meshmsg group op v1\x00"
_PERSON_OP_ID: Final = b"meshmsg1/gopid"
_WIRE_LIMITS: Final = WireLimits()
_R = TypeVar("_R")


class OpKind(IntEnum):
    CREATE = 0
    ADD = 1
    REMOVE = 2
    PROMOTE = 3
    DEMOTE = 4
    LEAVE = 5
    RENAME = 6


ADMIN_KINDS: Final = frozenset({OpKind.ADD, OpKind.REMOVE, OpKind.PROMOTE, OpKind.DEMOTE,
                                OpKind.RENAME})  # fmt: skip
"""Operations only an admin may author (CREATE is the root; LEAVE any member)."""


@record(0x3C)
@dataclass(frozen=True, slots=True, kw_only=True)
class GroupOpBody:
    """What the author signs (never sent alone: always inside a :class:`SignedGroupOp`)."""

    version: int = wire(UInt(max=0xFF))
    group: bytes = wire(Bytes.exact(ID_BYTES))
    kind: int = wire(UInt(max=0xFF))
    author: bytes = wire(Bytes.exact(KEY_BYTES))  # Ed25519 identity key
    deps: tuple[bytes, ...] = wire(ListOf(Bytes.exact(ID_BYTES), max_items=MAX_DEPS_WIRE))
    # ADD, CREATE: the member's 161-byte public identity; REMOVE, PROMOTE, DEMOTE: a 32-byte
    # identity key; LEAVE, RENAME: absent.
    target: bytes | None = wire(Optional(Bytes(min_len=KEY_BYTES, max_len=PUBLIC_BYTES)))
    name: str | None = wire(Optional(Text(max_bytes=MAX_NAME_BYTES_WIRE)))  # CREATE, RENAME
    at: int = wire(UInt(max=UINT64_MAX))  # ms, the author's clock: shown, never trusted


@record(0x3D)
@dataclass(frozen=True, slots=True, kw_only=True)
class SignedGroupOp:
    body: bytes = wire(Bytes(min_len=1, max_len=MAX_BODY_BYTES))
    signature: bytes = wire(Bytes.exact(SIGNATURE_BYTES))


_BODY_REGISTRY: Final = RecordRegistry([GroupOpBody])
_OP_REGISTRY: Final = RecordRegistry([SignedGroupOp])


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupOp:
    """A verified operation: its fields, its exact bytes and its id."""

    id: bytes
    data: bytes
    group: bytes
    kind: OpKind
    author: bytes
    deps: tuple[bytes, ...]
    target: bytes | None
    name: str | None
    at_ms: int

    @property
    def target_key(self) -> bytes | None:
        """The identity key the operation is about (ADD/CREATE: from the public identity)."""
        if self.target is None:
            return None
        return self.target[1 : 1 + KEY_BYTES] if len(self.target) == PUBLIC_BYTES else self.target

    @property
    def group_id(self) -> bytes:
        return self.id if self.kind is OpKind.CREATE else self.group


def op_id(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=ID_BYTES, person=_PERSON_OP_ID).digest()


def sign_op(
    signing_seed: bytes,
    *,
    group: bytes,
    kind: OpKind,
    deps: tuple[bytes, ...],
    target: bytes | None = None,
    name: str | None = None,
    at_ms: int,
    limits: GroupLimits,
) -> GroupOp:
    """Build, sign and (as a check of our own work) parse an operation.

    Raises:
        LocalProtocolError: the fields do not make a valid operation of this kind.
    """
    key = nacl.signing.SigningKey(signing_seed)
    body = GroupOpBody(
        version=OP_VERSION, group=group, kind=int(kind), author=bytes(key.verify_key),
        deps=tuple(sorted(set(deps))), target=target, name=name, at=at_ms,
    )  # fmt: skip
    body_bytes = encode_record(body)
    signature = key.sign(SIGN_CONTEXT + body_bytes).signature
    data = encode_record(SignedGroupOp(body=body_bytes, signature=signature))
    try:
        return parse_op(data, limits)
    except InvalidMessage as exc:
        raise LocalProtocolError(f"invalid group operation: {exc}") from exc


def parse_op(data: bytes, limits: GroupLimits) -> GroupOp:
    """Decode and verify one operation strictly.

    Raises:
        InvalidMessage: bad bytes, a field that does not fit the kind, unsorted or too many
            deps, or a bad signature. The operation is dropped; the link stays up.
    """
    if len(data) > MAX_OP_BYTES:
        raise InvalidMessage("group operation too large")
    signed = _decode_one(data, _OP_REGISTRY, SignedGroupOp)
    body = _decode_one(signed.body, _BODY_REGISTRY, GroupOpBody)
    kind = _check_body(body, limits)
    try:
        nacl.signing.VerifyKey(body.author).verify(SIGN_CONTEXT + signed.body, signed.signature)
    except nacl.exceptions.CryptoError as exc:  # bad signature or an invalid point
        raise InvalidMessage("group operation: bad signature") from exc
    return GroupOp(
        id=op_id(data), data=bytes(data), group=body.group, kind=kind, author=body.author,
        deps=body.deps, target=body.target, name=body.name, at_ms=body.at,
    )  # fmt: skip


def _decode_one(data: bytes, registry: RecordRegistry, cls: type[_R]) -> _R:
    try:
        records = decode_records(data, registry, _WIRE_LIMITS)
    except DecodeError as exc:
        raise InvalidMessage(f"malformed group operation: {exc}") from exc
    if len(records) != 1 or not isinstance(records[0], cls):
        raise InvalidMessage("a group operation is exactly one record")
    return records[0]


def _check_body(body: GroupOpBody, limits: GroupLimits) -> OpKind:
    if body.version != OP_VERSION:
        raise InvalidMessage(f"group operation version {body.version} unknown")
    try:
        kind = OpKind(body.kind)
    except ValueError as exc:
        raise InvalidMessage(f"unknown group operation kind {body.kind}") from exc
    if len(body.deps) > limits.max_deps:
        raise InvalidMessage(f"group operation names over {limits.max_deps} dependencies")
    if any(a >= b for a, b in zip(body.deps, body.deps[1:], strict=False)):
        raise InvalidMessage("group operation dependencies not strictly sorted")
    if (kind is OpKind.CREATE) != (not body.deps):
        raise InvalidMessage("only a CREATE, and every CREATE, has no dependencies")
    _check_target(kind, body)
    if body.name is not None and (
        not body.name.strip() or len(body.name.encode()) > limits.name_max_bytes
    ):
        raise InvalidMessage("group name empty or too long")
    return kind


def _check_target(kind: OpKind, body: GroupOpBody) -> None:
    target, name = body.target, body.name
    wants_public = kind in (OpKind.CREATE, OpKind.ADD)
    wants_key = kind in (OpKind.REMOVE, OpKind.PROMOTE, OpKind.DEMOTE)
    wants_name = kind in (OpKind.CREATE, OpKind.RENAME)
    if wants_public:
        if target is None or len(target) != PUBLIC_BYTES:
            raise InvalidMessage(f"{kind.name} needs a public identity")
        try:
            public = PublicIdentity.from_bytes(target)
        except InvalidContactCode as exc:
            raise InvalidMessage(f"{kind.name}: {exc}") from exc
        if kind is OpKind.CREATE and public.identity_key != body.author:
            raise InvalidMessage("CREATE names its author's own identity")
    elif wants_key:
        if target is None or len(target) != KEY_BYTES:
            raise InvalidMessage(f"{kind.name} needs an identity key")
        if target == body.author:
            raise InvalidMessage(f"{kind.name} of oneself (use LEAVE)")
    elif target is not None:
        raise InvalidMessage(f"{kind.name} has no target")
    if wants_name != (name is not None):
        raise InvalidMessage(f"{kind.name}: a name {'missing' if wants_name else 'not allowed'}")
