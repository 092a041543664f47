"""The encrypted keystore: the identity's private keys at rest (file I/O, so not in core).

A keystore blob is a small authenticated header followed by a SecretBox (XSalsa20-Poly1305)
ciphertext. The key comes from one of two sources, recorded in the header:

* **passphrase**: Argon2id (libsodium ``crypto_pwhash``) over the passphrase and a random salt,
  with the cost parameters stored in the header so they can be raised later without breaking
  old files;
* **key file**: for unattended relay daemons, a random 32-byte key in a 0600 file, stretched
  per blob with keyed BLAKE2b and the salt. Anyone who can read that file can open the
  keystore, so using it logs a warning, and a key file that group or others may read is refused.

SecretBox has no associated data, so the header is authenticated by encrypting a copy of it in
front of the secret and comparing after decryption. Any failure to authenticate is reported as
one message, ``wrong passphrase or damaged keystore``: it cannot tell the two apart, and neither
can we. Layout and rationale: docs/protocol/identity.md.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
import struct
import tempfile
import unicodedata
from pathlib import Path
from typing import Final

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id
import nacl.secret
import nacl.utils

from meshmsg.config import KEYSTORE_MAX_FILE_BYTES, KEYSTORE_MAX_MEM_LIMIT, KEYSTORE_MAX_OPS_LIMIT
from meshmsg.errors import KeystoreError

log = logging.getLogger(__name__)

MAGIC: Final = b"MMKS"
VERSION: Final = 1
KDF_ARGON2ID: Final = 1  # key = Argon2id-1.3(passphrase, salt, ops, mem)
KDF_KEY_FILE: Final = 2  # key = BLAKE2b(key=file key, salt, person)
SALT_BYTES: Final = argon2id.SALTBYTES  # 16
KEY_FILE_BYTES: Final = 32
_HEADER: Final = struct.Struct(">4sBBIQ16s")  # magic, version, kdf, ops, mem, salt: 34 bytes
_BOX_OVERHEAD: Final = nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES
_KEY_FILE_PERSON: Final = b"meshmsg/keyfile"
WRONG_KEY: Final = "wrong passphrase or damaged keystore"

# MODERATE (3 passes, 256 MiB, about 0.8 s here) rather than INTERACTIVE (2 passes, 64 MiB,
# 0.07 s): the keystore is unlocked once per daemon start, not per message, and an attacker who
# copies the file pays 4x the memory and about 12x the time per guess. Small relays that cannot
# spare 256 MiB use key-file mode. Tests pass OPSLIMIT_MIN / MEMLIMIT_MIN.
OPS_LIMIT: Final = argon2id.OPSLIMIT_MODERATE
MEM_LIMIT: Final = argon2id.MEMLIMIT_MODERATE


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    # NFC: the same passphrase typed on two systems may arrive composed or decomposed.
    if isinstance(passphrase, str):
        return unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return passphrase


def _check_params(ops_limit: int, mem_limit: int) -> None:
    if not argon2id.OPSLIMIT_MIN <= ops_limit <= KEYSTORE_MAX_OPS_LIMIT:
        raise KeystoreError(f"Argon2id ops limit {ops_limit} is out of range")
    if not argon2id.MEMLIMIT_MIN <= mem_limit <= KEYSTORE_MAX_MEM_LIMIT:
        raise KeystoreError(f"Argon2id memory limit {mem_limit} is out of range")


def _argon2id_key(passphrase: bytes, salt: bytes, ops_limit: int, mem_limit: int) -> bytes:
    try:
        return argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE, passphrase, salt, opslimit=ops_limit, memlimit=mem_limit
        )
    except (nacl.exceptions.CryptoError, MemoryError) as exc:  # libsodium could not allocate
        raise KeystoreError(f"Argon2id failed: {exc}") from exc


def _key_file_key(file_key: bytes, salt: bytes) -> bytes:
    if len(file_key) != KEY_FILE_BYTES:
        raise KeystoreError(f"a key file holds exactly {KEY_FILE_BYTES} bytes")
    return hashlib.blake2b(
        digest_size=nacl.secret.SecretBox.KEY_SIZE, key=file_key, salt=salt, person=_KEY_FILE_PERSON
    ).digest()


def _seal(header: bytes, key: bytes, secret: bytes) -> bytes:
    if len(header) + _BOX_OVERHEAD + len(header) + len(secret) > KEYSTORE_MAX_FILE_BYTES:
        raise KeystoreError("secret is too large for a keystore")
    return header + bytes(nacl.secret.SecretBox(key).encrypt(header + secret))


def _header(kdf: int, ops_limit: int, mem_limit: int, salt: bytes | None) -> bytes:
    salt = nacl.utils.random(SALT_BYTES) if salt is None else salt
    if len(salt) != SALT_BYTES:
        raise KeystoreError(f"salt must be {SALT_BYTES} bytes")
    return _HEADER.pack(MAGIC, VERSION, kdf, ops_limit, mem_limit, salt)


def seal_keystore(
    identity_bytes: bytes,
    passphrase: str | bytes,
    *,
    ops_limit: int = OPS_LIMIT,
    mem_limit: int = MEM_LIMIT,
    salt: bytes | None = None,
) -> bytes:
    """Encrypt ``identity_bytes`` under a key derived from ``passphrase`` with Argon2id.

    Args:
        identity_bytes: the secret (normally :meth:`Identity.to_bytes`).
        passphrase: text (NFC-normalised, UTF-8) or bytes; must not be empty.
        ops_limit, mem_limit: Argon2id costs; the defaults are the production choice.
        salt: 16 bytes; a fresh random salt when omitted (pass one only for test vectors).

    Raises:
        KeystoreError: empty passphrase, parameters out of range, bad salt, or too large.
    """
    secret = _passphrase_bytes(passphrase)
    if not secret:
        raise KeystoreError("refusing an empty passphrase")
    _check_params(ops_limit, mem_limit)
    header = _header(KDF_ARGON2ID, ops_limit, mem_limit, salt)
    return _seal(
        header, _argon2id_key(secret, header[-SALT_BYTES:], ops_limit, mem_limit), identity_bytes
    )


def seal_keystore_with_key(
    identity_bytes: bytes, file_key: bytes, *, salt: bytes | None = None
) -> bytes:
    """Encrypt ``identity_bytes`` under a key-file key (see :func:`create_key_file`).

    Raises:
        KeystoreError: the key is not 32 bytes, bad salt, or too large.
    """
    header = _header(KDF_KEY_FILE, 0, 0, salt)
    return _seal(header, _key_file_key(file_key, header[-SALT_BYTES:]), identity_bytes)


def _parse_header(blob: bytes) -> tuple[bytes, int, int, int, bytes]:
    if len(blob) < _HEADER.size + _BOX_OVERHEAD + _HEADER.size or blob[:4] != MAGIC:
        raise KeystoreError("not a meshmsg keystore (bad magic or too short)")
    if len(blob) > KEYSTORE_MAX_FILE_BYTES:
        raise KeystoreError("keystore is too large")
    _magic, version, kdf, ops_limit, mem_limit, salt = _HEADER.unpack_from(blob)
    if version != VERSION:
        raise KeystoreError(f"unsupported keystore version {version}")
    return blob[: _HEADER.size], kdf, ops_limit, mem_limit, salt


def _unseal(blob: bytes, header: bytes, key: bytes) -> bytes:
    try:
        plaintext = nacl.secret.SecretBox(key).decrypt(blob[len(header) :])
    except nacl.exceptions.CryptoError as exc:
        raise KeystoreError(WRONG_KEY) from exc
    # The MAC covers the inner copy; equality extends it to the outer header we parsed.
    if not hmac.compare_digest(plaintext[: len(header)], header):
        raise KeystoreError(WRONG_KEY)
    return plaintext[len(header) :]


def open_keystore(blob: bytes, passphrase: str | bytes) -> bytes:
    """Decrypt a passphrase keystore and return the secret given to :func:`seal_keystore`.

    Raises:
        KeystoreError: ``wrong passphrase or damaged keystore`` when authentication fails; a
            more specific message for a file that is not a keystore, an unsupported version,
            out-of-range KDF parameters, or a keystore sealed with a key file.
    """
    header, kdf, ops_limit, mem_limit, salt = _parse_header(blob)
    if kdf == KDF_KEY_FILE:
        raise KeystoreError("this keystore is sealed with a key file, not a passphrase")
    if kdf != KDF_ARGON2ID:
        raise KeystoreError(f"unsupported keystore KDF {kdf}")
    # Bounded before use: the parameters come from the file and decide how much memory we take.
    _check_params(ops_limit, mem_limit)
    key = _argon2id_key(_passphrase_bytes(passphrase), salt, ops_limit, mem_limit)
    return _unseal(blob, header, key)


def open_keystore_with_key(blob: bytes, file_key: bytes) -> bytes:
    """Decrypt a key-file keystore and return its secret.

    Raises:
        KeystoreError: as :func:`open_keystore` (with "key file" for "passphrase").
    """
    header, kdf, ops_limit, mem_limit, salt = _parse_header(blob)
    if kdf == KDF_ARGON2ID:
        raise KeystoreError("this keystore is sealed with a passphrase, not a key file")
    if kdf != KDF_KEY_FILE or ops_limit or mem_limit:
        raise KeystoreError(f"unsupported keystore KDF {kdf}")
    return _unseal(blob, header, _key_file_key(file_key, salt))


# --- Files ---------------------------------------------------------------------------------------


def _fsync_directory(directory: Path) -> None:
    # The rename is a change to the directory: until it is synced a power cut can undo it.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_keystore(path: str | os.PathLike[str], blob: bytes) -> None:
    """Write ``blob`` to ``path`` atomically, readable by the owner only (0600).

    A temporary file in the same directory is written, fsynced and renamed over ``path``, and the
    directory is fsynced: after a crash the old or the new keystore is there, never half of one.

    Raises:
        KeystoreError: the file could not be written (wrapping the OSError).
    """
    target = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise KeystoreError(f"cannot write keystore {target}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as tmp:
            os.fchmod(tmp.fileno(), 0o600)  # mkstemp already does; say it where it matters
            tmp.write(blob)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
        _fsync_directory(target.parent)
    except OSError as exc:
        Path(tmp_name).unlink(missing_ok=True)
        raise KeystoreError(f"cannot write keystore {target}: {exc}") from exc


def _read_bounded(path: Path, what: str, limit: int) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise KeystoreError(f"cannot read {what} {path}: {exc}") from exc
    if len(data) > limit:
        raise KeystoreError(f"{what} {path} is too large")
    return data


def load_keystore(path: str | os.PathLike[str]) -> bytes:
    """Read a keystore blob (at most ``KEYSTORE_MAX_FILE_BYTES``).

    Raises:
        KeystoreError: missing, unreadable or oversized file.
    """
    return _read_bounded(Path(path), "keystore", KEYSTORE_MAX_FILE_BYTES)


def create_key_file(path: str | os.PathLike[str]) -> bytes:
    """Create a new key file with 32 random bytes, mode 0600, and return the key.

    Refuses to overwrite an existing file: losing a key file loses the keystore it opens.

    Raises:
        KeystoreError: the file exists or cannot be written.
    """
    target = Path(path)
    key = nacl.utils.random(KEY_FILE_BYTES)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # the umask may only remove bits; be explicit anyway
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        _fsync_directory(target.parent)
    except OSError as exc:
        raise KeystoreError(f"cannot create key file {target}: {exc}") from exc
    return key


def load_key_file(path: str | os.PathLike[str]) -> bytes:
    """Read a key file, refusing one that group or others may access, and log a warning.

    The warning is deliberate: in key-file mode the keystore is only as safe as this file.

    Raises:
        KeystoreError: missing or unreadable file, permissions broader than 0600, or not
            exactly 32 bytes.
    """
    target = Path(path)
    try:
        with target.open("rb") as f:
            # fstat of the open file, not stat of the path: no window to swap the file between.
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
            key = f.read(KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeystoreError(f"cannot read key file {target}: {exc}") from exc
    if mode & 0o077:
        raise KeystoreError(
            f"key file {target} has mode {mode:04o}: others may read it; run chmod 600 {target}"
        )
    if len(key) != KEY_FILE_BYTES:
        raise KeystoreError(f"key file {target} must hold exactly {KEY_FILE_BYTES} bytes")
    log.warning(
        "key-file mode: the keystore is protected only by the permissions of %s; "
        "anyone who can read that file can read the identity",
        target,
    )
    return key


__all__ = [
    "MEM_LIMIT",
    "OPS_LIMIT",
    "WRONG_KEY",
    "create_key_file",
    "load_key_file",
    "load_keystore",
    "open_keystore",
    "open_keystore_with_key",
    "save_keystore",
    "seal_keystore",
    "seal_keystore_with_key",
]
