"""Group membership: signed operations, their codec, and the resolution rules."""

from __future__ import annotations

import dataclasses

import pytest

from meshmsg.config import GroupLimits
from meshmsg.core.groups.group import Group
from meshmsg.core.groups.ops import (
    GroupOpBody,
    OpKind,
    SignedGroupOp,
    parse_op,
    sign_op,
)
from meshmsg.core.groups.resolve import resolve
from meshmsg.core.wire import encode_record
from meshmsg.errors import GroupError, InvalidMessage, KeystoreError, LocalProtocolError
from tests.core.group_fixtures import LIMITS, Replica, create, people, replicas


def key(identity: object) -> bytes:
    return identity.public.identity_key  # type: ignore[attr-defined,no-any-return]


def test_an_operation_round_trips_and_its_id_is_stable() -> None:
    p = people("alice", "bob")
    root = create(p["alice"])
    again = parse_op(root.data, LIMITS)
    assert again == root
    assert again.group_id == root.id
    group = Group(root, LIMITS)
    add = group.author(p["alice"].signing_seed, OpKind.ADD, at_ms=5,
                       target=p["bob"].public.to_bytes())  # fmt: skip
    assert add.deps == (root.id,)
    assert parse_op(add.data, LIMITS).id == add.id
    assert add.target_key == key(p["bob"])


def test_a_flipped_bit_anywhere_is_refused() -> None:
    p = people("alice")
    data = bytearray(create(p["alice"]).data)
    for i in range(0, len(data), 7):
        data[i] ^= 0x01
        with pytest.raises(InvalidMessage):
            parse_op(bytes(data), LIMITS)
        data[i] ^= 0x01


def _signed(seed: bytes, body: GroupOpBody) -> bytes:
    import nacl.signing

    from meshmsg.core.groups.ops import SIGN_CONTEXT

    raw = encode_record(body)
    sig = nacl.signing.SigningKey(seed).sign(SIGN_CONTEXT + raw).signature
    return encode_record(SignedGroupOp(body=raw, signature=sig))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"version": 2}, "version"),
        ({"kind": 9}, "kind"),
        ({"deps": (b"\x02" * 32, b"\x01" * 32)}, "sorted"),
        ({"deps": ()}, "dependencies"),
        ({"target": None}, "identity key"),
        ({"name": "x"}, "name"),
        ({"deps": tuple(bytes([i]) * 32 for i in range(17))}, "16 dependencies"),
    ],
)
def test_malformed_bodies_are_refused(change: dict[str, object], match: str) -> None:
    p = people("alice", "bob")
    body = GroupOpBody(
        version=1, group=b"\x07" * 32, kind=int(OpKind.REMOVE), author=key(p["alice"]),
        deps=(b"\x01" * 32,), target=key(p["bob"]), name=None, at=0,
    )  # fmt: skip
    assert parse_op(_signed(p["alice"].signing_seed, body), LIMITS).kind is OpKind.REMOVE
    bad = dataclasses.replace(body, **change)  # type: ignore[arg-type]
    with pytest.raises(InvalidMessage, match=match):
        parse_op(_signed(p["alice"].signing_seed, bad), LIMITS)


def test_a_signature_by_another_key_is_refused() -> None:
    p = people("alice", "mallory")
    body = GroupOpBody(
        version=1, group=b"\x07" * 32, kind=int(OpKind.LEAVE), author=key(p["alice"]),
        deps=(b"\x01" * 32,), target=None, name=None, at=0,
    )  # fmt: skip
    with pytest.raises(InvalidMessage, match="signature"):
        parse_op(_signed(p["mallory"].signing_seed, body), LIMITS)


def test_only_admins_add_and_remove() -> None:
    p = people("alice", "bob", "carol")
    a, b = replicas(create(p["alice"]), p["alice"], p["bob"])
    a.do(OpKind.ADD, p["bob"])
    b.learn(a)
    assert key(p["bob"]) in b.members()
    with pytest.raises(GroupError, match="only an admin"):
        b.do(OpKind.ADD, p["carol"])
    a.do(OpKind.PROMOTE, p["bob"])
    b.learn(a)
    b.do(OpKind.ADD, p["carol"])
    assert key(p["carol"]) in b.members()


def test_an_operation_by_a_non_admin_is_dropped_on_arrival() -> None:
    p = people("alice", "bob", "carol")
    root = create(p["alice"])
    a, b = replicas(root, p["alice"], p["bob"])
    a.do(OpKind.ADD, p["bob"])
    b.learn(a)
    forged = sign_op(
        p["bob"].signing_seed, group=root.id, kind=OpKind.ADD, deps=b.group.heads,
        target=p["carol"].public.to_bytes(), at_ms=0, limits=LIMITS,
    )  # fmt: skip
    a.group.receive([forged])
    assert forged.id in a.group.state.dropped
    assert key(p["carol"]) not in a.members()


def test_remove_beats_a_concurrent_add() -> None:
    p = people("alice", "bob", "carol", "dave")
    a, b = replicas(create(p["alice"]), p["alice"], p["bob"])
    a.do(OpKind.ADD, p["bob"])
    a.do(OpKind.ADD, p["dave"])
    a.do(OpKind.PROMOTE, p["bob"])
    b.learn(a)
    a.do(OpKind.REMOVE, p["dave"])  # concurrently:
    b.do(OpKind.ADD, p["carol"])
    a.learn(b)
    b.learn(a)
    assert a.members() == b.members() == {key(p["alice"]), key(p["bob"]), key(p["carol"])}


def test_an_add_after_the_removal_brings_the_member_back() -> None:
    p = people("alice", "bob")
    (a,) = replicas(create(p["alice"]), p["alice"])
    a.do(OpKind.ADD, p["bob"])
    a.do(OpKind.REMOVE, p["bob"])
    assert key(p["bob"]) in a.group.state.removed
    a.do(OpKind.ADD, p["bob"])
    assert key(p["bob"]) in a.members()
    assert a.group.state.epoch == 1


def test_operations_of_a_member_removed_concurrently_are_dropped_everywhere() -> None:
    p = people("alice", "bob", "carol", "erin")
    a, b, c = replicas(create(p["alice"]), p["alice"], p["bob"], p["carol"])
    for who in ("bob", "carol"):
        a.do(OpKind.ADD, p[who])
    a.do(OpKind.PROMOTE, p["bob"])
    b.learn(a)
    c.learn(a)
    a.do(OpKind.REMOVE, p["bob"])  # while bob, unaware, adds erin and renames the group
    added = b.do(OpKind.ADD, p["erin"])
    renamed = b.do(OpKind.RENAME, name="bob's")
    for order in ((a, b), (b, a)):
        c.group.receive(list(order[0].group.ops.values()))
        c.group.receive(list(order[1].group.ops.values()))
    a.learn(b)
    b.learn(a)
    for r in (a, b, c):
        assert r.members() == {key(p["alice"]), key(p["carol"])}
        assert {added.id, renamed.id} <= r.group.state.dropped
        assert r.group.state.name == "cell"


def test_two_admins_who_remove_each_other_while_partitioned_end_with_the_same_membership() -> None:
    p = people("alice", "bob", "carol", "dave")
    a, b, c, d = replicas(create(p["alice"]), p["alice"], p["bob"], p["carol"], p["dave"])
    for who in ("bob", "carol", "dave"):
        a.do(OpKind.ADD, p[who])
    a.do(OpKind.PROMOTE, p["bob"])
    for r in (b, c, d):
        r.learn(a)
    # partition {alice, carol} | {bob, dave}: each admin removes the other
    a.do(OpKind.REMOVE, p["bob"])
    c.learn(a)
    b.do(OpKind.REMOVE, p["alice"])
    d.learn(b)
    assert key(p["alice"]) not in d.members()
    assert key(p["bob"]) not in c.members()
    # they meet, in every pairing and order
    d.learn(c)
    c.learn(b)
    a.learn(d)
    b.learn(a)
    states = {frozenset(r.members()) for r in (a, b, c, d)}
    assert states == {frozenset({key(p["alice"]), key(p["carol"]), key(p["dave"])})}
    assert {r.group.state.epoch_id for r in (a, b, c, d)} == {a.group.state.epoch_id}


def test_the_senior_admin_wins_whoever_created_the_later_admin() -> None:
    p = people("alice", "bob", "carol")
    a, b, c = replicas(create(p["alice"]), p["alice"], p["bob"], p["carol"])
    a.do(OpKind.ADD, p["bob"])
    a.do(OpKind.PROMOTE, p["bob"])
    a.do(OpKind.ADD, p["carol"])
    a.do(OpKind.PROMOTE, p["carol"])
    b.learn(a)
    c.learn(a)
    b.do(OpKind.REMOVE, p["carol"])  # bob was promoted first: he is senior to carol
    c.do(OpKind.REMOVE, p["bob"])
    for r in (a, b, c):
        r.learn(b)
        r.learn(c)
    assert {frozenset(r.members()) for r in (a, b, c)} == {
        frozenset({key(p["alice"]), key(p["bob"])})
    }


def test_a_removed_member_cannot_act_after_its_removal() -> None:
    p = people("alice", "bob", "carol")
    root = create(p["alice"])
    a, b = replicas(root, p["alice"], p["bob"])
    a.do(OpKind.ADD, p["bob"])
    a.do(OpKind.PROMOTE, p["bob"])
    a.do(OpKind.REMOVE, p["bob"])
    b.learn(a)
    with pytest.raises(GroupError, match="not a member"):
        b.do(OpKind.ADD, p["carol"])


def test_leave_and_demote() -> None:
    p = people("alice", "bob", "carol")
    a, b = replicas(create(p["alice"]), p["alice"], p["bob"])
    a.do(OpKind.ADD, p["bob"])
    a.do(OpKind.ADD, p["carol"])
    a.do(OpKind.PROMOTE, p["bob"])
    a.do(OpKind.DEMOTE, p["bob"])
    b.learn(a)
    assert b.group.state.admins == {key(p["alice"])}
    b.do(OpKind.LEAVE)
    a.learn(b)
    assert a.members() == {key(p["alice"]), key(p["carol"])}
    assert a.group.state.epoch == 1


def test_member_limit_is_a_clear_error_and_a_rule() -> None:
    limits = GroupLimits(max_members=3)
    p = people("alice", "bob", "carol", "dave")
    root = create(p["alice"], limits=limits)
    a, b = replicas(root, p["alice"], p["bob"], limits=limits)
    a.do(OpKind.ADD, p["bob"])
    a.do(OpKind.PROMOTE, p["bob"])
    b.learn(a)
    a.do(OpKind.ADD, p["carol"])
    with pytest.raises(GroupError, match="at most 3 members"):
        a.do(OpKind.ADD, p["dave"])
    b.do(OpKind.ADD, p["dave"])  # concurrently: one of the two adds does not fit
    a.learn(b)
    b.learn(a)
    assert a.members() == b.members()
    assert len(a.members()) == 3


def test_operation_limit_is_a_clear_error() -> None:
    limits = GroupLimits(max_ops=3)
    p = people("alice", "bob")
    (a,) = replicas(create(p["alice"], limits=limits), p["alice"], limits=limits)
    a.do(OpKind.ADD, p["bob"])
    a.do(OpKind.RENAME, name="two")
    with pytest.raises(GroupError, match="limit of 3 membership operations"):
        a.do(OpKind.RENAME, name="three")


def test_pending_operations_wait_for_their_dependencies_and_are_bounded() -> None:
    p = people("alice", "bob", "carol")
    root = create(p["alice"])
    a, b = replicas(root, p["alice"], p["bob"])
    first = a.do(OpKind.ADD, p["bob"])
    second = a.do(OpKind.ADD, p["carol"])
    result = b.group.receive([second])
    assert result.pending == 1
    assert not result.accepted
    result = b.group.receive([first])
    assert [op.id for op in result.accepted] == [first.id, second.id]
    small = Group(root, GroupLimits(max_pending_ops=0))
    assert small.receive([second]).refused == 1


def test_state_persists_strictly() -> None:
    p = people("alice", "bob", "carol")
    (a,) = replicas(create(p["alice"]), p["alice"])
    a.do(OpKind.ADD, p["bob"])
    a.do(OpKind.ADD, p["carol"])
    a.do(OpKind.REMOVE, p["bob"])
    data = a.group.to_bytes()
    again = Group.from_bytes(data, LIMITS)
    assert again.state == a.group.state
    assert again.heads == a.group.heads
    for bad in (data[:-1], data + b"\x00", b"XXXX" + data[4:]):
        with pytest.raises(KeystoreError):
            Group.from_bytes(bad, LIMITS)


def test_missing_for_lists_what_a_member_lacks() -> None:
    p = people("alice", "bob", "carol")
    a, b = replicas(create(p["alice"]), p["alice"], p["bob"])
    a.do(OpKind.ADD, p["bob"])
    b.learn(a)
    later = a.do(OpKind.ADD, p["carol"])
    assert [op.id for op in a.group.missing_for(b.group.heads)] == [later.id]
    assert not b.group.knows_all(a.group.heads)


def test_sign_op_refuses_what_it_cannot_parse() -> None:
    p = people("alice")
    with pytest.raises(LocalProtocolError):
        sign_op(p["alice"].signing_seed, group=b"\x00" * 32, kind=OpKind.LEAVE, deps=(),
                at_ms=0, limits=LIMITS)  # fmt: skip


def test_resolution_is_fast_enough_at_the_operation_limit() -> None:
    import time

    p = people(*[f"m{i}" for i in range(101)])
    names = list(p)
    (a,) = replicas(create(p[names[0]]), p[names[0]])
    for n in names[1:]:
        a.do(OpKind.ADD, p[n])
    for n in names[1:51]:
        a.do(OpKind.PROMOTE, p[n])
    started = time.perf_counter()
    state = resolve(a.group.ops, max_members=LIMITS.max_members)
    assert len(state.members) == 101
    assert time.perf_counter() - started < 2.0


def test_replica_helper_records_what_it_authored() -> None:
    p = people("alice", "bob")
    (a,) = replicas(create(p["alice"]), p["alice"])
    op = a.do(OpKind.ADD, p["bob"])
    assert a.log == [op]
    assert isinstance(a, Replica)
