"""The request book: quotas per sender, per book and in bytes; blocks; persistence form."""

from __future__ import annotations

import pytest

from meshmsg.config import FirstContactConfig
from meshmsg.core.identity import Identity
from meshmsg.core.requests import Admission, Request, RequestBook
from meshmsg.errors import StorageError
from meshmsg.sim.rng import SeededRng

LIMITS = FirstContactConfig(max_requests=3, max_request_messages=2, max_request_bytes=100,
                            max_blocked=2)  # fmt: skip
PEOPLE = [Identity.generate(SeededRng(i, "req")).public for i in range(6)]


def test_quotas_per_sender_senders_and_bytes() -> None:
    book = RequestBook(LIMITS)
    for i in range(3):
        assert book.admit(PEOPLE[i], 10) is Admission.ACCEPTED
        book.add(PEOPLE[i], bytes([i]) * 16, 10, now=float(i))
    assert book.admit(PEOPLE[3], 1) is Admission.TOO_MANY_SENDERS
    book.add(PEOPLE[0], b"x" * 16, 10, now=5.0)
    assert book.admit(PEOPLE[0], 1) is Admission.SENDER_FULL
    assert book.admit(PEOPLE[1], 71) is Admission.BYTES_FULL
    assert book.admit(PEOPLE[1], 60) is Admission.ACCEPTED
    assert [r.peer_id for r in book] == [p.peer_id for p in PEOPLE[:3]]
    removed = book.remove(PEOPLE[0].peer_id)
    assert removed is not None
    assert len(removed.message_ids) == 2
    assert book.admit(PEOPLE[3], 80) is Admission.ACCEPTED  # its bytes and slot were freed


def test_block_is_bounded_and_refuses() -> None:
    book = RequestBook(LIMITS)
    assert book.block(PEOPLE[0].peer_id) == []
    assert book.admit(PEOPLE[0], 1) is Admission.BLOCKED
    book.block(PEOPLE[1].peer_id)
    assert book.block(PEOPLE[2].peer_id) == [PEOPLE[0].peer_id]  # oldest forgotten first
    assert book.unblock(PEOPLE[1].peer_id)
    assert not book.unblock(PEOPLE[1].peer_id)
    assert book.blocked == [PEOPLE[2].peer_id]


def test_request_bytes_round_trip_and_damage() -> None:
    request = Request(sender=PEOPLE[4], first_at=1234.5)
    back = Request.from_bytes(request.to_bytes())
    assert (back.sender, back.first_at) == (PEOPLE[4], 1234.5)
    for bad in (request.to_bytes()[:-1], b"\x02" + request.to_bytes()[1:]):
        with pytest.raises(StorageError):
            Request.from_bytes(bad)
