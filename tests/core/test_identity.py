"""Identities, contact codes, safety numbers and fingerprints."""

from __future__ import annotations

import dataclasses
import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmsg.core import identity
from meshmsg.core.identity import (
    CHECKSUM_BYTES,
    IDENTITY_BYTES,
    PUBLIC_BYTES,
    ContactCard,
    Identity,
    PublicIdentity,
    b32decode,
    b32encode,
    decode_contact_code,
    encode_contact_code,
    fingerprint,
    parse_hint,
    peer_id_of,
    safety_hash,
    safety_number,
    safety_qr_matches,
    safety_qr_payload,
)
from meshmsg.errors import InvalidContactCode, KeystoreError
from meshmsg.sim.rng import SeededRng

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def make_identity(seed: int) -> Identity:
    return Identity.generate(SeededRng(seed, "identity"))


ALICE = make_identity(1)
BOB = make_identity(2)
CAROL = make_identity(3)
ALICE_CODE = encode_contact_code(ALICE.public, "Alice", ("192.168.1.5:7000", "[fe80::1]:7000"))


# --- Identity ------------------------------------------------------------------------------------


def test_generate_is_reproducible_from_the_rng(rng: SeededRng) -> None:
    first = Identity.generate(SeededRng(1234, "test"))
    assert Identity.generate(rng) == first
    assert make_identity(1) == ALICE
    assert make_identity(1).public == ALICE.public


def test_the_three_secrets_are_independent_draws() -> None:
    draws = SeededRng(1, "identity")
    expected = [draws.randbytes(32) for _ in range(3)]
    assert [ALICE.signing_seed, ALICE.noise_private, ALICE.e2e_private] == expected
    assert len({ALICE.public.identity_key, ALICE.public.noise_key, ALICE.public.e2e_key}) == 3


def test_identity_bytes_round_trip_with_version_byte() -> None:
    data = ALICE.to_bytes()
    assert len(data) == IDENTITY_BYTES == 97
    assert data[0] == 1
    assert Identity.from_bytes(data) == ALICE


@pytest.mark.parametrize(
    "data",
    [b"", ALICE.to_bytes()[:-1], ALICE.to_bytes() + b"\0", b"\x02" + ALICE.to_bytes()[1:]],
    ids=["empty", "short", "long", "version"],
)
def test_identity_from_bytes_is_strict(data: bytes) -> None:
    with pytest.raises(KeystoreError):
        Identity.from_bytes(data)


def test_identity_repr_hides_the_secrets() -> None:
    text = repr(ALICE)
    for secret in (ALICE.signing_seed, ALICE.noise_private, ALICE.e2e_private):
        assert repr(secret) not in text
    assert "signing_seed" not in text


def test_identity_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ALICE.signing_seed = b"x" * 32  # type: ignore[misc]


def test_identity_rejects_wrong_key_lengths() -> None:
    with pytest.raises(KeystoreError, match="noise_private"):
        Identity(signing_seed=b"s" * 32, noise_private=b"n" * 31, e2e_private=b"e" * 32)


# --- PublicIdentity ------------------------------------------------------------------------------


def test_public_identity_verifies_and_round_trips() -> None:
    ALICE.public.verify()
    data = ALICE.public.to_bytes()
    assert len(data) == PUBLIC_BYTES == 161
    assert PublicIdentity.from_bytes(data) == ALICE.public


def test_peer_id_is_a_domain_separated_hash_of_the_identity_key() -> None:
    key = ALICE.public.identity_key
    assert ALICE.peer_id == ALICE.public.peer_id == peer_id_of(key)
    assert len(ALICE.peer_id) == 16
    assert ALICE.peer_id != hashlib.blake2b(key, digest_size=16).digest()
    assert ALICE.peer_id != BOB.peer_id


@pytest.mark.parametrize("field", ["noise_key", "e2e_key"])
def test_keys_swapped_in_from_another_identity_fail_the_certificate(field: str) -> None:
    forged = dataclasses.replace(ALICE.public, **{field: getattr(BOB.public, field)})
    with pytest.raises(InvalidContactCode, match="bad signature"):
        forged.verify()
    with pytest.raises(InvalidContactCode, match="bad signature"):
        PublicIdentity.from_bytes(forged.to_bytes())


def test_a_certificate_cannot_be_moved_to_another_identity_key() -> None:
    forged = dataclasses.replace(BOB.public, identity_key=ALICE.public.identity_key)
    with pytest.raises(InvalidContactCode, match="bad signature"):
        forged.verify()


def test_the_certificate_is_domain_separated() -> None:
    # A plain signature over the two keys (no context string) is not a certificate.
    import nacl.signing

    plain = nacl.signing.SigningKey(ALICE.signing_seed).sign(
        ALICE.public.noise_key + ALICE.public.e2e_key
    )
    forged = dataclasses.replace(ALICE.public, certificate=plain.signature)
    with pytest.raises(InvalidContactCode):
        forged.verify()


def test_an_invalid_identity_point_is_a_contact_code_error() -> None:
    forged = dataclasses.replace(ALICE.public, identity_key=b"\xff" * 32)
    with pytest.raises(InvalidContactCode, match="bad signature"):
        forged.verify()


def test_public_identity_checks_lengths() -> None:
    with pytest.raises(InvalidContactCode, match="certificate"):
        dataclasses.replace(ALICE.public, certificate=b"\0" * 63)
    with pytest.raises(InvalidContactCode, match="version"):
        PublicIdentity.from_bytes(b"\x07" + ALICE.public.to_bytes()[1:])
    with pytest.raises(InvalidContactCode, match="161 bytes"):
        PublicIdentity.from_bytes(ALICE.public.to_bytes()[:-1])


# --- base32 --------------------------------------------------------------------------------------


@given(st.binary(max_size=64))
def test_base32_round_trips_and_is_qr_alphanumeric(data: bytes) -> None:
    text = b32encode(data)
    assert set(text) <= set(ALPHABET)
    assert b32decode(text) == data


def test_base32_reads_crockford_aliases() -> None:
    assert b32decode("OG") == b32decode("0G") == b"\x04"
    assert b32decode("IG") == b32decode("LG") == b32decode("1G") == b"\x0c"


@pytest.mark.parametrize("text", ["0", "000", "01", "U0"])
def test_base32_rejects_impossible_lengths_padding_and_letters(text: str) -> None:
    # "0"/"000": no byte string encodes to these lengths; "01": a non-zero padding bit.
    with pytest.raises(InvalidContactCode):
        b32decode(text)


# --- Contact codes -------------------------------------------------------------------------------

names = st.text(
    st.characters(
        exclude_categories=("Cc", "Cs", "Zl", "Zp"),
        exclude_characters="\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
    ),
    min_size=1,
    max_size=16,  # at most 64 UTF-8 bytes
)
labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
hosts = st.one_of(
    # A name of digits and dots must be an IPv4 address (one spelling per address).
    st.lists(labels, min_size=1, max_size=3)
    .map(".".join)
    .filter(lambda h: not h.replace(".", "").isdigit()),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
)
hint_lists = st.lists(
    st.builds(lambda h, p: f"{h}:{p}", hosts, st.integers(1, 65_535)), max_size=4, unique=True
)


def test_contact_code_text_form() -> None:
    assert ALICE_CODE.startswith("MM1:")
    assert re.fullmatch(r"MM1:[0-9A-HJKMNP-TV-Z]+", ALICE_CODE)
    bare = encode_contact_code(ALICE.public)
    assert len(bare) == 4 + (PUBLIC_BYTES + 2 + CHECKSUM_BYTES) * 8 // 5 + 1 == 273


def test_contact_code_round_trip() -> None:
    card = decode_contact_code(ALICE_CODE)
    assert card == ContactCard(
        public=ALICE.public, name="Alice", hints=("192.168.1.5:7000", "[fe80::1]:7000")
    )
    assert card.peer_id == ALICE.peer_id


@given(name=st.none() | names, hints=hint_lists)
def test_contact_code_round_trips_for_any_name_and_hints(
    name: str | None, hints: list[str]
) -> None:
    code = encode_contact_code(BOB.public, name, hints)
    assert decode_contact_code(code) == ContactCard(
        public=BOB.public, name=name, hints=tuple(hints)
    )


def test_an_empty_name_is_no_name() -> None:
    assert decode_contact_code(encode_contact_code(ALICE.public, "")).name is None


def test_decoding_forgives_case_whitespace_and_dashes() -> None:
    body = ALICE_CODE[4:]
    groups = "-".join(body[i : i + 4] for i in range(0, len(body), 4))
    messy = f"  mm1:\n{groups.lower()}\t "
    assert decode_contact_code(messy) == decode_contact_code(ALICE_CODE)


def test_decoding_reads_o_as_zero_and_i_l_as_one() -> None:
    code = encode_contact_code(ALICE.public)
    misread = "MM1:" + code[4:].replace("0", "O").replace("1", "l")
    assert decode_contact_code(misread).public == ALICE.public


def substitutions(code: str) -> list[str]:
    body_start = len("MM1:")
    return [
        code[:i] + char + code[i + 1 :]
        for i in range(body_start, len(code))
        for char in ALPHABET
        if char != code[i]
    ]


def test_every_single_character_substitution_is_detected() -> None:
    typos = substitutions(ALICE_CODE)
    assert len(typos) == (len(ALICE_CODE) - 4) * 31
    for typo in typos:
        with pytest.raises(InvalidContactCode):
            decode_contact_code(typo)


@given(name=st.none() | names, hints=hint_lists, data=st.data(), position=st.integers(min_value=0))
def test_a_substitution_is_detected_for_any_code(
    name: str | None, hints: list[str], data: st.DataObject, position: int
) -> None:
    code = encode_contact_code(CAROL.public, name, hints)
    i = 4 + position % (len(code) - 4)
    char = data.draw(st.sampled_from([c for c in ALPHABET if c != code[i]]))
    with pytest.raises(InvalidContactCode):
        decode_contact_code(code[:i] + char + code[i + 1 :])


def test_a_checksum_failure_says_typo() -> None:
    i = len(ALICE_CODE) // 2
    typo = ALICE_CODE[:i] + ("A" if ALICE_CODE[i] != "A" else "B") + ALICE_CODE[i + 1 :]
    with pytest.raises(InvalidContactCode, match=r"checksum mismatch \(typo\?\)"):
        decode_contact_code(typo)


def test_every_truncation_is_detected() -> None:
    for length in range(len(ALICE_CODE)):
        with pytest.raises(InvalidContactCode):
            decode_contact_code(ALICE_CODE[:length])


@pytest.mark.parametrize("cut", [1, 8, 40, 200])
def test_truncation_is_reported_as_such(cut: int) -> None:
    with pytest.raises(InvalidContactCode, match="truncated"):
        decode_contact_code(ALICE_CODE[:-cut])


def test_an_extra_character_is_detected() -> None:
    for char in ALPHABET:
        with pytest.raises(InvalidContactCode):
            decode_contact_code(ALICE_CODE + char)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "should start with 'MM1:'"),
        ("XX1:ABCD", "should start with 'MM1:'"),
        ("MM2:ABCD", "version 2 is not supported"),
        ("MM1:ABCU", "invalid character 'U'"),
        ("MM1:" + "0" * 5000, "far too long"),
    ],
)
def test_bad_texts_have_clear_messages(text: str, message: str) -> None:
    with pytest.raises(InvalidContactCode, match=re.escape(message)):
        decode_contact_code(text)


def encode_raw(body: bytes) -> str:
    """A code with a correct checksum around an arbitrary payload (to test the parser)."""
    check = hashlib.blake2b(body, digest_size=5, person=b"meshmsg/cc-check").digest()
    return "MM1:" + b32encode(body + check)


def payload(
    public: PublicIdentity = ALICE.public, name: bytes = b"", hints: tuple[bytes, ...] = ()
) -> bytes:
    extras = bytes([len(name)]) + name + bytes([len(hints)])
    return public.to_bytes() + extras + b"".join(bytes([len(h)]) + h for h in hints)


def test_encode_raw_matches_the_real_encoder() -> None:
    assert encode_raw(payload(name=b"Alice", hints=(b"h:1",))) == encode_contact_code(
        ALICE.public, "Alice", ["h:1"]
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (payload(name=b"\xff\xfe"), "not valid UTF-8"),
        (payload(name=b"a\x1b[2Jb"), "control character U+001B"),
        (payload(name="a\u202eb".encode()), "control character U+202E"),
        (payload(name=b"n" * 65), "longer than 64 bytes"),
        (payload(hints=(b"h:1",) * 5), "at most 4"),
        (payload(hints=(b"h:1", b"h:1")), "duplicate"),
        (payload(hints=(b"no-port",)), "bad hint"),
        (payload(hints=(b"",)), "bad hint"),
        (payload(hints=("h\u00e9:1".encode(),)), "bad hint"),
        (payload() + b"\0", "trailing bytes"),
        (b"\x02" + payload()[1:], "payload version 2"),
    ],
)
def test_a_checksummed_but_malformed_payload_is_rejected(body: bytes, message: str) -> None:
    with pytest.raises(InvalidContactCode, match=re.escape(message)):
        decode_contact_code(encode_raw(body))


def test_a_code_with_keys_from_another_identity_fails_the_certificate() -> None:
    forged = dataclasses.replace(ALICE.public, e2e_key=BOB.public.e2e_key)
    code = encode_raw(payload(public=forged, name=b"Alice"))
    with pytest.raises(InvalidContactCode, match="bad signature"):
        decode_contact_code(code)


def test_encode_refuses_what_decode_would_refuse() -> None:
    forged = dataclasses.replace(ALICE.public, noise_key=BOB.public.noise_key)
    with pytest.raises(InvalidContactCode, match="bad signature"):
        encode_contact_code(forged)
    with pytest.raises(InvalidContactCode, match="64 bytes"):
        encode_contact_code(ALICE.public, "é" * 33)
    with pytest.raises(InvalidContactCode, match="at most 4"):
        encode_contact_code(ALICE.public, hints=[f"h:{p}" for p in range(1, 6)])
    with pytest.raises(InvalidContactCode, match="control"):
        encode_contact_code(ALICE.public, "line\nbreak")


def test_a_name_of_exactly_64_bytes_is_accepted() -> None:
    name = "é" * 32
    assert decode_contact_code(encode_contact_code(ALICE.public, name)).name == name


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        ("example.org:7000", ("example.org", 7000)),
        ("10.0.0.1:1", ("10.0.0.1", 1)),
        ("[2001:db8::1]:65535", ("2001:db8::1", 65_535)),
        ("a" * 58 + ":7000", ("a" * 58, 7000)),
    ],
)
def test_parse_hint_accepts(hint: str, expected: tuple[str, int]) -> None:
    assert parse_hint(hint) == expected


@pytest.mark.parametrize(
    "hint",
    [
        "example.org",
        "example.org:0",
        "example.org:65536",
        "example.org:07000",
        ":7000",
        "-bad.org:1",
        "bad..org:1",
        "under_score:1",
        "2001:db8::1:7000",
        "[2001:db8::zz]:1",
        "[fe80::1%eth0]:1",
        "a" * 60 + ":7000",
        "host:7000 ",
    ],
)
def test_parse_hint_rejects(hint: str) -> None:
    with pytest.raises(InvalidContactCode, match="bad hint"):
        parse_hint(hint)


# --- Safety numbers ------------------------------------------------------------------------------

# libsignal's NumericFingerprintGeneratorTest (v1 vectors): our per-side hash is the same
# algorithm, so it must reproduce Signal's published numbers and scannable hashes.
SIGNAL_ALICE = bytes.fromhex("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868")
SIGNAL_BOB = bytes.fromhex("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b")
SIGNAL_DISPLAY = "300354477692869396892869876765458257569162576843440918079131"
SIGNAL_ALICE_SCAN = "1e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df"
SIGNAL_BOB_SCAN = "d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d"


def test_safety_hash_matches_libsignal_vectors() -> None:
    alice = safety_hash(SIGNAL_ALICE, b"+14152222222")
    bob = safety_hash(SIGNAL_BOB, b"+14153333333")
    assert alice[:32].hex() == SIGNAL_ALICE_SCAN
    assert bob[:32].hex() == SIGNAL_BOB_SCAN

    def digits(h: bytes) -> str:
        return "".join(
            f"{int.from_bytes(h[i : i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5)
        )

    assert "".join(sorted([digits(alice), digits(bob)])) == SIGNAL_DISPLAY


# Our own known answer, so that a change of domain string or layout cannot pass unnoticed.
ALICE_BOB_SAFETY = safety_number(ALICE.public.identity_key, BOB.public.identity_key)


def test_safety_number_shape_and_symmetry() -> None:
    assert re.fullmatch(r"\d{5}( \d{5}){11}", ALICE_BOB_SAFETY)
    assert safety_number(BOB.public.identity_key, ALICE.public.identity_key) == ALICE_BOB_SAFETY


# Our own vector (also in docs/protocol/identity.md): a change of domain string, iteration count
# or layout must fail here, not pass unnoticed between two copies of the same code.
VECTOR_A = bytes.fromhex("2165d35454db8171d8fc3851826d591715a28f31c227fea09c34373b261fabf2")
VECTOR_B = bytes.fromhex("27316de939646c984b99dc47c550a720c80972281cd8b736c446db09a60456c0")
VECTOR_NUMBER = "24542 48914 17756 20059 68974 83910 58274 58399 87593 62691 02659 35058"
VECTOR_QR = (
    "MMSN1:2M4GDQJ2KMVX9K5ZBKC9MRJ9XZ47R923QN76TH1380ZB37WJJQZCJEB65WF1XPQ6BHSDF2KDRBE8D9PKVHXXKKPN"
    "017B4T47DC3C160"
)


def test_safety_number_known_answer() -> None:
    assert safety_number(VECTOR_A, VECTOR_B) == VECTOR_NUMBER
    assert safety_qr_payload(VECTOR_A, VECTOR_B) == VECTOR_QR
    assert ALICE.public.identity_key == VECTOR_A  # the fixtures are stable too


def test_safety_number_changes_when_either_key_changes() -> None:
    a, b, c = (x.public.identity_key for x in (ALICE, BOB, CAROL))
    assert safety_number(a, c) != ALICE_BOB_SAFETY
    assert safety_number(c, b) != ALICE_BOB_SAFETY


@settings(max_examples=10)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32), st.data())
def test_safety_number_properties(a: bytes, b: bytes, data: st.DataObject) -> None:
    number = safety_number(a, b)
    assert number == safety_number(b, a)
    assert len(number.replace(" ", "")) == 60
    assert number.replace(" ", "").isdigit()
    # Flip one bit of one key: the number changes.
    bit = data.draw(st.integers(0, 255))
    flipped = bytearray(a)
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert safety_number(bytes(flipped), b) != number


def test_safety_number_rejects_wrong_key_length() -> None:
    with pytest.raises(InvalidContactCode, match="32 bytes"):
        safety_number(b"short", BOB.public.identity_key)


def test_safety_qr_payload_is_order_independent_and_binds_both_keys() -> None:
    a, b, c = (x.public.identity_key for x in (ALICE, BOB, CAROL))
    payload_ab = safety_qr_payload(a, b)
    assert payload_ab == safety_qr_payload(b, a)
    assert re.fullmatch(r"MMSN1:[0-9A-HJKMNP-TV-Z]{103}", payload_ab)
    assert payload_ab not in {safety_qr_payload(a, c), safety_qr_payload(c, b)}
    assert safety_qr_matches(payload_ab.lower(), b, a)
    assert not safety_qr_matches(safety_qr_payload(a, c), a, b)
    assert not safety_qr_matches("garbage", a, b)


# --- Fingerprint ---------------------------------------------------------------------------------


def test_fingerprint_is_four_groups_of_four_from_the_peer_id() -> None:
    text = fingerprint(ALICE.public)
    assert re.fullmatch(r"([0-9A-HJKMNP-TV-Z]{4}-){3}[0-9A-HJKMNP-TV-Z]{4}", text)
    assert b32decode(text.replace("-", "")) == ALICE.peer_id[:10]
    assert fingerprint(BOB.public) != text


def test_each_side_of_a_safety_number_is_hashed_once_for_a_list_of_contacts() -> None:
    """5,200 SHA-512 calls per key: ``GET /contacts`` hashed each side twice per contact on
    every call (22.8 ms per contact, median of 15 runs on a quiet moment, 2026-12-08). Each
    key is now hashed once, and the result is the same as the uncached hash."""
    own, other = bytes(range(32)), bytes(range(1, 33))
    identity._safety_side.cache_clear()
    first = safety_number(own, other)
    safety_qr_payload(own, other)
    safety_number(other, own)
    info = identity._safety_side.cache_info()
    assert (info.misses, info.hits) == (2, 4)
    assert identity._safety_side(own) == identity.safety_hash(own, identity._SAFETY_DOMAIN)
    assert first == safety_number(own, other)
