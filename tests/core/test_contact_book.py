"""The contact book: bounded, found by peer id and by Noise key, re-adding replaces the old
entry in both indexes, and removal forgets both."""

from __future__ import annotations

import pytest

from meshmsg.core.contacts import Contact, ContactBook
from meshmsg.core.identity import Identity
from meshmsg.errors import LocalProtocolError
from meshmsg.sim.rng import SeededRng

PEOPLE = [Identity.generate(SeededRng(i, "book")).public for i in range(3)]


def _contact(i: int, name: str = "x") -> Contact:
    return Contact(public=PEOPLE[i], name=name, verified=False, added_at=0.0)


def test_the_book_is_bounded_and_indexed_both_ways() -> None:
    book = ContactBook(max_contacts=2)
    first, second = _contact(0), _contact(1)
    book.add(first)
    book.add(second)
    with pytest.raises(LocalProtocolError, match=r"contact list full \(2 contacts\)"):
        book.add(_contact(2))
    renamed = _contact(0, "renamed")
    book.add(renamed)  # the same peer again: replaces, never counts twice
    assert len(book) == 2
    assert book.get(first.peer_id) is renamed
    assert book.by_noise_key(PEOPLE[0].noise_key) is renamed
    assert book.require(second.peer_id) is second
    with pytest.raises(LocalProtocolError, match="unknown contact"):
        book.require(PEOPLE[2].peer_id)


def test_removal_forgets_both_indexes_and_unknown_peers_are_none() -> None:
    book = ContactBook(max_contacts=5)
    contact = _contact(0)
    book.add(contact)
    assert book.remove(contact.peer_id) is contact
    assert book.get(contact.peer_id) is None
    assert book.by_noise_key(PEOPLE[0].noise_key) is None
    assert book.remove(contact.peer_id) is None
    assert list(book) == []
