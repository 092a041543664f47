"""The attachment table's admission: a copy is refused when it is held already, expired, over
the store, over the strangers' share or one stranger's share, or when only better-protected
copies could make room; what admission evicts is a worse-protected relay copy, and the byte
accounting per tier and per stranger follows every add and remove."""

from __future__ import annotations

import hashlib

from meshmsg.config import AttachConfig
from meshmsg.core.attach.format import Manifest
from meshmsg.core.attach.table import AttachmentTable, Carried, Role
from meshmsg.core.store import Tier

ONE = Manifest(count=1, last_length=1_024 + 16, root=b"r" * 32, done_tag=b"d" * 16)
SIZE = ONE.ciphertext_bytes
STRANGER_A, STRANGER_B = b"a" * 16, b"b" * 16


def _item(n: int, tier: Tier, *, source: bytes | None = None, expiry: float = 100.0,
          role: Role = Role.RELAY) -> Carried:  # fmt: skip
    return Carried(
        attachment_id=hashlib.blake2b(bytes([n]), digest_size=32).digest(), manifest=ONE,
        role=role, expiry_at=expiry, copies=1, tier=tier, source=source,
    )  # fmt: skip


def test_admission_refuses_duplicates_expired_and_oversized_copies() -> None:
    table = AttachmentTable(AttachConfig(max_store_bytes=3 * SIZE))
    first = _item(1, Tier.CONTACT)
    assert table.admit(first, now=0) == []
    assert table.admit(first, now=0) is None  # held already
    assert table.admit(_item(2, Tier.CONTACT, expiry=5.0), now=5.0) is None  # expired
    small = AttachmentTable(AttachConfig(max_store_bytes=SIZE - 1))
    assert small.admit(_item(3, Tier.VERIFIED), now=0) is None  # larger than the whole store
    assert table.total_bytes == SIZE


def test_strangers_are_held_to_their_shares() -> None:
    config = AttachConfig(max_store_bytes=20 * SIZE, stranger_quota_fraction=0.1,
                          strangers_total_fraction=0.15)  # fmt: skip
    table = AttachmentTable(config)
    assert table.admit(_item(1, Tier.STRANGER, source=STRANGER_A), now=0) == []
    assert table.admit(_item(2, Tier.STRANGER, source=STRANGER_A), now=0) == []
    assert table.admit(_item(3, Tier.STRANGER, source=STRANGER_A), now=0) is None  # A's 10 %
    assert table.admit(_item(4, Tier.STRANGER, source=STRANGER_B), now=0) == []
    assert table.admit(_item(5, Tier.STRANGER, source=STRANGER_B), now=0) is None  # all 15 %
    removed = table.remove(_item(1, Tier.STRANGER).attachment_id)
    assert removed is not None
    assert table.admit(_item(5, Tier.STRANGER, source=STRANGER_B), now=0) == []  # room again
    assert table.remove(b"?" * 32) is None


def test_only_worse_protected_relay_copies_make_room() -> None:
    table = AttachmentTable(AttachConfig(max_store_bytes=2 * SIZE))
    own = _item(1, Tier.OWN, role=Role.OWN)
    table.add(own)
    contact = _item(2, Tier.CONTACT)
    assert table.admit(contact, now=0) == []
    assert table.admit(_item(3, Tier.CONTACT), now=0) is None  # nothing worse to push out
    assert table.admit(_item(4, Tier.VERIFIED), now=0) == [contact.attachment_id]
    assert own.attachment_id in table  # our own is never evicted
    assert table.total_bytes == 2 * SIZE
