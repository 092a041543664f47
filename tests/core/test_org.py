"""Organisation key, signed entries, revocations and the directory: round trips and refusals."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmsg.config import OrgLimits
from meshmsg.core.identity import Identity
from meshmsg.core.org.directory import Directory, OrgBook, OrgStatus, build_directory
from meshmsg.core.org.keys import (
    OrgSecret,
    SignedEntry,
    decode_entry_text,
    decode_org_code,
)
from meshmsg.errors import DirectoryError
from meshmsg.sim.rng import SeededRng

LIMITS = OrgLimits()
NOW = 1_800_000_000
YEAR = 365 * 86_400


def _org(label: str) -> OrgSecret:
    return OrgSecret.generate(SeededRng(11, label), "Ministry of Tests")


ORG, OTHER = _org("org"), _org("other")
PEOPLE = [Identity.generate(SeededRng(i, "member")) for i in range(5)]


def entry(i: int, org: OrgSecret = ORG, *, expires_at: int = NOW + YEAR) -> SignedEntry:
    return org.sign_entry(
        PEOPLE[i].public, name=f"Person {i}", unit="Unit A" if i % 2 else "Unit B",
        role="duty officer" if i == 0 else "analyst", expires_at=expires_at,
    )  # fmt: skip


def directory(serial: int, *, revoked: tuple[int, ...] = (), org: OrgSecret = ORG) -> Directory:
    revocations = [org.revoke(PEOPLE[i].public.identity_key, revoked_at=NOW) for i in revoked]
    return build_directory(
        org, serial=serial, issued_at=NOW, entries=[entry(i, org) for i in range(5)],
        revocations=revocations, limits=LIMITS,
    )  # fmt: skip


def joined_book() -> OrgBook:
    book = OrgBook(LIMITS)
    book.join(decode_org_code(ORG.public.code()))
    return book


def test_org_code_and_key_file_round_trip() -> None:
    code = ORG.public.code()
    assert code.startswith("MMORG1:")
    assert decode_org_code(code.lower()) == ORG.public
    assert OrgSecret.from_bytes(ORG.to_bytes()) == ORG
    with pytest.raises(DirectoryError, match="checksum"):
        decode_org_code(code[:-2] + ("0" if code[-2] != "0" else "1") + code[-1])
    with pytest.raises(DirectoryError, match="should start with"):
        decode_org_code("MM1:ABC")


def test_entry_round_trip_in_text_form() -> None:
    signed = entry(0)
    back = decode_entry_text(signed.text(), ORG.public.key)
    assert (back.name, back.unit, back.role) == ("Person 0", "Unit B", "duty officer")
    assert back.member == PEOPLE[0].public


def test_a_forged_entry_is_refused() -> None:
    signed = entry(1)
    forged = bytearray(signed.data)
    forged[-70] ^= 1  # inside the role text, under the signature
    with pytest.raises(DirectoryError, match="signature"):
        SignedEntry.parse(bytes(forged), ORG.public.key)


def test_an_entry_signed_by_another_organisation_is_refused() -> None:
    with pytest.raises(DirectoryError, match="not this organisation"):
        SignedEntry.parse(entry(1, OTHER).data, ORG.public.key)


def test_directory_round_trip_search_and_status() -> None:
    book = joined_book()
    book.accept(ORG.public.org_id, directory(1).data)
    found = book.search("duty", NOW)
    assert [e.name for _, e in found] == ["Person 0"]
    assert len(book.search("unit a", NOW)) == 2
    [membership] = book.status(PEOPLE[3].public.peer_id, NOW)
    assert membership.status is OrgStatus.MEMBER
    assert book.status(Identity.generate(SeededRng(99, "x")).public.peer_id, NOW) == []


def test_a_replayed_older_directory_is_refused() -> None:
    book = joined_book()
    old, new = directory(1), directory(2, revoked=(3,))
    book.accept(ORG.public.org_id, new.data)
    for replay in (old, new):
        with pytest.raises(DirectoryError, match="not newer"):
            book.accept(ORG.public.org_id, replay.data)
    assert book.revoked(PEOPLE[3].public.peer_id)


def test_a_revocation_removes_the_mark() -> None:
    book = joined_book()
    book.accept(ORG.public.org_id, directory(1).data)
    peer = PEOPLE[2].public.peer_id
    assert book.status(peer, NOW)[0].status is OrgStatus.MEMBER
    book.accept(ORG.public.org_id, directory(2, revoked=(2,)).data)
    assert book.status(peer, NOW)[0].status is OrgStatus.REVOKED
    assert all(e.peer_id != peer for _, e in book.search("person", NOW))


def test_expired_entries_are_not_members() -> None:
    book = joined_book()
    stale = entry(4, expires_at=NOW - 1)
    signed = build_directory(
        ORG, serial=1, issued_at=NOW, entries=[stale], revocations=[], limits=LIMITS
    )
    book.accept(ORG.public.org_id, signed.data)
    assert book.status(PEOPLE[4].public.peer_id, NOW)[0].status is OrgStatus.EXPIRED
    assert book.search("person", NOW) == []


def test_refusals_unknown_org_other_org_forged_directory_and_bounds() -> None:
    book = joined_book()
    with pytest.raises(DirectoryError, match="did not join"):
        book.accept(OTHER.public.org_id, directory(1, org=OTHER).data)
    with pytest.raises(DirectoryError, match="another organisation"):
        book.accept(ORG.public.org_id, directory(1, org=OTHER).data)
    forged = bytearray(directory(1).data)
    forged[60] ^= 1
    with pytest.raises(DirectoryError):
        book.accept(ORG.public.org_id, bytes(forged))
    small = dataclasses.replace(LIMITS, max_directory_entries=2)
    with pytest.raises(DirectoryError, match="more than 2 entries"):
        Directory.parse(directory(1).data, ORG.public.key, small)
    tiny = dataclasses.replace(LIMITS, max_orgs=1)
    two = OrgBook(tiny)
    two.join(ORG.public)
    with pytest.raises(DirectoryError, match="already in 1"):
        two.join(OTHER.public)


def test_a_directory_of_200_members_is_bounded_and_verifies() -> None:
    people = [Identity.generate(SeededRng(i, "many")) for i in range(200)]
    entries = [
        ORG.sign_entry(p.public, name=f"Member {i}", unit="Ops", role="", expires_at=NOW + YEAR)
        for i, p in enumerate(people)
    ]
    big = build_directory(
        ORG, serial=7, issued_at=NOW, entries=entries, revocations=[], limits=LIMITS
    )
    assert len(big.data) < 60_000  # ~270 B per member
    book = joined_book()
    book.accept(ORG.public.org_id, big.data)
    assert [e.name for _, e in book.search("member 199", NOW)] == ["Member 199"]


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_are_refused_with_directory_error(data: bytes) -> None:
    for parse in (
        lambda: Directory.parse(data, ORG.public.key, LIMITS),
        lambda: SignedEntry.parse(data, ORG.public.key),
    ):
        with pytest.raises(DirectoryError):
            parse()


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(0, 2_000), flip=st.integers(0, 2_000))
def test_truncated_or_flipped_directories_are_refused(cut: int, flip: int) -> None:
    data = directory(1).data
    with pytest.raises(DirectoryError):
        Directory.parse(data[: cut % len(data)], ORG.public.key, LIMITS)
    flipped = bytearray(data)
    flipped[flip % len(data)] ^= 0x40
    with pytest.raises(DirectoryError):
        Directory.parse(bytes(flipped), ORG.public.key, LIMITS)
