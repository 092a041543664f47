"""Group operations and the stored group graph are parsed strictly: every field that does not
fit its kind is refused with the reason (signed correctly, so only the rule can refuse it), and
a stored graph that is damaged, over the limits or not a graph is a KeystoreError."""

from __future__ import annotations

import dataclasses

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmsg.config import GroupLimits
from meshmsg.core.groups.group import Group
from meshmsg.core.groups.ops import (
    MAX_OP_BYTES,
    OP_VERSION,
    SIGN_CONTEXT,
    GroupOpBody,
    OpKind,
    SignedGroupOp,
    parse_op,
)
from meshmsg.core.wire import encode_record, encode_records
from meshmsg.errors import InvalidMessage, KeystoreError
from tests.core.group_fixtures import LIMITS, create, people, replicas

WHO = people("alice", "bob")
ALICE, BOB = WHO["alice"], WHO["bob"]
AUTHOR = bytes(nacl.signing.SigningKey(ALICE.signing_seed).verify_key)
DEP = b"\x01" * 32


def _signed(**changes: object) -> bytes:
    """An ADD by alice of bob, with ``changes``, correctly signed."""
    body = GroupOpBody(
        version=OP_VERSION, group=b"g" * 32, kind=int(OpKind.ADD), author=AUTHOR, deps=(DEP,),
        target=BOB.public.to_bytes(), name=None, at=0,
    )  # fmt: skip
    body_bytes = encode_record(dataclasses.replace(body, **changes))  # type: ignore[arg-type]
    signature = nacl.signing.SigningKey(ALICE.signing_seed).sign(SIGN_CONTEXT + body_bytes)
    return encode_record(SignedGroupOp(body=body_bytes, signature=signature.signature))


def test_a_well_formed_operation_parses() -> None:
    op = parse_op(_signed(), LIMITS)
    assert (op.kind, op.author, op.target_key) == (OpKind.ADD, AUTHOR, BOB.public.identity_key)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"version": OP_VERSION + 1}, "version 2 unknown"),
        ({"kind": 99}, "unknown group operation kind 99"),
        ({"deps": (b"\x02" * 32, DEP)}, "not strictly sorted"),
        ({"deps": (DEP, DEP)}, "not strictly sorted"),
        ({"deps": ()}, "only a CREATE, and every CREATE, has no dependencies"),
        ({"target": None}, "ADD needs a public identity"),
        ({"target": BOB.public.identity_key}, "ADD needs a public identity"),
        ({"target": b"\x09" + BOB.public.to_bytes()[1:]}, "^ADD: "),
        ({"kind": int(OpKind.CREATE), "deps": (), "name": "x"}, "CREATE names its author"),
        ({"kind": int(OpKind.REMOVE)}, "REMOVE needs an identity key"),
        ({"kind": int(OpKind.PROMOTE), "target": AUTHOR}, "PROMOTE of oneself"),
        ({"kind": int(OpKind.LEAVE)}, "LEAVE has no target"),
        ({"kind": int(OpKind.RENAME), "target": None}, "RENAME: a name missing"),
        ({"kind": int(OpKind.LEAVE), "target": None, "name": "x"}, "LEAVE: a name not allowed"),
        ({"kind": int(OpKind.RENAME), "target": None, "name": "   "}, "name empty or too long"),
        ({"kind": int(OpKind.RENAME), "target": None, "name": "n" * 65}, "empty or too long"),
    ],
)
def test_fields_that_do_not_fit_the_kind_are_refused(
    changes: dict[str, object], reason: str
) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        parse_op(_signed(**changes), LIMITS)


def test_too_many_dependencies_a_bad_signature_and_framing_are_refused() -> None:
    few = dataclasses.replace(LIMITS, max_deps=1)
    with pytest.raises(InvalidMessage, match="over 1 dependencies"):
        parse_op(_signed(deps=(DEP, b"\x02" * 32)), few)
    data = bytearray(_signed())
    data[-1] ^= 1  # inside the signature
    with pytest.raises(InvalidMessage, match="bad signature"):
        parse_op(bytes(data), LIMITS)
    with pytest.raises(InvalidMessage, match="too large"):
        parse_op(bytes(MAX_OP_BYTES + 1), LIMITS)
    with pytest.raises(InvalidMessage, match="exactly one record"):
        parse_op(_signed() + _signed(), LIMITS)
    body = SignedGroupOp(body=b"\x00", signature=bytes(64))
    with pytest.raises(InvalidMessage, match="malformed group operation"):
        parse_op(encode_records([body])[:-1], LIMITS)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_are_never_an_operation(data: bytes) -> None:
    with pytest.raises(InvalidMessage):
        parse_op(data, LIMITS)


# --- The stored graph (Group.to_bytes / from_bytes) -----------------------------------------


def _graph() -> Group:
    [alice] = replicas(create(ALICE), ALICE)
    alice.do(OpKind.ADD, BOB)
    alice.do(OpKind.RENAME, name="renamed")
    return alice.group


def test_a_stored_graph_round_trips() -> None:
    group = _graph()
    back = Group.from_bytes(group.to_bytes(), LIMITS)
    assert back.to_bytes() == group.to_bytes()
    assert back.state.name == "renamed"
    assert set(back.state.members) == {ALICE.public.identity_key, BOB.public.identity_key}


def test_a_damaged_stored_graph_is_a_keystore_error() -> None:
    data = _graph().to_bytes()
    cases = {
        "magic": b"XXXX" + data[4:],
        "truncated": data[:-1],
        "count cut": data[:6],
        "trailing": data + b"\x00",
        "no operations": data[:5] + b"\x00\x00\x00\x00",
        "an operation broken": data[:-1] + bytes([data[-1] ^ 1]),
    }
    for damaged in cases.values():
        with pytest.raises(KeystoreError, match="group state"):
            Group.from_bytes(damaged, LIMITS)
    tight = dataclasses.replace(LIMITS, max_ops=2)
    with pytest.raises(KeystoreError, match="more operations than the limits allow"):
        Group.from_bytes(data, tight)


def test_a_stored_graph_whose_operations_do_not_connect_is_refused() -> None:
    group = _graph()
    ops = list(group.ops.values())
    other = _graph_of_another_group()
    stray = next(o for o in other.ops.values() if o.kind is not OpKind.CREATE)
    parts = [ops[0].data, stray.data]
    data = group.to_bytes()[:5] + _u16(len(parts))  # magic and version as stored
    data += b"".join(_u16(len(p)) + p for p in parts) + _u16(0)
    with pytest.raises(KeystoreError, match="do not form the stored graph"):
        Group.from_bytes(data, LIMITS)


def _graph_of_another_group() -> Group:
    [bob] = replicas(create(BOB, name="other"), BOB)
    bob.do(OpKind.ADD, ALICE)
    return bob.group


def _u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def test_a_group_starts_only_from_its_create() -> None:
    group = _graph()
    add = next(o for o in group.ops.values() if o.kind is OpKind.ADD)
    with pytest.raises(InvalidMessage, match="starts from its CREATE"):
        Group(add, GroupLimits())
