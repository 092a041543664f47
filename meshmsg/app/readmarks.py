"""How far the user has read each conversation, kept across restarts of the daemon.

A conversation's read position is the arrival time (``received_at``, our own clock) of the
newest received message the user has seen in it; its unread count is the received messages that
arrived later. Arrival time, not send time: a message written long ago that arrives now is new.

Why here and not in the core: what the user has *seen* is a fact of this interface, not of the
protocol (read receipts are a separate, optional message the core already sends). Groups need no
such file: the core keeps ``read_by_me`` on each group message, and the group's unread count
comes from it.

On disk: one file, ``read-marks`` in the data directory, written whole on every change
(temporary file, fsync, rename, fsync of the directory) before the API answers, so a mark the
page was told about survives a crash. Its content names conversations (peer ids), so it is
sealed like the database: ``nonce(24) || XChaCha20-Poly1305(JSON)`` under a subkey of the
database key. A file that does not open (damaged, another key) is set aside as
``read-marks.damaged`` and the marks start empty: every message then counts as unread once,
which loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
from pathlib import Path
from typing import Final

import trio
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

from meshmsg.errors import StorageError

logger = logging.getLogger(__name__)

FILE_NAME: Final = "read-marks"
NONCE_BYTES: Final = 24
KEY_BYTES: Final = 32
_AD: Final = b"meshmsg/read-marks/v1"
_PERSON: Final = b"meshmsg-readmark"  # BLAKE2b personalisation: 16 bytes, its own subkey
_ID_HEX: Final = frozenset({32, 64})  # peer ids (pairwise) and group ids


def subkey(db_key: bytes) -> bytes:
    """The key of the read-marks file, separated from the database's own subkeys."""
    if len(db_key) != KEY_BYTES:
        raise StorageError(f"database key must be {KEY_BYTES} bytes, got {len(db_key)}")
    return hashlib.blake2b(b"", digest_size=KEY_BYTES, key=db_key, person=_PERSON).digest()


class ReadMarks:
    """Read positions by conversation id (hex); durable when built with a file."""

    def __init__(self, path: Path | None, key: bytes | None, max_marks: int) -> None:
        if (path is None) != (key is None):
            raise ValueError("a read-marks file needs its key, and a key its file")
        self._path = path
        self._key = key
        self._max = max_marks
        self._marks: dict[str, float] = {}
        self._lock = trio.Lock()  # one whole-file write at a time, in order
        if path is not None and path.exists():
            self._marks = self._load(path)

    @classmethod
    def in_data_dir(cls, root: Path, db_key: bytes, max_marks: int) -> ReadMarks:
        return cls(root / FILE_NAME, subkey(db_key), max_marks)

    @classmethod
    def in_memory(cls, max_marks: int) -> ReadMarks:
        """Marks that end with the process (an API built without a data directory)."""
        return cls(None, None, max_marks)

    def position(self, conversation: str) -> float:
        """Arrival time up to which the user has read ``conversation`` (0: nothing yet)."""
        return self._marks.get(conversation, 0.0)

    async def advance(self, conversation: str, received_at: float) -> bool:
        """Move the position forward (never back); durable when this returns. True if moved.

        Raises:
            StorageError: the file could not be written (the position is not moved).
        """
        if not _is_id(conversation):
            raise ValueError("a conversation id is 32 or 64 hex digits")
        if not math.isfinite(received_at):
            return False
        async with self._lock:  # checked inside: an earlier call may have moved it meanwhile
            if received_at <= self.position(conversation):
                return False
            marks = {**self._marks, conversation: received_at}
            if len(marks) > self._max:  # forget the longest-read conversation first
                del marks[min(marks, key=lambda k: marks[k])]
            if self._path is not None:
                await trio.to_thread.run_sync(self._write, marks)
            self._marks = marks
        return True

    # --- the file -------------------------------------------------------------------------

    def _seal(self, plain: bytes) -> bytes:
        assert self._key is not None
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + crypto_aead_xchacha20poly1305_ietf_encrypt(plain, _AD, nonce, self._key)

    def _write(self, marks: dict[str, float]) -> None:
        assert self._path is not None
        sealed = self._seal(json.dumps(marks, separators=(",", ":")).encode())
        temporary = self._path.with_name(FILE_NAME + ".tmp")
        try:
            fd = os.open(temporary, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
            try:
                os.write(fd, sealed)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self._path)
            directory = os.open(self._path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            raise StorageError(f"cannot write {self._path}: {exc}") from exc

    def _load(self, path: Path) -> dict[str, float]:
        assert self._key is not None
        try:
            sealed = path.read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc}") from exc
        # A bound before decrypting: each mark is at most 64 hex digits and a float in JSON.
        marks = None
        if NONCE_BYTES < len(sealed) <= NONCE_BYTES + 16 + self._max * 100 + 2:
            marks = self._open(sealed)
        if marks is None:
            damaged = path.with_name(FILE_NAME + ".damaged")
            logger.warning("read marks in %s do not open: set aside as %s", path, damaged)
            try:
                path.replace(damaged)
            except OSError as exc:
                raise StorageError(f"cannot set {path} aside: {exc}") from exc
            return {}
        return marks

    def _open(self, sealed: bytes) -> dict[str, float] | None:
        assert self._key is not None
        try:
            plain = crypto_aead_xchacha20poly1305_ietf_decrypt(
                sealed[NONCE_BYTES:], _AD, sealed[:NONCE_BYTES], self._key
            )
            value = json.loads(plain)
        except (CryptoError, ValueError):
            return None
        return _checked(value, self._max)


def _is_id(text: str) -> bool:
    return len(text) in _ID_HEX and all(c in "0123456789abcdef" for c in text)


def _checked(value: object, max_marks: int) -> dict[str, float] | None:
    """The marks if ``value`` is exactly their shape, else None."""
    if not isinstance(value, dict) or len(value) > max_marks:
        return None
    marks: dict[str, float] = {}
    for key, at in value.items():
        if not _is_id(key) or isinstance(at, bool) or not isinstance(at, int | float):
            return None
        if not math.isfinite(at):
            return None
        marks[key] = float(at)
    return marks


__all__ = ["FILE_NAME", "ReadMarks", "subkey"]
