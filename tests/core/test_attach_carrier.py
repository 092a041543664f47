"""Carrying attachments between time-stepped nodes: resume from anyone, refuse junk, restarts."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmsg.config import AttachConfig, NodeConfig, RoutingConfig
from meshmsg.core.attach.format import CHUNK_BYTES
from meshmsg.core.attach.records import Chunk, ChunkHoldings, ChunkRequest, HoldingEntry
from meshmsg.core.attach.table import Role
from meshmsg.core.events import (
    AttachmentComplete,
    AttachmentDelivered,
    AttachmentDropped,
)
from meshmsg.core.store import Tier
from meshmsg.core.wire import Record
from meshmsg.errors import CloseReason
from tests.core.attach_mesh import CONFIG, FakeNode, meet, reassembled, sealed

SIZE = 5 * CHUNK_BYTES + 777  # six chunks, the last one short


def payload(size: int = SIZE, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def test_relay_carries_a_file_to_a_recipient_never_online_with_the_sender() -> None:
    a, b, c = FakeNode("a"), FakeNode("b"), FakeNode("c")
    data = payload()
    ref = sealed(a, data)
    assert c.carrier.want(ref, peer_id=a.peer_id, message_id=b"m" * 16, expiry_at=1e9, now=0) is (
        Role.WANTED
    )
    assert meet(a, b) == 6  # B takes a relay copy: the sender offered copies
    assert meet(b, c) == 6
    assert reassembled(c, ref) == data
    assert AttachmentComplete(attachment_id=ref.attachment_id) in c.events
    # C's completion receipt reaches B (it meets C) and then A: both drop their copies.
    assert b.chunks_of(ref.attachment_id) == set()
    meet(b, a)
    assert a.chunks_of(ref.attachment_id) == set()
    assert AttachmentDelivered(attachment_id=ref.attachment_id) in a.events


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_any_cut_resumed_from_any_mix_of_peers_gives_the_same_bytes(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, 7 * CHUNK_BYTES), label="size")
    content = payload(size, seed=size)
    sender = FakeNode("s")
    relays = [FakeNode(f"r{i}") for i in range(3)]
    recipient = FakeNode("t")
    ref = sealed(sender, content)
    recipient.carrier.want(ref, peer_id=sender.peer_id, message_id=b"m" * 16, expiry_at=1e9, now=0)
    # The sender meets relays with transfers cut anywhere; relays meet each other too.
    for _ in range(data.draw(st.integers(1, 6), label="spreading meetings")):
        giver = data.draw(st.sampled_from([sender, *relays]))
        taker = data.draw(st.sampled_from([r for r in relays if r is not giver]))
        meet(giver, taker, cut_after=data.draw(st.integers(0, 7)))
    # The recipient meets anyone (never the sender, unless drawn) with cuts, until complete.
    for _ in range(40):
        if AttachmentComplete(attachment_id=ref.attachment_id) in recipient.events:
            break
        peer = data.draw(st.sampled_from([*relays, sender]))
        meet(peer, recipient, cut_after=data.draw(st.integers(0, 3)))
    else:
        meet(sender, recipient)  # whatever the relays lacked, the sender still has
    assert reassembled(recipient, ref) == content
    assert recipient.stored == len(recipient.chunks_of(ref.attachment_id))  # nothing twice
    assert all(not node.violations for node in (sender, recipient, *relays))


def test_a_forged_chunk_is_refused_by_a_relay_without_the_key() -> None:
    a, b = FakeNode("a"), FakeNode("b")
    ref = sealed(a, payload())
    proof, body = a.disk[(ref.attachment_id, 2)]
    a.disk[(ref.attachment_id, 2)] = (proof, bytes([body[0] ^ 1]) + body[1:])
    meet(a, b)
    (violation,) = b.violations
    assert violation[1] is CloseReason.MALFORMED
    assert "does not match the attachment's chunk map" in violation[2]
    assert 2 not in b.chunks_of(ref.attachment_id)
    assert b.stored == len(b.chunks_of(ref.attachment_id))


def test_an_unasked_chunk_closes_the_link() -> None:
    a, b = FakeNode("a"), FakeNode("b")
    ref = sealed(a, payload())
    b.carrier.link_up(7, a.peer_id, Tier.VERIFIED)
    proof, body = a.disk[(ref.attachment_id, 0)]
    b.carrier.handle(7, Chunk(attachment_id=ref.attachment_id, index=0, proof=proof, data=body), 0)
    assert b.violations[0][2] == "a chunk that was not asked for"
    assert b.effects == []


def test_a_chunk_map_that_does_not_match_the_id_is_refused() -> None:
    a, b = FakeNode("a"), FakeNode("b")
    ref = sealed(a, payload())
    other = sealed(FakeNode("x"), payload(seed=2), seed=3)
    entry = HoldingEntry(
        attachment_id=ref.attachment_id, manifest=other.manifest, expiry_at=10**12,
        copies=3, bits=b"\xfc",
    )  # fmt: skip
    b.carrier.link_up(7, a.peer_id, Tier.VERIFIED)
    b.carrier.handle(7, ChunkHoldings(entries=(entry,)), 0)
    mismatch = "the chunk map does not match the attachment id"
    assert b.violations == [(7, CloseReason.MALFORMED, mismatch)]
    assert ref.attachment_id not in b.carrier.table


def test_nothing_is_lost_or_fetched_twice_across_restarts() -> None:
    a, b, c = FakeNode("a"), FakeNode("b"), FakeNode("c")
    data = payload()
    ref = sealed(a, data)
    c.carrier.want(ref, peer_id=a.peer_id, message_id=b"m" * 16, expiry_at=1e9, now=0)
    assert meet(a, b, cut_after=2) == 2
    b.restart()
    assert b.carrier.table.get(ref.attachment_id) is not None
    assert meet(a, b) == 4  # only the four it lacked
    c.restart()
    meet(b, c, cut_after=3)
    c.restart()
    a.restart()
    meet(a, c)
    assert reassembled(c, ref) == data
    assert c.stored == 6
    assert b.stored == 6


def test_copy_budget_is_per_attachment_and_binary() -> None:
    config = NodeConfig(routing=RoutingConfig(copies=4))
    a = FakeNode("a", config=config)
    b, c, d = (FakeNode(n, config=config) for n in "bcd")
    ref = sealed(a, payload())
    meet(a, b)
    assert a.carrier.table.items[ref.attachment_id].copies == 2
    assert b.carrier.table.items[ref.attachment_id].copies == 2
    meet(a, c)
    assert a.carrier.table.items[ref.attachment_id].copies == 1
    meet(a, d, cut_after=0)  # wait phase: nothing offered, nothing taken
    meet(a, d)
    assert ref.attachment_id not in d.carrier.table


def test_strangers_quota_and_eviction_keeps_near_complete() -> None:
    # Room for three six-chunk attachments (308,320 B each); strangers may fill two thirds,
    # one stranger a third.
    small = AttachConfig(
        max_store_bytes=950_000, strangers_total_fraction=0.7, stranger_quota_fraction=0.35
    )
    config = NodeConfig(attach=small)
    relay = FakeNode("relay", config=config)
    senders = [FakeNode(f"s{i}") for i in range(4)]
    refs = [sealed(s, payload(seed=i), seed=i) for i, s in enumerate(senders)]
    meet(senders[0], relay, tier_ba=Tier.STRANGER)
    meet(senders[1], relay, tier_ba=Tier.STRANGER)
    meet(senders[2], relay, tier_ba=Tier.CONTACT, cut_after=1)
    assert {i.attachment_id for i in relay.carrier.table.items.values()} == {
        refs[0].attachment_id,
        refs[1].attachment_id,
        refs[2].attachment_id,
    }
    # A verified contact's attachment needs room: a stranger's copy goes, the contact's
    # barely started one stays (a better tier), and of the strangers' the least complete goes.
    relay.carrier.table.items[refs[1].attachment_id].held.discard(0)
    meet(senders[3], relay, tier_ba=Tier.VERIFIED)
    kept = set(relay.carrier.table.items)
    assert refs[3].attachment_id in kept
    assert refs[1].attachment_id not in kept
    assert refs[0].attachment_id in kept
    assert AttachmentDropped(attachment_id=refs[1].attachment_id, reason="evicted") in relay.events
    assert relay.chunks_of(refs[1].attachment_id) == set()


def test_expired_relay_copies_are_deleted() -> None:
    a, b = FakeNode("a"), FakeNode("b")
    ref = sealed(a, payload(), expiry_at=100.0)
    meet(a, b)
    assert b.carrier.next_deadline() == 100.0
    b.carrier.on_timer(100.0)
    b.run_effects(100.0)
    assert b.chunks_of(ref.attachment_id) == set()
    assert ref.attachment_id not in b.carrier.table


def test_large_attachments_wait_for_the_user() -> None:
    config = NodeConfig(attach=AttachConfig(auto_download_max_bytes=CHUNK_BYTES))
    a, c = FakeNode("a"), FakeNode("c", config=config)
    ref = sealed(a, payload())
    assert c.carrier.want(ref, peer_id=a.peer_id, message_id=b"m" * 16, expiry_at=1e9, now=0) is (
        Role.PENDING
    )
    assert meet(a, c) == 0  # refused before any chunk is fetched
    c.carrier.fetch(ref.attachment_id, 0.0)
    assert meet(a, c) == 6


def test_direct_policy_hands_no_relay_copies() -> None:
    config = NodeConfig(routing=dataclasses.replace(RoutingConfig(), policy="direct"))
    a, b = FakeNode("a", config=config), FakeNode("b", config=config)
    sealed(a, payload())
    assert meet(a, b) == 0


def test_a_relay_copy_that_turns_out_to_be_ours_completes_as_ours() -> None:
    a, c = FakeNode("a"), FakeNode("c")
    data = payload()
    ref = sealed(a, data)
    meet(a, c, cut_after=2)  # C carries it before the message telling C it is C's arrives
    assert c.carrier.table.items[ref.attachment_id].role is Role.RELAY
    c.carrier.want(ref, peer_id=a.peer_id, message_id=b"m" * 16, expiry_at=1e9, now=0)
    assert c.carrier.table.items[ref.attachment_id].role is Role.WANTED
    meet(a, c)
    assert reassembled(c, ref) == data
    assert c.stored == 6
    assert AttachmentComplete(attachment_id=ref.attachment_id) in c.events


def test_a_relay_copy_over_the_download_limit_that_turns_out_to_be_ours_waits() -> None:
    """Holdings may come before the message (on a link that is up they do): C takes a relay
    copy, then learns the file is its own and over its automatic download size. It keeps the
    chunks it has and fetches no more until the user asks."""
    config = NodeConfig(attach=AttachConfig(auto_download_max_bytes=CHUNK_BYTES))
    a, c = FakeNode("a"), FakeNode("c", config=config)
    data = payload()
    ref = sealed(a, data)
    meet(a, c, cut_after=2)
    assert c.carrier.want(ref, peer_id=a.peer_id, message_id=b"m" * 16, expiry_at=1e9, now=0) is (
        Role.PENDING
    )
    assert meet(a, c) == 0
    c.carrier.fetch(ref.attachment_id, 0.0)
    assert meet(a, c) == 4
    assert reassembled(c, ref) == data
    assert AttachmentComplete(attachment_id=ref.attachment_id) in c.events


def test_a_file_carried_whole_before_it_was_ours_completes_when_the_user_asks() -> None:
    config = NodeConfig(attach=AttachConfig(auto_download_max_bytes=CHUNK_BYTES))
    a, c = FakeNode("a"), FakeNode("c", config=config)
    ref = sealed(a, payload())
    meet(a, c)  # all six chunks, as a relay copy
    c.carrier.want(ref, peer_id=a.peer_id, message_id=b"m" * 16, expiry_at=1e9, now=0)
    assert AttachmentComplete(attachment_id=ref.attachment_id) in c.events  # whole: it is done


def test_a_slow_disk_holds_back_requests() -> None:
    """Chunks handed to the driver count against the link until stored: a disk slower than the
    link cannot make chunk bodies pile up in the driver's queue beyond ``chunks_unstored`` (two
    windows: one being synced, one fetched meanwhile)."""
    a, b = FakeNode("a"), FakeNode("b")
    count = b.config.attach.chunks_unstored + 4
    ref = sealed(a, payload(count * CHUNK_BYTES))
    b.hold_stores = True
    meet(a, b)
    # ``chunks_unstored`` chunks waiting for the disk, no more asked.
    assert len(b.effects) == b.config.attach.chunks_unstored
    b.hold_stores = False
    meet(a, b)
    assert b.chunks_of(ref.attachment_id) == set(range(count))


def test_requests_go_out_in_batches_not_one_per_chunk() -> None:
    """While chunks asked of a link are on their way, the next request waits until it can ask
    ``request_batch`` of them: one request (one wake-up and one disk read for the sender) per
    batch. Before, every chunk that arrived was followed by a request for one more."""
    a, b = FakeNode("a", CONFIG), FakeNode("b", CONFIG)
    limits = b.config.attach
    count = 3 * limits.requests_in_flight + 5
    ref = sealed(a, payload(count * CHUNK_BYTES))
    sizes: list[int] = []
    send = b.send

    def recording(link: int, record: Record) -> None:
        if isinstance(record, ChunkRequest):
            sizes.append(len(record.indexes))
        send(link, record)

    b.send = recording  # type: ignore[method-assign]
    assert meet(a, b) == count
    assert b.chunks_of(ref.attachment_id) == set(range(count))
    assert sum(sizes) == count
    assert sizes[0] == limits.requests_in_flight
    assert all(size >= limits.request_batch for size in sizes[:-1])  # the last: what is left
    assert len(sizes) <= 1 + -(-(count - limits.requests_in_flight) // limits.request_batch)


def test_a_lone_chunk_is_still_asked_when_nothing_is_in_flight() -> None:
    """The batch never stalls a transfer: with nothing asked, any room is used (here the disk
    holds all but a few chunks back, so less than a batch fits)."""
    config = NodeConfig(attach=AttachConfig(chunks_unstored=20, requests_in_flight=16))
    a, b = FakeNode("a"), FakeNode("b", config=config)
    ref = sealed(a, payload(40 * CHUNK_BYTES))
    b.hold_stores = True
    meet(a, b)  # 16 asked and received, then 4 more asked (less than a batch of 8), held
    assert len(b.effects) == 20
    b.hold_stores = False
    meet(a, b)
    assert b.chunks_of(ref.attachment_id) == set(range(40))


def test_persisted_states_decode_strictly() -> None:
    from meshmsg.core.attach.wirestate import decode_states
    from meshmsg.core.effects import RecordKind, StoredRecord
    from meshmsg.errors import StorageError

    a = FakeNode("a")
    sealed(a, payload())
    records = [StoredRecord(kind=k, key=key, value=v) for (k, key), v in a.records.items()]
    states, done = decode_states(records, a.config.wire)
    assert (len(states), done) == (1, [])
    bad = StoredRecord(kind=RecordKind.ATTACHMENT_DONE, key=b"x", value=records[0].value)
    with pytest.raises(StorageError, match="another type"):
        decode_states([bad], a.config.wire)
    with pytest.raises(StorageError, match="damaged"):
        decode_states([StoredRecord(kind=RecordKind.ATTACHMENT, key=b"x", value=b"\xff")],
                      a.config.wire)  # fmt: skip


def test_a_peer_cannot_make_us_keep_unbounded_holdings() -> None:
    config = NodeConfig(attach=AttachConfig(max_peer_holdings_bytes=2))
    a, b = FakeNode("a"), FakeNode("b", config=config)
    first, second = sealed(a, payload(), seed=1), sealed(a, payload(), seed=2)
    refs = (first, second, sealed(a, payload(), seed=3))
    entries = [
        HoldingEntry(
            attachment_id=r.attachment_id,
            manifest=r.manifest,
            expiry_at=10**12,
            copies=0,
            bits=b"\xfc",
        )
        for r in refs
    ]
    b.carrier.link_up(7, a.peer_id, Tier.STRANGER)
    b.carrier.handle(7, ChunkHoldings(entries=tuple(entries[:2])), 0)
    b.carrier.handle(7, ChunkHoldings(entries=tuple(entries[:2])), 0)  # the same again: no more
    assert b.violations == []
    b.carrier.handle(7, ChunkHoldings(entries=(entries[2],)), 0)
    assert b.violations == [(7, CloseReason.LIMIT_REACHED, "too many holdings advertised")]


def test_advertised_copies_are_capped_and_the_table_is_bounded() -> None:
    a = FakeNode("a")
    b = FakeNode("b", config=NodeConfig(attach=AttachConfig(max_attachments=1)))
    ref = sealed(a, payload())
    entry = HoldingEntry(attachment_id=ref.attachment_id, manifest=ref.manifest,
                         expiry_at=10**12, copies=60_000, bits=b"\xfc")  # fmt: skip
    b.carrier.link_up(7, a.peer_id, Tier.VERIFIED)
    b.carrier.handle(7, ChunkHoldings(entries=(entry,)), 0)
    assert b.carrier.table.items[ref.attachment_id].copies == NodeConfig().routing.copies
    other = sealed(a, payload(), seed=5)
    entry = HoldingEntry(attachment_id=other.attachment_id, manifest=other.manifest,
                         expiry_at=10**12, copies=3, bits=b"\xfc")  # fmt: skip
    b.carrier.handle(7, ChunkHoldings(entries=(entry,)), 0)
    assert other.attachment_id not in b.carrier.table  # full: no second relay copy
