"""Convergence: every member that has seen the same operations has the same group state.

Random members act concurrently (add, remove, promote, demote, leave, rename) on their own
replicas, learn from each other partially and in random order; then the operations are fed to
fresh replicas in several random orders, one by one and in random batches.
"""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshmsg.core.groups.group import Group
from meshmsg.core.groups.ops import GroupOp, OpKind
from meshmsg.errors import GroupError
from tests.core.group_fixtures import LIMITS, create, people, replicas

NAMES = ("alice", "bob", "carol", "dave", "erin", "frank")
PEOPLE = people(*NAMES, seed=11)
ROOT = create(PEOPLE["alice"])
KINDS = [OpKind.ADD, OpKind.REMOVE, OpKind.PROMOTE, OpKind.DEMOTE, OpKind.LEAVE, OpKind.RENAME]

action = st.one_of(
    st.tuples(st.just("act"), st.integers(0, 5), st.sampled_from(KINDS), st.integers(0, 5)),
    st.tuples(st.just("sync"), st.integers(0, 5), st.integers(0, 5), st.integers(0, 2**16)),
)


def _act(reps: list, i: int, kind: OpKind, j: int, step: int) -> None:
    rep, target = reps[i], PEOPLE[NAMES[j]]
    try:
        if kind is OpKind.LEAVE:
            rep.do(kind)
        elif kind is OpKind.RENAME:
            rep.do(kind, name=f"name{step}")
        elif target is not rep.who:
            rep.do(kind, target)
    except GroupError:
        pass  # the rules refuse it locally: nothing was signed


def _feed(ops: list[GroupOp], order: list[int], batch: int) -> Group:
    group = Group(ROOT, LIMITS)
    shuffled = [ops[k] for k in order]
    for start in range(0, len(shuffled), batch):
        group.receive(shuffled[start : start + batch])
    return group


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(action, min_size=1, max_size=40), st.data())
def test_same_operations_give_the_same_state(actions: list, data: st.DataObject) -> None:
    reps = replicas(ROOT, *(PEOPLE[n] for n in NAMES))
    # a head start: alice adds everyone and promotes two, and everyone learns it
    for n in NAMES[1:]:
        reps[0].do(OpKind.ADD, PEOPLE[n])
    reps[0].do(OpKind.PROMOTE, PEOPLE["bob"])
    reps[0].do(OpKind.PROMOTE, PEOPLE["carol"])
    for r in reps[1:]:
        r.learn(reps[0])
    for step, (what, i, x, y) in enumerate(actions):
        if what == "act":
            _act(reps, i, x, y, step)
        else:  # replica i learns a random part of what replica x has
            ops = sorted(reps[x].group.ops.values(), key=lambda o: o.id)
            part = [op for k, op in enumerate(ops) if (y >> (k % 16)) & 1]
            reps[i].group.receive(part)
    # replicas holding the same set agree
    by_set: dict[frozenset[bytes], object] = {}
    for r in reps:
        seen = frozenset(r.group.ops)
        assert by_set.setdefault(seen, r.group.state) == r.group.state
    everything = {op.id: op for r in reps for op in r.group.ops.values()}
    ops = list(everything.values())
    expected = None
    for _ in range(3):
        order = data.draw(st.permutations(range(len(ops))))
        batch = data.draw(st.integers(1, max(1, len(ops))))
        group = _feed(ops, order, batch)
        assert set(group.ops) == set(everything)
        expected = expected or group.state
        assert group.state == expected
    for r in reps:  # and after a full exchange, every replica too
        r.group.receive(ops)
        assert r.group.state == expected
    # removed members are never members; a member's concurrent actions after removal count for
    # nothing: every applied op's author was a member at some point
    assert expected is not None
    assert not (expected.removed & set(expected.members))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2_200))
def test_arbitrary_bytes_are_an_invalid_operation_never_a_crash(data: bytes) -> None:
    from meshmsg.core.groups.ops import parse_op
    from meshmsg.errors import InvalidMessage

    with contextlib.suppress(InvalidMessage):  # the only error allowed
        parse_op(data, LIMITS)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_operations_and_states_fail_cleanly(data: st.DataObject) -> None:
    from meshmsg.core.groups.ops import parse_op
    from meshmsg.errors import InvalidMessage, KeystoreError

    group = Group(ROOT, LIMITS)
    group.author(PEOPLE["alice"].signing_seed, OpKind.ADD, at_ms=1,
                 target=PEOPLE["bob"].public.to_bytes())  # fmt: skip
    for blob, parse, error in (
        (ROOT.data, lambda b: parse_op(b, LIMITS), InvalidMessage),
        (group.to_bytes(), lambda b: Group.from_bytes(b, LIMITS), KeystoreError),
    ):
        position = data.draw(st.integers(0, len(blob) - 1))
        flip = data.draw(st.integers(1, 255))
        mutated = bytearray(blob)
        mutated[position] ^= flip
        try:
            parse(bytes(mutated))
        except error:
            continue
        # a flip the codec accepts must still be a different, valid object (e.g. a timestamp)
        assert bytes(mutated) != blob
