"""The attachment carrier's less travelled paths: a restart with chunks on disk the records do
not know, a chunk the store lost, a write that lands after the attachment was dropped,
completion receipts (wrong token, unknown id, for the recipient, expiry, bound), requests over
the window, unrelated records and links, and the epidemic copy rule."""

from __future__ import annotations

import dataclasses
import random

import pytest

from meshmsg.config import AttachConfig, MessageLimits, NodeConfig, RoutingConfig
from meshmsg.core.attach.format import CHUNK_BYTES
from meshmsg.core.attach.records import (
    MAX_REQUEST,
    AttachmentDone,
    ChunkHoldings,
    ChunkRequest,
)
from meshmsg.core.attach.table import Role
from meshmsg.core.effects import RecordKind
from meshmsg.core.events import AttachmentComplete, AttachmentDropped, AttachmentProgress
from meshmsg.core.records import Custody
from meshmsg.core.store import Tier
from meshmsg.core.wire import decode_records
from meshmsg.errors import CloseReason, LocalProtocolError
from tests.core.attach_mesh import REGISTRY, FakeNode, meet, reassembled, sealed

SIZE = 5 * CHUNK_BYTES + 777  # six chunks


def payload(seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(SIZE)


def _want(node: FakeNode, ref: object, sender: FakeNode) -> Role:
    return node.carrier.want(
        ref,  # type: ignore[arg-type]
        peer_id=sender.peer_id, message_id=b"m" * 16, expiry_at=1e9, now=0,
    )  # fmt: skip


def _done_ids(node: FakeNode) -> set[bytes]:
    return {key for kind, key in node.records if kind is RecordKind.ATTACHMENT_DONE}


def test_a_restart_drops_chunks_no_record_knows_and_indexes_past_the_end() -> None:
    a = FakeNode("a")
    ref = sealed(a, payload())
    stray = b"z" * 16
    a.disk[(stray, 0)] = ((), b"left by a crash before its record")
    a.disk[(ref.attachment_id, 99)] = ((), b"no such chunk")
    a.restart()
    assert (stray, 0) not in a.disk  # the driver is told to delete the orphan
    item = a.carrier.table.items[ref.attachment_id]
    assert 99 not in item.held
    assert item.held.held == item.held.count == 6


def test_a_file_completed_before_is_not_fetched_again_for_a_duplicate_message() -> None:
    a, c = FakeNode("a"), FakeNode("c")
    ref = sealed(a, payload())
    assert _want(c, ref, a) is Role.WANTED
    meet(a, c)
    assert _want(c, ref, a) is Role.WANTED  # the same message again: nothing new
    c.carrier.discard(ref.attachment_id)  # the user deleted the file
    c.run_effects(0)
    c.restart()  # the completion receipt is remembered across restarts
    assert _want(c, ref, a) is Role.WANTED
    assert ref.attachment_id not in c.carrier.table
    assert meet(a, c) == 0
    with pytest.raises(LocalProtocolError, match="no attachment addressed to us"):
        c.carrier.fetch(ref.attachment_id, now=0)


def test_a_chunk_the_relay_lost_is_reported_missing_and_fetched_elsewhere() -> None:
    a, b, c = FakeNode("a"), FakeNode("b"), FakeNode("c")
    data = payload()
    ref = sealed(a, data)
    meet(a, b)
    del b.disk[(ref.attachment_id, 3)]  # the store lost it behind the carrier's back
    _want(c, ref, a)
    assert meet(b, c) == 5
    assert 3 not in b.carrier.table.items[ref.attachment_id].held  # b knows now
    assert b.violations == c.violations == []
    assert meet(a, c) == 1
    assert reassembled(c, ref) == data


def test_a_write_that_lands_after_the_attachment_was_dropped_is_not_kept() -> None:
    a, b = FakeNode("a"), FakeNode("b")
    ref = sealed(a, payload())
    b.hold_stores = True
    meet(a, b)
    assert b.effects  # chunk writes still with the driver
    b.carrier.discard(ref.attachment_id)
    progress_before = sum(isinstance(e, AttachmentProgress) for e in b.events)
    b.hold_stores = False
    b.run_effects(0)
    assert b.chunks_of(ref.attachment_id) == set()
    assert ref.attachment_id not in b.carrier.table
    assert sum(isinstance(e, AttachmentProgress) for e in b.events) == progress_before
    assert AttachmentDropped(attachment_id=ref.attachment_id, reason="discarded") in b.events


def test_completion_receipts_expire_and_are_bounded() -> None:
    config = NodeConfig(message=dataclasses.replace(MessageLimits(), dedup_entries=1))
    a, c = FakeNode("a"), FakeNode("c", config=config)
    first, second = sealed(a, payload(1), seed=1), sealed(a, payload(2), seed=2)
    _want(c, first, a)
    meet(a, c)
    assert _done_ids(c) == {first.attachment_id}
    _want(c, second, a)
    meet(a, c)
    assert _done_ids(c) == {second.attachment_id}  # the bound pushed the oldest out
    deadline = c.carrier.next_deadline()
    assert deadline is not None
    c.carrier.on_timer(deadline)
    assert _done_ids(c) == set()
    assert c.carrier.next_deadline() is None


def test_completion_receipts_that_cannot_be_checked_or_are_for_us_change_nothing() -> None:
    a, c = FakeNode("a"), FakeNode("c")
    ref = sealed(a, payload())
    c.carrier.link_up(7, a.peer_id, Tier.VERIFIED)
    unknown = AttachmentDone(attachment_id=b"u" * 32, token=b"t" * 16, expiry_at=10**12)
    assert c.carrier.handle(7, unknown, 0)
    assert c.violations == []
    _want(c, ref, a)
    for_us = AttachmentDone(attachment_id=ref.attachment_id, token=ref.done_token,
                            expiry_at=10**12)  # fmt: skip
    c.carrier.handle(7, for_us, 0)
    assert ref.attachment_id in c.carrier.table  # our own copy is the file
    assert c.violations == []
    forged = dataclasses.replace(for_us, token=b"\x00" * 16)
    a.carrier.link_up(8, c.peer_id, Tier.VERIFIED)
    a.carrier.handle(8, forged, 0)
    assert a.violations == [(8, CloseReason.MALFORMED, "a completion receipt with the wrong token")]
    assert ref.attachment_id in a.carrier.table


def test_asking_for_more_chunks_than_are_read_at_once_closes_the_link() -> None:
    """Reads the driver has not answered count: a peer cannot queue unbounded disk reads by
    asking again and again."""
    a = FakeNode("a")
    ref = sealed(a, payload())
    a.carrier.link_up(7, b"x" * 16, Tier.VERIFIED)
    request = ChunkRequest(attachment_id=ref.attachment_id, indexes=tuple(range(6)))
    rounds = MAX_REQUEST // 6
    for _ in range(rounds):
        a.carrier.handle(7, request, 0)
    assert a.violations == []
    assert len(a.effects) == rounds * 6
    a.carrier.handle(7, request, 0)
    assert a.violations == [(7, CloseReason.LIMIT_REACHED, "too many chunks asked at once")]
    assert len(a.effects) == rounds * 6  # nothing more was read for it


def test_records_of_other_parts_and_unknown_links_are_not_the_carrier_s() -> None:
    a = FakeNode("a")
    sealed(a, payload())
    holdings = ChunkHoldings(entries=())
    assert a.carrier.handle(99, holdings, 0) is False  # no such link
    a.carrier.link_up(7, b"x" * 16, Tier.VERIFIED)
    assert a.carrier.handle(7, Custody(accepted=(), refused=()), 0) is False
    assert a.carrier.handle(7, holdings, 0) is True


def test_epidemic_hands_one_copy_and_keeps_its_own_budget() -> None:
    config = NodeConfig(routing=dataclasses.replace(RoutingConfig(), policy="epidemic"))
    a, b = FakeNode("a", config=config), FakeNode("b", config=config)
    ref = sealed(a, payload())
    before = a.carrier.table.items[ref.attachment_id].copies
    assert meet(a, b) == 6
    assert b.carrier.table.items[ref.attachment_id].copies == 1
    assert a.carrier.table.items[ref.attachment_id].copies == before


def test_holdings_are_split_into_records_of_at_most_max_have_entries() -> None:
    config = NodeConfig(attach=dataclasses.replace(AttachConfig(), max_have_entries=2))
    a = FakeNode("a", config=config)
    refs = [sealed(a, payload(i), seed=i) for i in range(5)]
    a.carrier.link_up(7, b"x" * 16, Tier.VERIFIED)
    sent = [decode_records(data, REGISTRY, config.wire)[0] for link, data in a.outbox if link == 7]
    assert all(isinstance(r, ChunkHoldings) for r in sent)
    sizes = [len(r.entries) for r in sent]  # type: ignore[attr-defined]
    assert sizes == [2, 2, 1]
    advertised = {e.attachment_id for r in sent for e in r.entries}  # type: ignore[attr-defined]
    assert advertised == {r.attachment_id for r in refs}
    assert AttachmentComplete not in {type(e) for e in a.events}
