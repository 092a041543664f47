"""One strict cursor over bytes, for the formats the core parses by hand.

Three formats are read field by field rather than through CBOR: channel key state (``e2e``),
reconciliation messages (``reconcile``) and contact codes (``identity``). They differ only in
what a bad input is called, so those differences are parameters of one :class:`ByteCursor`:

=============== ==================== =============================================== ==========
format          error raised         truncation message                               starts at
=============== ==================== =============================================== ==========
channel state   ``KeystoreError``    "channel state is truncated"                     0
sync message    ``DecodeError``      "sync message truncated in {what}"               0
contact code    ``InvalidContactCode`` "contact code is truncated"                    after the
                                                                                      public key
=============== ==================== =============================================== ==========

All three forbid trailing bytes, each with its own message, so the check is
:meth:`ByteCursor.expect_end` (or :meth:`ByteCursor.at_end` where the caller folds it into a
wider check). A varint over its bound raises ``too_large`` (the sync message's close reason
differs from a malformed one); it defaults to ``error``.
"""

from __future__ import annotations

from collections.abc import Callable

ErrorFactory = Callable[[str], Exception]
"""Builds the exception a bad input raises, from its message."""


class ByteCursor:
    """Reads a bytes value front to back; every short read raises ``error``."""

    __slots__ = ("_data", "_error", "_pos", "_too_large", "_truncated")

    def __init__(
        self,
        data: bytes,
        *,
        error: ErrorFactory,
        truncated: str,
        start: int = 0,
        too_large: ErrorFactory | None = None,
    ) -> None:
        """Args:
        data: the bytes to read.
        error: builds the exception raised for truncated or malformed input.
        truncated: the message of a short read; ``{what}`` is replaced by the field's name.
        start: where reading begins.
        too_large: builds the exception for a varint over its maximum (default: ``error``).
        """
        self._data = data
        self._pos = start
        self._error = error
        self._truncated = truncated
        self._too_large = too_large or error

    @property
    def pos(self) -> int:
        """How far reading has come (an index into the data)."""
        return self._pos

    def at_end(self) -> bool:
        return self._pos == len(self._data)

    def expect_end(self, message: str) -> None:
        """Raise ``error(message)`` if bytes are left over."""
        if not self.at_end():
            raise self._error(message)

    def take(self, n: int, what: str = "") -> bytes:
        """The next ``n`` bytes."""
        end = self._pos + n
        if end > len(self._data):
            raise self._error(self._truncated.format(what=what))
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def u8(self, what: str = "") -> int:
        """The next byte (no slice: reconciliation reads bytes one at a time in its hot loop)."""
        pos = self._pos
        if pos >= len(self._data):
            raise self._error(self._truncated.format(what=what))
        self._pos = pos + 1
        return self._data[pos]

    def uint(self, size: int, what: str = "") -> int:
        """The next ``size`` bytes as a big-endian unsigned integer."""
        return int.from_bytes(self.take(size, what), "big")

    def varint(self, maximum: int, what: str) -> int:
        """An unsigned LEB128 integer, minimally encoded and at most ``maximum``."""
        value, shift = 0, 0
        while True:
            byte = self.u8(what)
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
            if value > maximum:  # stop reading early: a long run of 0x80s is an attack
                raise self._too_large(f"{what} too large")
        if shift > 7 and byte == 0:
            raise self._error(f"{what} is not minimally encoded")
        if value > maximum:
            raise self._too_large(f"{what} {value} exceeds {maximum}")
        return value
