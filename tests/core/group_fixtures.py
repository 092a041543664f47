"""Shared helpers for group tests: people with identities, replicas of one group."""

from __future__ import annotations

from dataclasses import dataclass, field

from meshmsg.config import GroupLimits
from meshmsg.core.groups.group import Group
from meshmsg.core.groups.ops import GroupOp, OpKind, sign_op
from meshmsg.core.identity import Identity
from meshmsg.sim.rng import SeededRng

LIMITS = GroupLimits()


def people(*names: str, seed: int = 1) -> dict[str, Identity]:
    rng = SeededRng(seed, "people")
    return {name: Identity.generate(rng) for name in names}


def create(creator: Identity, name: str = "cell", *, limits: GroupLimits = LIMITS) -> GroupOp:
    return sign_op(
        creator.signing_seed, group=SeededRng(len(name), name).randbytes(32), kind=OpKind.CREATE,
        deps=(), target=creator.public.to_bytes(), name=name, at_ms=0, limits=limits,
    )  # fmt: skip


@dataclass
class Replica:
    """One member's copy of a group, and the identity that acts on it."""

    who: Identity
    group: Group
    log: list[GroupOp] = field(default_factory=list)  # what this replica authored

    def do(self, kind: OpKind, target: Identity | None = None, name: str | None = None) -> GroupOp:
        if kind is OpKind.ADD:
            assert target is not None
            raw: bytes | None = target.public.to_bytes()
        else:
            raw = target.public.identity_key if target is not None else None
        op = self.group.author(self.who.signing_seed, kind, at_ms=0, target=raw, name=name)
        self.log.append(op)
        return op

    def learn(self, other: Replica) -> None:
        """Receive everything the other replica has (as a sync would)."""
        self.group.receive(list(other.group.ops.values()))

    def members(self) -> set[bytes]:
        return set(self.group.state.members)


def replicas(create_op: GroupOp, *who: Identity, limits: GroupLimits = LIMITS) -> list[Replica]:
    return [Replica(w, Group(create_op, limits)) for w in who]
