"""Group traffic (issue #14): groups made by the real core, messages to them, or the same
messages as pairwise fan-out.

A scenario's ``[group_traffic]`` gives the number of groups, their sizes and the addresses
members are drawn from; a message goes to a random group from a random member every
``interval_s``. Everything is drawn from the run seed's ``group_traffic`` stream, before the
run and independently of ``delivery``: a ``delivery = "group"`` run and a ``"fanout"`` run of
one seed have the same contacts, faults, members, senders, times and sizes, so their relay
costs compare like for like (:mod:`meshmsg.sim.groupreport` runs the pair).

* ``group``: each group's first member creates it at ``setup_s`` with
  ``Node.create_group`` (signed operations, then each sender's chain, over the pairwise
  channels, as in production); a message is ``Node.send_group_message``: one ciphertext for
  every member. A member who has not yet learnt of the group cannot write to it: the message
  is counted as not created (a real cost of groups: setup takes meetings).
* ``fanout``: no group; a message is one ``Node.send_message`` to each other member.

The commands reach the nodes as :class:`~meshmsg.sim.commands.NodeCommand` events; what they
create is told to the :class:`~meshmsg.sim.groupreport.GroupRecorder`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from meshmsg.config import MessageLimits
from meshmsg.core.identity import peer_id_of
from meshmsg.core.node import Node
from meshmsg.errors import GroupError, LocalProtocolError
from meshmsg.sim.commands import REFUSALS, NodeCommand
from meshmsg.sim.groupreport import GroupRecorder
from meshmsg.sim.report import Recorder
from meshmsg.sim.rng import SeededRng
from meshmsg.sim.scenario import GroupTrafficSection, parse_addresses


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupSend:
    """One message to a group, as planned from the seed."""

    sim_id: str
    time: float
    group: int
    sender: int
    size: int


def plan_groups(spec: GroupTrafficSection, *, count: int, rng: SeededRng) -> list[tuple[int, ...]]:
    """Members of each group (the creator first), drawn without replacement per group."""
    pool = list(parse_addresses(spec.members, count, "group_traffic.members"))
    groups = []
    for _ in range(spec.count):
        size = spec.size[0] + rng.randbelow(spec.size[1] - spec.size[0] + 1)
        chosen = pool[:]
        for i in range(size):  # a partial Fisher-Yates shuffle: the first ``size`` are drawn
            j = i + rng.randbelow(len(chosen) - i)
            chosen[i], chosen[j] = chosen[j], chosen[i]
        groups.append(tuple(chosen[:size]))
    return groups


def plan_sends(
    spec: GroupTrafficSection, groups: list[tuple[int, ...]], *, duration_s: float,
    rng: SeededRng, count: int,
) -> Iterator[GroupSend]:  # fmt: skip
    """Messages in time order: a random group, a random writer of it (a member among
    ``spec.senders``, or any member), a uniform size."""
    end = duration_s if spec.end_s is None else min(spec.end_s, duration_s)
    allowed = set(parse_addresses(spec.senders, count, "group_traffic.senders"))
    writers = [tuple(m for m in g if m in allowed) or g for g in groups]
    t = spec.start_s + rng.uniform(*spec.interval_s)
    n = 0
    while groups and t < end:
        n += 1
        group = rng.randbelow(len(groups))
        sender = writers[group][rng.randbelow(len(writers[group]))]
        size = spec.size_bytes[0] + rng.randbelow(spec.size_bytes[1] - spec.size_bytes[0] + 1)
        yield GroupSend(sim_id=f"{spec.prefix}{n}", time=t, group=group, sender=sender, size=size)
        t += rng.uniform(*spec.interval_s)


class GroupTraffic:
    """The commands of one run's group traffic; they report to ``self.recorder``, which wraps
    the run's ``inner`` recorder (give the engine ``self.recorder`` as its observer)."""

    def __init__(
        self, spec: GroupTrafficSection, *, count: int, duration_s: float, seed: int,
        ttl_s: float, inner: Recorder,
    ) -> None:  # fmt: skip
        self.spec = spec
        rng = SeededRng(seed, "group_traffic")
        self.groups = plan_groups(spec, count=count, rng=rng)
        self._sends = plan_sends(spec, self.groups, duration_s=duration_s, rng=rng, count=count)
        # Group mail's TTL is bounded by the latency budget; fan-out uses the same TTL.
        self._ttl_s = min(ttl_s, MessageLimits().latency_budget_s)
        self.recorder = GroupRecorder(inner, delivery=spec.delivery, groups=self.groups)
        self._ids: dict[int, bytes] = {}  # group index -> group id (group delivery)
        self._identity: Callable[[int], bytes] = _unknown
        self._address: dict[bytes, int] = {}

    def events(self, identity: Callable[[int], bytes], count: int) -> Iterator[NodeCommand]:
        """The commands in time order; ``identity`` is the factory's (peer id of an address)."""
        self._identity = identity
        self._address = {identity(a): a for a in range(count)}
        if self.spec.delivery == "group":
            for index, members in enumerate(self.groups):
                yield NodeCommand(
                    time=self.spec.setup_s, address=members[0], label=f"create-group {index}",
                    run=functools.partial(self._create, index=index),
                    skipped=functools.partial(self._setup_failed, index),
                )  # fmt: skip
        for send in self._sends:
            self.recorder.planned(send.sim_id, send.time, send.sender, self.groups[send.group])
            yield NodeCommand(
                time=send.time, address=send.sender, label=f"group-send {send.sim_id}",
                run=functools.partial(self._send, send=send),
                skipped=functools.partial(self.recorder.not_created, send.sim_id),
            )  # fmt: skip

    def _setup_failed(self, index: int, now: float, why: str) -> None:
        self.recorder.setup_failed(index, why)

    def _create(self, node: object, now: float, *, index: int) -> None:
        members = self.groups[index]
        gid = _core(node).create_group(
            f"g{index}", [self._identity(a) for a in members[1:]], now=now
        )
        self._ids[index] = gid

    def _send(self, node: object, now: float, *, send: GroupSend) -> None:
        body = (send.sim_id + ":" + "." * send.size)[: max(send.size, 1)]
        if self.spec.delivery == "group":
            self._send_group(_core(node), send, body, now)
        else:
            self._send_fanout(_core(node), send, body, now)

    def _send_group(self, node: Node, send: GroupSend, body: str, now: float) -> None:
        gid = self._ids.get(send.group)
        if gid is None:
            raise GroupError("the group was never created")
        if gid not in node.groups.entries:  # its operations have not reached the sender yet
            raise GroupError("the sender has not learnt of the group yet")
        mid = node.send_group_message(gid, body, now=now, ttl_s=self._ttl_s)
        message = node.groups.find(gid).messages[mid]
        recipients = [self._address[peer_id_of(k)] for k in sorted(message.recipients)]
        sizes = {}
        if message.envelope_id is not None:
            item = node.store.get(message.envelope_id)
            sizes[message.envelope_id] = item.length if item is not None else 0
        self.recorder.sent_group(send.sim_id, now, mid, recipients, sizes)

    def _send_fanout(self, node: Node, send: GroupSend, body: str, now: float) -> None:
        sent: dict[bytes, int] = {}
        sizes: dict[bytes, int] = {}
        for member in self.groups[send.group]:
            if member == send.sender:
                continue
            try:
                mid = node.send_message(self._identity(member), body, now=now, ttl_s=self._ttl_s)
            except REFUSALS:
                continue  # this member's copy is not created; the pair counts as undelivered
            sent[mid] = member
            stored = node.conversations.get(mid)
            if stored is not None and stored.envelope_id is not None:
                item = node.store.get(stored.envelope_id)
                if item is not None:
                    sizes[stored.envelope_id] = item.length
        if not sent:
            raise LocalProtocolError("no member's copy could be created")
        self.recorder.sent_fanout(send.sim_id, now, sent, sizes)


def _core(node: object) -> Node:
    if not isinstance(node, Node):
        raise LocalProtocolError("group traffic needs the protocol core (run.agent = 'core')")
    return node


def _unknown(address: int) -> bytes:
    raise LocalProtocolError(f"no identity for node {address} before the run starts")
