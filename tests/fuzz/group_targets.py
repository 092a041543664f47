"""Fuzz target for groups: a member's GroupOps, GroupKey and GroupReceipt records, and the
operations inside them, fed to a group book that holds a real group (issue #14).

Registered by :mod:`tests.fuzz.targets` importing this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final

from meshmsg.config import NodeConfig, WireLimits
from meshmsg.core.groups.book import GroupBook
from meshmsg.core.groups.group import Group
from meshmsg.core.groups.ops import OpKind
from meshmsg.core.groups.records import GROUP_PAIRWISE_RECORDS, GroupKey, GroupOps, GroupReceipt
from meshmsg.core.identity import Identity
from meshmsg.core.wire import decode_records, encode_records
from meshmsg.errors import DecodeError, GroupError, KeystoreError
from meshmsg.sim.rng import SeededRng
from tests.fuzz.harness import check, target

T0: Final = 1_800_000_000.0
_CONFIG: Final = NodeConfig()
_PEOPLE: Final = [Identity.generate(SeededRng(i, "fuzz-group")) for i in range(3)]


def _books() -> tuple[GroupBook, GroupBook]:
    """An admin's book with a group of three, and a member's that received its history."""
    admin = GroupBook(_PEOPLE[0], _CONFIG, SeededRng(1, "admin"))
    member = GroupBook(_PEOPLE[1], _CONFIG, SeededRng(2, "member"))
    _, out = admin.create("cell", [p.public for p in _PEOPLE[1:]], T0)
    for record in out[0].records:
        assert isinstance(record, GroupOps)
        member.on_ops(admin.me, record, T0)
    return admin, member


def seeds_group_ops() -> Iterator[bytes]:
    admin, member = _books()
    entry = admin.find("cell")
    for record in admin.change(entry, OpKind.RENAME, T0, name="x")[0].records:
        yield encode_records([record])
    sealed = admin.seal_text(entry, "hello", T0, 3_600.0)
    yield encode_records(list(sealed.shares[0].records))
    yield encode_records([GroupReceipt(group=entry.group.id, status=1, message_ids=(b"\0" * 16,))])
    yield entry.group.to_bytes()
    del member


@target("group_ops", seeds=seeds_group_ops, max_len=16_384)
def fuzz_group_ops(data: bytes) -> None:
    """Arbitrary bytes as group records from a member, and as a stored group: the strict codec
    refuses them (DecodeError, KeystoreError) or the book takes them without raising, and a
    member's state stays one every replica holding its operations would compute."""
    with contextlib.suppress(KeystoreError):  # the only error a stored group may raise
        Group.from_bytes(data, _CONFIG.groups)
    admin, member = _books()
    try:
        records = decode_records(data, GROUP_PAIRWISE_RECORDS, WireLimits())
    except DecodeError:
        return
    for record in records:
        try:
            if isinstance(record, GroupOps):
                member.on_ops(admin.me, record, T0)
            elif isinstance(record, GroupKey):
                member.on_key(admin.me, record, T0)
            elif isinstance(record, GroupReceipt):
                admin.on_receipt(member.me, record)
        except GroupError:
            pass  # a refusal with a reason is fine
    for entry in member.entries.values():
        again = Group(next(iter(entry.group.ops.values())), _CONFIG.groups)
        again.receive(list(entry.group.ops.values()))
        check(again.state == entry.group.state, "replay of the same operations differs")
