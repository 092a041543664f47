"""From a set of operations to a membership: deterministic, whatever the arrival order.

Theory of operation
-------------------
``resolve(ops)`` is a pure function of the *set* of operations (every dependency present), so
two members that hold the same set compute the same state. It walks the operations in the
*canonical order* (a topological order: by depth in the graph, then revocations first, then by
id) and applies each one that is valid, with these rules (docs/protocol/groups.md §3):

1. **Authority.** The author must be a member at that point of the walk; ADD, REMOVE, PROMOTE,
   DEMOTE and RENAME need an admin. LEAVE is any member's.
2. **Cut off concurrently.** A *revocation* of x (REMOVE x or LEAVE by x revokes membership;
   REMOVE and DEMOTE revoke admin rights) cuts off every operation of x that needed that right
   and is *concurrent* with it (neither is in the other's past): such operations are dropped
   everywhere, also when the walk met them before the revocation (the walk then restarts with
   them marked defeated).
3. **Remove beats add.** An ADD (PROMOTE) of x concurrent with a revocation of x's membership
   (admin rights) is dropped; the revocation wins in either order.
4. **Mutual removal.** When two admins revoke each other concurrently, both would be cut off
   by rule 2; the *senior* admin's revocation wins: the one whose admin grant (the CREATE, or
   the PROMOTE that made them admin) comes first in the canonical order. The creator is the most
   senior. The junior's revocation is defeated and the senior stays.
6. **Full.** An ADD that would take the group over ``groups.max_members`` is dropped.
7. A defeated operation whose reason was itself defeated later in the same resolution is
   restored and the walk repeats (bounded: after ``2·n`` rounds the last round stands, which
   is still the same on every member).

The *epoch* of a state is the number of effective revocations of membership (REMOVE, LEAVE),
and its *epoch id* a hash of their ids: every member that resolved the same removals names the
same epoch, and a removal anyone learns of changes it (sender keys rotate on that).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from meshmsg.core.groups.ops import ADMIN_KINDS, GroupOp, OpKind

_PERSON_EPOCH: Final = b"meshmsg1/gepoch"
_REVOKES_MEMBER: Final = frozenset({OpKind.REMOVE, OpKind.LEAVE})
_REVOKES_ADMIN: Final = frozenset({OpKind.REMOVE, OpKind.LEAVE, OpKind.DEMOTE})
_PRIORITY: Final = {OpKind.CREATE: 0, OpKind.REMOVE: 1, OpKind.LEAVE: 2, OpKind.DEMOTE: 3,
                    OpKind.RENAME: 4, OpKind.PROMOTE: 5, OpKind.ADD: 6}  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    public: bytes  # the 161-byte public identity from the ADD (or CREATE)
    admin: bool
    added_by: bytes  # op id


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupState:
    group_id: bytes
    name: str
    members: Mapping[bytes, Member]  # identity key -> member
    epoch: int
    epoch_id: bytes
    applied: frozenset[bytes]  # ids of the operations that took effect
    dropped: frozenset[bytes]  # ids of valid-looking operations the rules dropped
    removed: frozenset[bytes]  # identity keys whose membership was revoked and not restored

    @property
    def admins(self) -> frozenset[bytes]:
        return frozenset(k for k, m in self.members.items() if m.admin)


def canonical_order(ops: Mapping[bytes, GroupOp]) -> list[GroupOp]:
    """A topological order that depends only on the set: (depth, kind priority, id).

    Every dependency must be in ``ops``; a CREATE has depth 0.
    """
    depth: dict[bytes, int] = {}
    for op in sorted(ops.values(), key=lambda o: len(o.deps)):  # cheap start, then fix-up
        _depth_of(op, ops, depth)
    return sorted(ops.values(), key=lambda o: (depth[o.id], _PRIORITY[o.kind], o.id))


def _depth_of(op: GroupOp, ops: Mapping[bytes, GroupOp], depth: dict[bytes, int]) -> int:
    # Iterative post-order: a long chain of operations must not hit the recursion limit.
    stack = [op]
    while stack:
        top = stack[-1]
        if top.id in depth:
            stack.pop()
            continue
        missing = [ops[d] for d in top.deps if d not in depth]
        if missing:
            stack.extend(missing)
            continue
        depth[top.id] = 1 + max((depth[d] for d in top.deps), default=-1)
        stack.pop()
    return depth[op.id]


@dataclass(slots=True)
class _Walk:
    """One pass over the canonical order."""

    order: list[GroupOp]
    past: list[int]  # bitset of indices in each operation's causal past
    defeated: dict[int, int]  # index -> index of the revocation that defeated it
    max_members: int
    name: str = ""
    members: dict[bytes, Member] = field(default_factory=dict)
    rank: dict[bytes, int] = field(default_factory=dict)  # index of the latest admin grant
    revoked_member: dict[bytes, list[int]] = field(default_factory=dict)
    revoked_admin: dict[bytes, list[int]] = field(default_factory=dict)
    by_author: dict[bytes, list[int]] = field(default_factory=dict)
    applied: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    restart_with: list[tuple[int, int]] = field(default_factory=list)

    def concurrent(self, i: int, j: int) -> bool:
        """Operation j (earlier in the walk) is not in operation i's past."""
        return not (self.past[i] >> j) & 1

    def run(self, *, final: bool = False) -> bool:
        """Apply in order; False when the walk must restart with more defeated operations.

        A ``final`` walk never restarts: what would have been defeated stays applied.
        """
        for i, op in enumerate(self.order):
            if i in self.defeated or not self.valid(i, op):
                self.dropped.append(i)
                if self.restart_with and not final:
                    return False
                self.restart_with.clear()
                continue
            if op.kind in _REVOKES_ADMIN and self.cut_off(i, op) and not final:
                return False
            self.restart_with.clear()
            self.apply(i, op)
        return True

    def valid(self, i: int, op: GroupOp) -> bool:
        if op.kind is OpKind.CREATE:
            return i == 0
        needs_admin = op.kind in ADMIN_KINDS
        revocations = self.revoked_admin if needs_admin else self.revoked_member
        blockers = [r for r in revocations.get(op.author, ()) if self.concurrent(i, r)]
        if blockers:  # the walk applied them first, but they are concurrent with op
            return self.wins_mutual(i, op, blockers)
        member = self.members.get(op.author)
        if member is None or (needs_admin and not member.admin):
            return False
        return self.grant_allowed(i, op)

    def wins_mutual(self, i: int, op: GroupOp, blockers: list[int]) -> bool:
        """Rule 4: op's author was revoked concurrently; it survives only by seniority."""
        for r in blockers:
            revoker = self.order[r].author
            mutual = op.kind in _REVOKES_ADMIN and op.target_key == revoker
            if not (mutual and self.senior(op.author, revoker)):
                return False
        for r in blockers:  # op's author outranks every concurrent revoker: they are defeated
            self.restart_with.append((r, i))
        return False

    def senior(self, a: bytes, b: bytes) -> bool:
        return self.rank.get(a, len(self.order)) < self.rank.get(b, len(self.order))

    def grant_allowed(self, i: int, op: GroupOp) -> bool:
        target = op.target_key
        if op.kind is OpKind.ADD:
            assert target is not None
            if target not in self.members and len(self.members) >= self.max_members:
                return False  # rule 6: a full group takes nobody more
            return not any(self.concurrent(i, r) for r in self.revoked_member.get(target, ()))
        if op.kind is OpKind.PROMOTE:
            assert target is not None
            if target not in self.members:
                return False
            return not any(self.concurrent(i, r) for r in self.revoked_admin.get(target, ()))
        if op.kind is OpKind.DEMOTE:
            return target in self.members
        return True

    def cut_off(self, i: int, op: GroupOp) -> bool:
        """Rule 2, retroactively: defeat the target's concurrent operations met earlier."""
        target = op.author if op.kind is OpKind.LEAVE else op.target_key
        assert target is not None
        admin_only = op.kind is OpKind.DEMOTE
        for p in self.by_author.get(target, ()):
            needs_admin = self.order[p].kind in ADMIN_KINDS
            if (needs_admin or not admin_only) and self.concurrent(i, p):
                self.restart_with.append((p, i))
        return bool(self.restart_with)

    def apply(self, i: int, op: GroupOp) -> None:
        self.applied.append(i)
        self.by_author.setdefault(op.author, []).append(i)
        target = op.target_key
        if op.kind is OpKind.CREATE:
            assert op.target is not None
            assert op.name is not None
            self.members[op.author] = Member(public=op.target, admin=True, added_by=op.id)
            self.rank[op.author] = i
            self.name = op.name
        elif op.kind is OpKind.ADD:
            assert op.target is not None
            assert target is not None
            if target not in self.members:
                self.members[target] = Member(public=op.target, admin=False, added_by=op.id)
        elif op.kind is OpKind.RENAME:
            assert op.name is not None
            self.name = op.name
        elif op.kind is OpKind.PROMOTE:
            assert target is not None
            self.set_admin(target, admin=True)
            self.rank[target] = i
        else:
            self.revoke(i, op)

    def revoke(self, i: int, op: GroupOp) -> None:
        target = op.author if op.kind is OpKind.LEAVE else op.target_key
        assert target is not None
        self.revoked_admin.setdefault(target, []).append(i)
        if op.kind is OpKind.DEMOTE:
            self.set_admin(target, admin=False)
            return
        self.revoked_member.setdefault(target, []).append(i)
        self.members.pop(target, None)

    def set_admin(self, key: bytes, *, admin: bool) -> None:
        member = self.members[key]
        self.members[key] = Member(public=member.public, admin=admin, added_by=member.added_by)


def resolve(ops: Mapping[bytes, GroupOp], *, max_members: int) -> GroupState:
    """The membership the operations give (every dependency of every operation present,
    exactly one CREATE among them). Every member must use the same ``max_members``."""
    order = canonical_order(ops)
    index = {op.id: i for i, op in enumerate(order)}
    past: list[int] = []
    for op in order:
        bits = 0
        for d in op.deps:
            bits |= past[index[d]] | (1 << index[d])
        past.append(bits)
    defeated: dict[int, int] = {}
    for _ in range(2 * len(order) + 1):
        walk = _Walk(order, past, dict(defeated), max_members)
        if not walk.run():
            defeated.update(walk.restart_with)
            continue
        applied = set(walk.applied)
        stale = [p for p, reason in defeated.items() if reason not in applied]
        if not stale:
            return _state_of(walk)
        for p in stale:  # rule 5: the reason for this defeat did not hold after all
            del defeated[p]
    walk = _Walk(order, past, defeated, max_members)
    walk.run(final=True)
    return _state_of(walk)


def _state_of(walk: _Walk) -> GroupState:
    order = walk.order
    revocations = sorted(
        order[i].id for i in walk.applied if order[i].kind in _REVOKES_MEMBER
    )  # fmt: skip
    ever_revoked = {k for k, rs in walk.revoked_member.items() if rs}
    return GroupState(
        group_id=order[0].group_id,
        name=walk.name,
        members=dict(walk.members),
        epoch=len(revocations),
        epoch_id=hashlib.blake2b(
            order[0].id + b"".join(revocations), digest_size=16, person=_PERSON_EPOCH
        ).digest(),
        applied=frozenset(order[i].id for i in walk.applied),
        dropped=frozenset(order[i].id for i in walk.dropped),
        removed=frozenset(ever_revoked - set(walk.members)),
    )
