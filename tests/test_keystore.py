"""The encrypted keystore, key files and atomic file helpers."""

from __future__ import annotations

import logging
import os
import stat
import struct
from pathlib import Path

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id
import nacl.secret
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from meshmsg.app import keystore
from meshmsg.app.keystore import (
    create_key_file,
    load_key_file,
    load_keystore,
    open_keystore,
    open_keystore_with_key,
    save_keystore,
    seal_keystore,
    seal_keystore_with_key,
)
from meshmsg.config import KEYSTORE_MAX_MEM_LIMIT, KEYSTORE_MAX_OPS_LIMIT
from meshmsg.core.identity import Identity
from meshmsg.errors import KeystoreError
from meshmsg.sim.rng import SeededRng

MIN_OPS: int = argon2id.OPSLIMIT_MIN  # tests use the cheapest legal Argon2id
MIN_MEM: int = argon2id.MEMLIMIT_MIN
SALT = bytes(range(16))
SECRET = Identity.generate(SeededRng(7, "keystore")).to_bytes()
BLOB = seal_keystore(SECRET, "correct horse", salt=SALT, ops_limit=MIN_OPS, mem_limit=MIN_MEM)
FILE_KEY = bytes(range(32, 64))
KEY_BLOB = seal_keystore_with_key(SECRET, FILE_KEY, salt=SALT)
HEADER = struct.Struct(">4sBBIQ16s")


def mem_limit_of(blob: bytes | bytearray) -> int:
    return int(HEADER.unpack_from(blob)[4])


# --- Passphrase keystores ------------------------------------------------------------------------


def test_round_trip_and_the_identity_survives() -> None:
    assert open_keystore(BLOB, "correct horse") == SECRET
    assert Identity.from_bytes(open_keystore(BLOB, b"correct horse")) == Identity.from_bytes(SECRET)


def test_header_layout() -> None:
    magic, version, kdf, ops, mem, salt = HEADER.unpack_from(BLOB)
    assert (magic, version, kdf, ops, mem, salt) == (b"MMKS", 1, 1, 1, 8192, SALT)
    # header + nonce + MAC + inner copy of the header + secret
    assert len(BLOB) == 34 + 24 + 16 + 34 + len(SECRET)
    assert SECRET not in BLOB


def test_sealing_twice_gives_different_blobs() -> None:
    other = seal_keystore(SECRET, "correct horse", ops_limit=MIN_OPS, mem_limit=MIN_MEM)
    assert other != BLOB
    assert other[18:34] != SALT  # a fresh random salt when none is given
    assert open_keystore(other, "correct horse") == SECRET


def test_production_parameters_are_moderate() -> None:
    assert keystore.OPS_LIMIT == argon2id.OPSLIMIT_MODERATE
    assert keystore.MEM_LIMIT == argon2id.MEMLIMIT_MODERATE
    assert (KEYSTORE_MAX_OPS_LIMIT, KEYSTORE_MAX_MEM_LIMIT) == (
        argon2id.OPSLIMIT_SENSITIVE,
        argon2id.MEMLIMIT_SENSITIVE,
    )


def test_passphrase_text_is_nfc_normalised() -> None:
    blob = seal_keystore(SECRET, "caf\u00e9", ops_limit=MIN_OPS, mem_limit=MIN_MEM)  # composed
    assert open_keystore(blob, "cafe\u0301") == SECRET  # decomposed


@pytest.mark.parametrize("wrong", ["correct horse ", "Correct horse", "", b"correct horsf"])
def test_wrong_passphrase_is_one_clear_error(wrong: str | bytes) -> None:
    with pytest.raises(KeystoreError) as info:
        open_keystore(BLOB, wrong)
    assert str(info.value) == "wrong passphrase or damaged keystore"
    assert isinstance(info.value.__cause__, nacl.exceptions.CryptoError)  # translated "from"


@given(st.binary(min_size=1, max_size=40))
def test_any_other_passphrase_fails(passphrase: bytes) -> None:
    assume(passphrase != b"correct horse")
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        open_keystore(BLOB, passphrase)


@pytest.mark.parametrize("xor", [0x01, 0x80, 0xFF])
def test_every_single_byte_tampering_is_detected(xor: int) -> None:
    for i in range(len(BLOB)):
        tampered = bytearray(BLOB)
        tampered[i] ^= xor
        with pytest.raises(KeystoreError):
            open_keystore(bytes(tampered), "correct horse")


@given(position=st.integers(min_value=0), xor=st.integers(1, 255))
def test_random_single_byte_tampering_is_detected(position: int, xor: int) -> None:
    tampered = bytearray(BLOB)
    tampered[position % len(BLOB)] ^= xor
    # A memory limit up to 1 GiB is legal, so would really run; keep the property fast.
    assume(mem_limit_of(tampered) <= 16 << 20)
    with pytest.raises(KeystoreError):
        open_keystore(bytes(tampered), "correct horse")


def test_truncated_or_extended_blobs_are_rejected() -> None:
    for length in range(len(BLOB)):
        with pytest.raises(KeystoreError):
            open_keystore(BLOB[:length], "correct horse")
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        open_keystore(BLOB + b"\0", "correct horse")


def test_header_fields_are_checked_before_the_kdf_runs() -> None:
    too_much_memory = HEADER.pack(b"MMKS", 1, 1, 1, KEYSTORE_MAX_MEM_LIMIT + 1, SALT)
    with pytest.raises(KeystoreError, match="memory limit"):
        open_keystore(too_much_memory + BLOB[34:], "correct horse")
    too_many_passes = HEADER.pack(b"MMKS", 1, 1, 5, 8192, SALT)
    with pytest.raises(KeystoreError, match="ops limit"):
        open_keystore(too_many_passes + BLOB[34:], "correct horse")
    with pytest.raises(KeystoreError, match="version 2"):
        open_keystore(BLOB[:4] + b"\x02" + BLOB[5:], "correct horse")
    with pytest.raises(KeystoreError, match="bad magic"):
        open_keystore(b"XXXX" + BLOB[4:], "correct horse")
    with pytest.raises(KeystoreError, match="KDF 9"):
        open_keystore(BLOB[:5] + b"\x09" + BLOB[6:], "correct horse")


def test_a_header_with_other_valid_parameters_fails_authentication() -> None:
    # Same salt, one more pass: a legal header that was not the one sealed.
    other = HEADER.pack(b"MMKS", 1, 1, 2, 8192, SALT)
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        open_keystore(other + BLOB[34:], "correct horse")


def test_the_inner_header_copy_is_compared() -> None:
    # Seal with one header, then present the blob under another header whose KDF inputs are
    # identical (the key is the same), so only the inner copy can notice.
    blob = seal_keystore(SECRET, "pw", salt=SALT, ops_limit=MIN_OPS, mem_limit=MIN_MEM)
    assert blob[:34] == BLOB[:34]
    key = argon2id.kdf(32, b"pw", SALT, opslimit=1, memlimit=8192)
    forged_inner = b"MMKS\x01\x01" + b"\0" * 28 + SECRET
    body = bytes(nacl.secret.SecretBox(key).encrypt(forged_inner))
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        open_keystore(blob[:34] + body, "pw")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ops_limit": 0, "mem_limit": 8192}, "ops limit"),
        ({"ops_limit": 1, "mem_limit": 1024}, "memory limit"),
        ({"ops_limit": 1, "mem_limit": 8192, "salt": b"short"}, "salt"),
    ],
)
def test_seal_refuses_bad_parameters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(KeystoreError, match=message):
        seal_keystore(SECRET, "pw", **kwargs)  # type: ignore[arg-type]


def test_seal_refuses_an_empty_passphrase_and_huge_secrets() -> None:
    with pytest.raises(KeystoreError, match="empty passphrase"):
        seal_keystore(SECRET, "", ops_limit=MIN_OPS, mem_limit=MIN_MEM)
    with pytest.raises(KeystoreError, match="too large"):
        seal_keystore(b"x" * 70_000, "pw", ops_limit=MIN_OPS, mem_limit=MIN_MEM)


# --- Key-file keystores --------------------------------------------------------------------------


def test_key_file_keystore_round_trip() -> None:
    assert open_keystore_with_key(KEY_BLOB, FILE_KEY) == SECRET
    assert KEY_BLOB[5] == 2


def test_key_file_keystore_rejects_other_keys_and_tampering() -> None:
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        open_keystore_with_key(KEY_BLOB, bytes(32))
    for i in range(len(KEY_BLOB)):
        tampered = bytearray(KEY_BLOB)
        tampered[i] ^= 0x01
        with pytest.raises(KeystoreError):
            open_keystore_with_key(bytes(tampered), FILE_KEY)


def test_the_two_modes_are_not_confused() -> None:
    with pytest.raises(KeystoreError, match="sealed with a key file"):
        open_keystore(KEY_BLOB, "correct horse")
    with pytest.raises(KeystoreError, match="sealed with a passphrase"):
        open_keystore_with_key(BLOB, FILE_KEY)
    with pytest.raises(KeystoreError, match="32 bytes"):
        seal_keystore_with_key(SECRET, b"short")


# --- Files ---------------------------------------------------------------------------------------


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_save_and_load_keystore(tmp_path: Path) -> None:
    path = tmp_path / "identity.keystore"
    save_keystore(path, BLOB)
    assert mode_of(path) == 0o600
    assert load_keystore(path) == BLOB
    save_keystore(path, KEY_BLOB)  # replaces
    assert load_keystore(path) == KEY_BLOB
    assert [p.name for p in tmp_path.iterdir()] == ["identity.keystore"]  # no temp file left


def test_save_keystore_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        save_keystore(tmp_path / "k", BLOB)
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "k") == 0o600


def test_save_keystore_failure_is_a_keystore_error(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="cannot write"):
        save_keystore(tmp_path / "missing-dir" / "k", BLOB)
    (tmp_path / "dir").mkdir()
    with pytest.raises(KeystoreError, match="cannot write"):
        save_keystore(tmp_path / "dir", BLOB)  # rename over a directory fails
    assert [p.name for p in (tmp_path).iterdir()] == ["dir"]  # temp file cleaned up


def test_load_keystore_errors(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="cannot read"):
        load_keystore(tmp_path / "absent")
    big = tmp_path / "big"
    big.write_bytes(b"\0" * 70_000)
    with pytest.raises(KeystoreError, match="too large"):
        load_keystore(big)


def test_key_file_is_created_0600_and_loads_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "relay.key"
    key = create_key_file(path)
    assert len(key) == 32
    assert mode_of(path) == 0o600
    with caplog.at_level(logging.WARNING, logger="meshmsg.app.keystore"):
        assert load_key_file(path) == key
    assert "key-file mode" in caplog.text
    assert str(path) in caplog.text


def test_create_key_file_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "relay.key"
    key = create_key_file(path)
    with pytest.raises(KeystoreError, match="cannot create"):
        create_key_file(path)
    assert path.read_bytes() == key


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o606, 0o777])
def test_a_key_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "relay.key"
    create_key_file(path)
    path.chmod(mode)
    with pytest.raises(KeystoreError, match=f"mode {mode:04o}.*chmod 600"):
        load_key_file(path)


def test_a_key_file_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "relay.key"
    path.write_bytes(b"k" * 31)
    path.chmod(0o600)
    with pytest.raises(KeystoreError, match="exactly 32 bytes"):
        load_key_file(path)
    with pytest.raises(KeystoreError, match="cannot read"):
        load_key_file(tmp_path / "absent")


def test_key_file_mode_end_to_end(tmp_path: Path) -> None:
    key = create_key_file(tmp_path / "relay.key")
    save_keystore(tmp_path / "identity.keystore", seal_keystore_with_key(SECRET, key))
    blob = load_keystore(tmp_path / "identity.keystore")
    assert open_keystore_with_key(blob, load_key_file(tmp_path / "relay.key")) == SECRET
