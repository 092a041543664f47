"""Organisations on disk and the refusals of the organisation codes, key files, entries and
revocations: every malformed field gets a DirectoryError naming it, a damaged record a
StorageError, and a stored organisation comes back with the same directory."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmsg.config import OrgLimits
from meshmsg.core.effects import RecordKind, StoredRecord
from meshmsg.core.identity import Identity, b32encode
from meshmsg.core.org import orgcodec
from meshmsg.core.org.directory import OrgBook, OrgStatus, build_directory
from meshmsg.core.org.keys import (
    ENTRY_PREFIX,
    ORG_PREFIX,
    REVOCATION_BYTES,
    OrgSecret,
    Revocation,
    SignedEntry,
    _checksum,
    check_label,
    decode_entry_text,
    decode_org_code,
)
from meshmsg.errors import DirectoryError, StorageError
from meshmsg.sim.rng import SeededRng

LIMITS = OrgLimits()
NOW = 1_800_000_000
ORG = OrgSecret.generate(SeededRng(3, "org"), "Civil Protection")
OTHER = OrgSecret.generate(SeededRng(4, "org"), "Other Agency")
PEOPLE = [Identity.generate(SeededRng(i, "org-member")) for i in range(3)]


def _text(prefix: str, body: bytes) -> str:
    """A text form with a correct checksum around ``body`` (so only the body is at fault)."""
    return prefix + b32encode(body + _checksum(body))


def _entry(i: int) -> SignedEntry:
    return ORG.sign_entry(
        PEOPLE[i].public, name=f"Member {i}", unit="Logistics", role="", expires_at=NOW + 3600
    )


def _book_with_directory(serial: int = 1) -> OrgBook:
    book = OrgBook(LIMITS)
    book.join(ORG.public)
    revoked = ORG.revoke(PEOPLE[2].public.identity_key, revoked_at=NOW)
    signed = build_directory(
        ORG, serial=serial, issued_at=NOW, entries=[_entry(0), _entry(1)],
        revocations=[revoked], limits=LIMITS,
    )  # fmt: skip
    book.accept(ORG.public.org_id, signed.data)
    return book


# --- Persisted organisations (orgcodec) -------------------------------------------------------


def test_a_stored_organisation_comes_back_with_its_directory_and_refuses_its_replay() -> None:
    book = _book_with_directory(serial=5)
    record = orgcodec.org_record(book, ORG.public.org_id)
    assert record.kind is RecordKind.META
    assert record.key.startswith(orgcodec.ORG_KEY)
    restored = OrgBook(LIMITS)
    assert orgcodec.restore(restored, record) is True
    joined = restored.get(ORG.public.org_id)
    assert joined is not None
    assert joined.org == ORG.public
    held = book.get(ORG.public.org_id)
    assert held is not None
    assert held.directory is not None
    assert joined.directory is not None
    assert joined.directory.data == held.directory.data
    peer = PEOPLE[0].public.peer_id
    assert restored.status(peer, NOW) == book.status(peer, NOW)
    assert restored.status(PEOPLE[2].public.peer_id, NOW)[0].status is OrgStatus.REVOKED
    with pytest.raises(DirectoryError, match="not newer"):  # the serial survived the restart
        restored.accept(ORG.public.org_id, held.directory.data)


def test_a_stored_organisation_without_a_directory_comes_back_joined_only() -> None:
    book = OrgBook(LIMITS)
    book.join(ORG.public)
    restored = OrgBook(LIMITS)
    assert orgcodec.restore(restored, orgcodec.org_record(book, ORG.public.org_id))
    joined = restored.get(ORG.public.org_id)
    assert joined is not None
    assert joined.directory is None


def test_records_that_are_not_organisations_are_left_to_the_caller() -> None:
    book = OrgBook(LIMITS)
    record = StoredRecord(kind=RecordKind.META, key=b"cursor:x", value=b"\x00\x01")
    assert orgcodec.restore(book, record) is False
    assert len(book) == 0


def _damaged(value: bytes) -> StoredRecord:
    return StoredRecord(kind=RecordKind.META, key=orgcodec.ORG_KEY + b"\x00" * 16, value=value)


def test_damaged_organisation_records_raise_storage_error() -> None:
    good = orgcodec.org_record(_book_with_directory(), ORG.public.org_id).value
    code_end = 2 + struct.unpack(">H", good[:2])[0]
    cases = {
        "empty": b"",
        "length cut": good[:1],
        "code cut": good[: code_end - 3],
        "code not ascii": good[:2] + b"\xff" + good[3:],
        "directory cut": good[:-1],
        "directory flipped": good[:-5] + bytes([good[-5] ^ 1]) + good[-4:],
        "other org's directory": good[:code_end]
        + build_directory(
            OTHER, serial=1, issued_at=NOW, entries=[], revocations=[], limits=LIMITS
        ).data,
    }
    for value in cases.values():
        with pytest.raises(StorageError, match="persisted organisation is damaged"):
            orgcodec.restore(OrgBook(LIMITS), _damaged(value))


def test_restoring_more_organisations_than_the_limit_is_a_storage_error() -> None:
    one = OrgBook(dataclasses.replace(LIMITS, max_orgs=1))
    assert orgcodec.restore(one, orgcodec.org_record(_book_with_directory(), ORG.public.org_id))
    other = OrgBook(LIMITS)
    other.join(OTHER.public)
    with pytest.raises(StorageError, match="already in 1"):
        orgcodec.restore(one, orgcodec.org_record(other, OTHER.public.org_id))


# --- Labels -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "required", "reason"),
    [
        ("\ud800", False, "is not valid Unicode"),
        ("", True, "is empty"),
        ("x" * 65, False, "is longer than 64 bytes"),
        ("é" * 33, False, "is longer than 64 bytes"),  # 66 bytes in 33 characters
        ("a\nb", False, "contains control character U\\+000A"),
        ("abc\u202edcb", False, "contains control character U\\+202E"),
        ("a\u2028b", False, "contains control character U\\+2028"),
    ],
)
def test_labels_that_could_not_be_shown_safely_are_refused(
    text: str, required: bool, reason: str
) -> None:
    with pytest.raises(DirectoryError, match=f"unit {reason}"):
        check_label(text, "unit", required=required)


def test_labels_at_the_limit_pass_unchanged() -> None:
    assert check_label("", "role") == b""
    assert check_label("é" * 32, "role") == ("é" * 32).encode()


# --- Organisation codes and key files -----------------------------------------------------------


def _code_body(*, version: int = 1, key: bytes | None = None, name: bytes = b"Org") -> bytes:
    return bytes([version]) + (key or ORG.public.key) + bytes([len(name)]) + name


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (ORG_PREFIX + "U", "organisation code: invalid character"),
        (ORG_PREFIX + "01", "organisation code: not canonical"),
        (ORG_PREFIX, "checksum mismatch"),
        (_text(ORG_PREFIX, _code_body(version=2)), "unsupported version"),
        (_text(ORG_PREFIX, _code_body()[:20]), "organisation code: truncated"),
        (_text(ORG_PREFIX, _code_body() + b"!"), "organisation code: trailing bytes"),
        (_text(ORG_PREFIX, _code_body(name=b"")), "name is empty"),
        (_text(ORG_PREFIX, _code_body(name=b"\xc3")), "name is not UTF-8"),
        (_text(ORG_PREFIX, _code_body(name=b"a\x07")), "control character"),
    ],
)
def test_malformed_organisation_codes_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(DirectoryError, match=reason):
        decode_org_code(text)


def test_an_organisation_code_survives_spaces_dashes_and_case() -> None:
    code = ORG.public.code()
    body = code[len(ORG_PREFIX) :]
    spaced = ORG_PREFIX.lower() + " ".join(body[i : i + 4] for i in range(0, len(body), 4))
    assert decode_org_code(spaced.replace(" ", "-", 3)) == ORG.public


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"MMOX\x01" + bytes(32) + b"\x01a",
        b"MMOK\x02" + bytes(32) + b"\x01a",
        b"MMOK\x01" + bytes(31),
        b"MMOK\x01" + bytes(32) + b"\x00",
        b"MMOK\x01" + bytes(32) + b"\x01ab",
    ],
)
def test_malformed_organisation_key_files_are_refused(data: bytes) -> None:
    with pytest.raises(DirectoryError, match="organisation key"):
        OrgSecret.from_bytes(data)


def test_signing_refuses_what_the_format_cannot_hold() -> None:
    with pytest.raises(DirectoryError, match="expiry out of range"):
        ORG.sign_entry(PEOPLE[0].public, name="A", unit="", role="", expires_at=1 << 64)
    with pytest.raises(DirectoryError, match="member name is empty"):
        ORG.sign_entry(PEOPLE[0].public, name="", unit="", role="", expires_at=NOW)
    with pytest.raises(DirectoryError, match="bad identity key or time"):
        ORG.revoke(b"short", revoked_at=NOW)
    with pytest.raises(DirectoryError, match="bad identity key or time"):
        ORG.revoke(PEOPLE[0].public.identity_key, revoked_at=-1)


# --- Entries and revocations --------------------------------------------------------------------


def test_an_entry_with_another_version_or_a_broken_member_is_refused() -> None:
    data = _entry(0).data
    with pytest.raises(DirectoryError, match="entry: unsupported version"):
        SignedEntry.parse(b"\x02" + data[1:], ORG.public.key)
    broken = bytearray(data)
    broken[1] ^= 0xFF  # the member's public identity version byte
    with pytest.raises(DirectoryError, match=r"^entry: "):
        SignedEntry.parse(bytes(broken), ORG.public.key)
    with pytest.raises(DirectoryError, match="entry: truncated"):
        SignedEntry.parse(data[:64], ORG.public.key)


def test_an_entry_text_of_another_kind_or_with_a_typo_is_refused() -> None:
    text = _entry(1).text()
    assert decode_entry_text(text, ORG.public.key).name == "Member 1"
    with pytest.raises(DirectoryError, match="should start with 'MMENT1:'"):
        decode_entry_text(ORG.public.code(), ORG.public.key)
    typo = text[:-1] + ("0" if text[-1] != "0" else "1")
    with pytest.raises(DirectoryError, match="signed entry: "):
        decode_entry_text(typo, ORG.public.key)
    assert text.startswith(ENTRY_PREFIX)


def test_revocations_round_trip_and_refuse_length_version_and_signature() -> None:
    revocation = ORG.revoke(PEOPLE[1].public.identity_key, revoked_at=NOW)
    back = Revocation.parse(revocation.data, ORG.public.key)
    assert (back.peer_id, back.revoked_at) == (PEOPLE[1].public.peer_id, NOW)
    with pytest.raises(DirectoryError, match="wrong length"):
        Revocation.parse(revocation.data[:-1], ORG.public.key)
    with pytest.raises(DirectoryError, match="unsupported version"):
        Revocation.parse(b"\x02" + revocation.data[1:], ORG.public.key)
    with pytest.raises(DirectoryError, match="not this organisation"):
        Revocation.parse(revocation.data, OTHER.public.key)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(min_size=REVOCATION_BYTES, max_size=REVOCATION_BYTES))
def test_arbitrary_revocations_are_refused(data: bytes) -> None:
    with pytest.raises(DirectoryError):
        Revocation.parse(data, ORG.public.key)


@settings(max_examples=150, deadline=None)
@given(
    name=st.text(min_size=1, max_size=20).filter(lambda s: s.isprintable()),
    unit=st.text(max_size=20).filter(lambda s: s.isprintable()),
    expires_at=st.integers(0, (1 << 64) - 1),
)
def test_entries_round_trip_whatever_printable_labels_they_hold(
    name: str, unit: str, expires_at: int
) -> None:
    signed = ORG.sign_entry(PEOPLE[0].public, name=name, unit=unit, role="r", expires_at=expires_at)
    back = decode_entry_text(signed.text(), ORG.public.key)
    assert (back.name, back.unit, back.role, back.expires_at) == (name, unit, "r", expires_at)


def test_a_code_whose_key_is_no_curve_point_is_refused_at_the_first_signature() -> None:
    """The code itself carries only 32 bytes (VerifyKey checks nothing more); what it signs is
    refused with DirectoryError, not a crash."""
    org = decode_org_code(_text(ORG_PREFIX, _code_body(key=b"\xff" * 32)))
    with pytest.raises(DirectoryError, match="signature is not this organisation's"):
        SignedEntry.parse(_entry(0).data, org.key)


# --- Directory bounds and the book --------------------------------------------------------------


def test_directory_bounds_on_size_revocations_and_duplicates() -> None:
    revocations = [ORG.revoke(p.public.identity_key, revoked_at=NOW) for p in PEOPLE]
    signed = build_directory(
        ORG, serial=1, issued_at=NOW, entries=[], revocations=revocations, limits=LIMITS
    )
    few = dataclasses.replace(LIMITS, max_revocations=2)
    with pytest.raises(DirectoryError, match="more than 2 revocations"):
        build_directory(ORG, serial=1, issued_at=NOW, entries=[], revocations=revocations,
                        limits=few)  # fmt: skip
    small = dataclasses.replace(LIMITS, max_directory_bytes=len(signed.data) - 1)
    with pytest.raises(DirectoryError, match=f"larger than {len(signed.data) - 1} bytes"):
        build_directory(ORG, serial=1, issued_at=NOW, entries=[], revocations=revocations,
                        limits=small)  # fmt: skip
    with pytest.raises(DirectoryError, match="listed twice"):
        build_directory(ORG, serial=1, issued_at=NOW, entries=[_entry(0), _entry(0)],
                        revocations=[], limits=LIMITS)  # fmt: skip
    with pytest.raises(DirectoryError, match="listed twice"):
        build_directory(ORG, serial=1, issued_at=NOW, entries=[],
                        revocations=revocations[:1] * 2, limits=LIMITS)  # fmt: skip


def test_the_book_joins_once_leaves_and_skips_organisations_without_a_directory() -> None:
    book = _book_with_directory()
    assert book.join(ORG.public) is book.get(ORG.public.org_id)  # joining again changes nothing
    book.join(OTHER.public)  # no directory yet
    assert len(book) == 2
    assert {j.org for j in book} == {ORG.public, OTHER.public}
    assert [m.org for m in book.status(PEOPLE[0].public.peer_id, NOW)] == [ORG.public]
    assert [e.name for _, e in book.search("member", NOW)] == ["Member 0", "Member 1"]
    assert [e.name for _, e in book.search("member", NOW, limit=1)] == ["Member 0"]
    assert book.leave(ORG.public.org_id) is True
    assert book.leave(ORG.public.org_id) is False
    assert book.status(PEOPLE[0].public.peer_id, NOW) == []
    assert not book.revoked(PEOPLE[2].public.peer_id)
