"""Attachments on a link that stays up (#13, #17 item 2): no chunk waits for the next meeting.

An attachment sealed, taken or wanted while links are up is advertised and pulled on those
links at once, the way mail is offered on them: on a LAN a link lasts hours, and "the next
meeting" may never come. Every test here connects each pair once and never again.
"""

from __future__ import annotations

import random

from meshmsg.config import AttachConfig, NodeConfig
from meshmsg.core.attach.assembly import Bitfield
from meshmsg.core.attach.records import ChunkHoldings
from meshmsg.core.attach.table import Role
from meshmsg.core.events import AttachmentComplete, MessageReceived
from meshmsg.core.store import Tier
from meshmsg.core.wire import decode_records
from tests.core.attach_mesh import CONFIG, REGISTRY, FakeNode, meet, sealed
from tests.core.test_attach_node import SIZE, opened, seal_into
from tests.helpers import Mesh

# The bound of #17 item 2 for anything that becomes due while a link is up, on an idle link.
BOUND_S = 1.0


def complete(mesh: Mesh, name: str) -> list[bytes]:
    return [e.attachment_id for e in mesh.of_type(name, AttachmentComplete)]


def test_a_file_sent_on_a_link_that_is_up_follows_its_message_on_it() -> None:
    mesh = Mesh(["a", "c"])
    mesh.befriend("a", "c", pair=True)
    mesh.connect("a", "c")
    data = random.Random(5).randbytes(SIZE)
    ref = seal_into(mesh, "a", data)
    mesh.nodes["a"].send_files(mesh.peer_id("c"), "the map", [ref], now=mesh.now)
    mesh.run()
    mesh.advance(BOUND_S)
    assert [r.body for r in mesh.of_type("c", MessageReceived)] == ["the map"]
    assert complete(mesh, "c") == [ref.attachment_id]
    assert mesh.chunks_written["c"] == 6
    assert opened(mesh, "c", ref) == data


def test_a_file_the_user_asks_for_comes_on_the_link_that_is_up() -> None:
    """Over the automatic download size, it waits for the user; asked for, it comes at once.
    A's holdings reach C before the message: C starts a relay copy, then stops at the message
    (one chunk in flight per link here, so it stops short of the whole file)."""
    attach = AttachConfig(auto_download_max_bytes=1_000, requests_in_flight=1)
    mesh = Mesh(["a", "c"], config=NodeConfig(attach=attach))
    mesh.befriend("a", "c", pair=True)
    mesh.connect("a", "c")
    data = random.Random(6).randbytes(SIZE)
    ref = seal_into(mesh, "a", data)
    mesh.nodes["a"].send_files(mesh.peer_id("c"), "the big map", [ref], now=mesh.now)
    mesh.run()
    mesh.advance(BOUND_S)
    assert mesh.nodes["c"].attachments[ref.attachment_id].role is Role.PENDING
    before = mesh.chunks_written["c"]
    assert before < 6
    mesh.nodes["c"].fetch_attachment(ref.attachment_id, now=mesh.now)
    mesh.run()
    mesh.advance(BOUND_S)
    assert complete(mesh, "c") == [ref.attachment_id]
    assert mesh.chunks_written["c"] == 6  # none fetched twice
    assert opened(mesh, "c", ref) == data


def test_chunks_a_relay_takes_are_advertised_on_its_other_links_as_they_arrive() -> None:
    """A and C are never linked; B is linked to both the whole time. B's copy of the file is
    advertised to C chunk by chunk, so C's pull does not wait for B to meet C again."""
    mesh = Mesh(["a", "b", "c"], config=NodeConfig(attach=AttachConfig(requests_in_flight=1)))
    mesh.befriend("a", "c", pair=True)
    mesh.connect("b", "c")
    mesh.connect("a", "b")
    data = random.Random(7).randbytes(SIZE)
    ref = seal_into(mesh, "a", data)
    mesh.nodes["a"].send_files(mesh.peer_id("c"), "via b", [ref], now=mesh.now)
    mesh.run()
    mesh.advance(BOUND_S)
    assert [r.body for r in mesh.of_type("c", MessageReceived)] == ["via b"]
    assert complete(mesh, "c") == [ref.attachment_id]
    assert opened(mesh, "c", ref) == data
    assert not mesh.linked("a", "c")


def test_a_relay_tells_its_other_links_a_bounded_number_of_times_per_attachment() -> None:
    """B fetches six chunks from A while linked to C: C hears of them every third chunk
    (``holdings_updates_per_attachment`` = 2), not after each one nor only at the next meeting."""
    config = NodeConfig(attach=AttachConfig(holdings_updates_per_attachment=2))
    a, b = FakeNode("a", config=config), FakeNode("b", config=config)
    to_c = 1_000_000  # a link id meet() never uses
    b.carrier.link_up(to_c, b"c" * 16, Tier.VERIFIED)
    ref = sealed(a, random.Random(8).randbytes(SIZE))
    assert meet(a, b) == 6
    told = [decode_records(data, REGISTRY, CONFIG.wire) for link, data in b.outbox if link == to_c]
    entries = [e for (record,) in told if isinstance(record, ChunkHoldings)
               for e in record.entries]  # fmt: skip
    assert {e.attachment_id for e in entries} == {ref.attachment_id}
    assert [Bitfield(6, e.bits).held for e in entries] == [3, 6]
