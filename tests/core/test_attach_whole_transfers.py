"""``attach.resume_cut_transfers = false``: a cut hop loses its chunks (simulator research)."""

from __future__ import annotations

import dataclasses
import random

from meshmsg.config import NodeConfig
from meshmsg.core.attach.format import CHUNK_BYTES
from meshmsg.core.events import AttachmentComplete
from tests.core.attach_mesh import CONFIG, FakeNode, meet, reassembled, sealed

SIZE = 5 * CHUNK_BYTES + 777  # six chunks


def whole() -> NodeConfig:
    return CONFIG.replace(attach=dataclasses.replace(CONFIG.attach, resume_cut_transfers=False))


def test_resuming_is_the_default() -> None:
    assert NodeConfig().attach.resume_cut_transfers


def test_a_cut_loses_the_chunks_and_the_next_meeting_starts_over() -> None:
    data = random.Random(1).randbytes(SIZE)
    sender, recipient = FakeNode("s"), FakeNode("t", config=whole())
    ref = sealed(sender, data)
    recipient.carrier.want(ref, peer_id=sender.peer_id, message_id=b"m" * 16, expiry_at=1e9, now=0)
    assert meet(sender, recipient, cut_after=4) == 4
    assert recipient.chunks_of(ref.attachment_id) == set()  # nothing kept from the cut hop
    assert meet(sender, recipient, cut_after=5) == 5  # five more: still not the whole file
    assert recipient.chunks_of(ref.attachment_id) == set()
    assert meet(sender, recipient) == 6  # a contact long enough: all six, from zero
    assert reassembled(recipient, ref) == data
    assert AttachmentComplete(attachment_id=ref.attachment_id) in recipient.events


def test_resumable_keeps_what_arrived() -> None:
    data = random.Random(2).randbytes(SIZE)
    sender, recipient = FakeNode("s"), FakeNode("t")
    ref = sealed(sender, data)
    recipient.carrier.want(ref, peer_id=sender.peer_id, message_id=b"m" * 16, expiry_at=1e9, now=0)
    assert meet(sender, recipient, cut_after=4) == 4
    assert len(recipient.chunks_of(ref.attachment_id)) == 4
    assert meet(sender, recipient) == 2
    assert reassembled(recipient, ref) == data


def test_a_relay_cut_mid_file_keeps_its_copy_and_fetches_it_again() -> None:
    data = random.Random(3).randbytes(SIZE)
    sender, relay = FakeNode("s"), FakeNode("r", config=whole())
    ref = sealed(sender, data)
    assert meet(sender, relay, cut_after=3) == 3
    item = relay.carrier.table.get(ref.attachment_id)
    assert item is not None  # the entry and its copy budget stay
    assert item.held.held == 0
    assert relay.chunks_of(ref.attachment_id) == set()
    assert meet(sender, relay) == 6
    assert relay.chunks_of(ref.attachment_id) == set(range(6))
