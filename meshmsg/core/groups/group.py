"""One group's operation graph: what has arrived, what waits for a dependency, and its state.

Theory of operation
-------------------
A :class:`Group` holds every operation it accepted (all dependencies present) and, apart, the
operations still waiting for a dependency (``pending``, bounded: a peer cannot grow it with
operations that depend on nothing we will ever see). After each batch it re-resolves the graph
(:func:`~meshmsg.core.groups.resolve.resolve`), so its :attr:`state` is always the resolution of
the accepted set. Authoring an operation names the current heads as dependencies and is refused
(:class:`GroupError`) unless it would take effect: a local user never signs something the rules
will drop.

Operations never leave a group: a late member needs the whole graph to check it. Hence the
``max_ops`` limit, with a clear error when a group reaches it (make a new group).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from meshmsg.config import GroupLimits
from meshmsg.core.groups.ops import GroupOp, OpKind, parse_op, sign_op
from meshmsg.core.groups.resolve import GroupState, canonical_order, resolve
from meshmsg.errors import GroupError, InvalidMessage, KeystoreError

_MAGIC: Final = b"MMgr"
_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class Received:
    """What a batch of operations changed."""

    accepted: list[GroupOp]  # newly in the graph (in canonical order)
    pending: int  # waiting for a dependency
    refused: int  # invalid, for another group, or over a limit


class Group:
    """See the module docstring."""

    def __init__(self, create: GroupOp, limits: GroupLimits) -> None:
        if create.kind is not OpKind.CREATE:
            raise InvalidMessage("a group starts from its CREATE operation")
        self.limits = limits
        self.id = create.id
        self.ops: dict[bytes, GroupOp] = {create.id: create}
        self.pending: dict[bytes, GroupOp] = {}
        self._children: set[bytes] = set()  # ids named as a dependency by some accepted op
        self.state: GroupState = resolve(self.ops, max_members=limits.max_members)

    # ------------------------------------------------------------------ reading

    @property
    def heads(self) -> tuple[bytes, ...]:
        """Accepted operations no other accepted operation depends on (sorted)."""
        return tuple(sorted(i for i in self.ops if i not in self._children))

    def missing_for(self, heads: Iterable[bytes]) -> list[GroupOp]:
        """Our operations a member whose heads are ``heads`` lacks, in canonical order.

        Heads we do not know are ignored (the other side has more; it will send it).
        """
        known = [h for h in heads if h in self.ops]
        seen: set[bytes] = set()
        stack = list(known)
        while stack:
            i = stack.pop()
            if i not in seen:
                seen.add(i)
                stack.extend(self.ops[i].deps)
        return [op for op in canonical_order(self.ops) if op.id not in seen]

    def knows_all(self, heads: Iterable[bytes]) -> bool:
        return all(h in self.ops for h in heads)

    # ------------------------------------------------------------------ changing

    def receive(self, ops: Iterable[GroupOp]) -> Received:
        """Take operations from a member (already parsed and signature-checked)."""
        refused = 0
        fresh: list[GroupOp] = []
        for op in ops:
            if op.id in self.ops or op.id in self.pending:
                continue
            foreign = op.kind is OpKind.CREATE or op.group != self.id
            if foreign or len(self.pending) >= self.limits.max_pending_ops:
                refused += 1
            else:
                self.pending[op.id] = op
        progress = True
        while progress:
            progress = False
            for op in list(self.pending.values()):
                if all(d in self.ops for d in op.deps):
                    del self.pending[op.id]
                    if len(self.ops) >= self.limits.max_ops:
                        refused += 1
                        continue
                    self._accept(op)
                    fresh.append(op)
                    progress = True
        if fresh:
            self.state = resolve(self.ops, max_members=self.limits.max_members)
        order = {op.id: n for n, op in enumerate(canonical_order(self.ops))} if fresh else {}
        fresh.sort(key=lambda o: order[o.id])
        return Received(accepted=fresh, pending=len(self.pending), refused=refused)

    def _accept(self, op: GroupOp) -> None:
        self.ops[op.id] = op
        self._children.update(op.deps)

    def author(
        self,
        signing_seed: bytes,
        kind: OpKind,
        *,
        at_ms: int,
        target: bytes | None = None,
        name: str | None = None,
    ) -> GroupOp:
        """Sign an operation on the current heads and accept it.

        Raises:
            GroupError: the operation would not take effect (not a member or not an admin, an
                unknown member, the group full), or the group reached ``max_ops``.
        """
        if len(self.ops) >= self.limits.max_ops:
            raise GroupError(
                f"group reached its limit of {self.limits.max_ops} membership operations "
                "(groups.max_ops); create a new group"
            )
        op = sign_op(
            signing_seed, group=self.id, kind=kind, deps=self.heads, target=target, name=name,
            at_ms=at_ms, limits=self.limits,
        )  # fmt: skip
        trial = dict(self.ops)
        trial[op.id] = op
        state = resolve(trial, max_members=self.limits.max_members)
        no_change = state.members == self.state.members and kind is not OpKind.RENAME
        if op.id not in state.applied or no_change:
            raise GroupError(_why_refused(op, self.state, self.limits))
        self._accept(op)
        self.state = state
        return op

    # ------------------------------------------------------------------ persistence

    def to_bytes(self) -> bytes:
        """Magic, version, then each accepted operation (canonical order) and each pending
        one, as u16 length ‖ bytes, with a u16 count of each in front."""
        ordered = canonical_order(self.ops)
        pending = sorted(self.pending.values(), key=lambda o: o.id)
        parts = [_MAGIC, bytes([_VERSION])]
        for ops in (ordered, pending):
            parts.append(len(ops).to_bytes(2, "big"))
            for op in ops:
                parts += [len(op.data).to_bytes(2, "big"), op.data]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes, limits: GroupLimits) -> Group:
        """Strict inverse of :meth:`to_bytes`.

        Raises:
            KeystoreError: damaged bytes, an operation that no longer verifies, or counts over
                the limits.
        """
        if data[:4] != _MAGIC or data[4:5] != bytes([_VERSION]):
            raise KeystoreError("group state: bad magic or version")
        pos = 5
        lists: list[list[GroupOp]] = []
        for bound in (limits.max_ops, limits.max_pending_ops):
            count, pos = _u16(data, pos)
            if count > bound:
                raise KeystoreError("group state: more operations than the limits allow")
            ops = []
            for _ in range(count):
                size, pos = _u16(data, pos)
                if pos + size > len(data):
                    raise KeystoreError("group state: truncated")
                try:
                    ops.append(parse_op(data[pos : pos + size], limits))
                except InvalidMessage as exc:
                    raise KeystoreError(f"group state: {exc}") from exc
                pos += size
            lists.append(ops)
        if pos != len(data) or not lists[0]:
            raise KeystoreError("group state: trailing bytes or no operations")
        group = cls(lists[0][0], limits)
        result = group.receive(lists[0][1:] + lists[1])
        if result.refused or len(group.ops) != len(lists[0]):
            raise KeystoreError("group state: operations do not form the stored graph")
        return group


def _u16(data: bytes, pos: int) -> tuple[int, int]:
    if pos + 2 > len(data):
        raise KeystoreError("group state: truncated")
    return int.from_bytes(data[pos : pos + 2], "big"), pos + 2


def _why_refused(op: GroupOp, state: GroupState, limits: GroupLimits) -> str:
    member = state.members.get(op.author)
    if member is None:
        return "you are not a member of this group"
    if op.kind is not OpKind.LEAVE and not member.admin:
        return "only an admin can change the membership or the name"
    target = op.target_key
    if op.kind is OpKind.ADD:
        if target in state.members:
            return "already a member"
        return f"a group has at most {limits.max_members} members (groups.max_members)"
    if target is not None and target not in state.members:
        return "not a member of this group"
    return f"{op.kind.name.lower()} would change nothing"
