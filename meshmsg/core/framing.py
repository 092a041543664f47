"""Stream framing: a 2-byte big-endian length prefix, then that many bytes.

Theory of operation
-------------------
TCP delivers a byte stream in arbitrary pieces. :class:`FrameReader` collects the pieces and
cuts complete frames out of them: ``feed(data)`` appends ``data`` to a receive buffer and returns
every frame now complete, in order, keeping any incomplete tail for the next call. It does no
cryptography: a frame's payload is whatever the link put in it (a Noise message).

Rules (docs/protocol/wire.md §Framing):

- The length prefix counts payload bytes only; it is at most ``max_frame_bytes`` (65,535, the
  most two bytes can say and the Noise message limit). A larger configured limit is refused.
- A zero-length frame is rejected (MALFORMED): every frame carries a Noise message, which is
  never empty (a transport message has at least its 16-byte tag), so an empty frame can only be
  garbage or a probe, and refusing it at once closes a link that is being fed noise.
- The receive buffer never holds more than ``max_receive_buffer_bytes``: ``feed`` refuses
  (TOO_LARGE) data that would take it over. The leftover between calls is at most one
  incomplete frame (2 + 65,535 - 1 bytes), so a driver that reads at most
  ``max_receive_buffer_bytes - max_frame_bytes - 1`` bytes per call (65,536 with the defaults)
  never hits the limit, while a peer cannot make us hold more than that per link.

After a DecodeError the reader is broken: the link closes, and further ``feed`` calls raise
LocalProtocolError (h11's rule: no input after an error).

Cost: each byte is copied once into the buffer and once out into its frame; consumed bytes are
dropped from the front of the bytearray, which CPython does without moving the rest, so feeding
byte by byte or megabytes at a time are both linear.
"""

from __future__ import annotations

from typing import Final, NoReturn

from meshmsg.config import WireLimits
from meshmsg.errors import CloseReason, ConfigError, DecodeError, LocalProtocolError

LENGTH_PREFIX_BYTES: Final = 2  # big-endian u16 in front of every frame
MAX_FRAME_BYTES: Final = 0xFFFF  # what a 2-byte prefix can express; the Noise message limit
_DEFAULT_LIMITS: Final = WireLimits()


def encode_frame(payload: bytes, limits: WireLimits = _DEFAULT_LIMITS) -> bytes:
    """Prefix ``payload`` with its 2-byte big-endian length.

    Raises:
        LocalProtocolError: ``payload`` is empty or longer than ``limits.max_frame_bytes``.
    """
    if not 0 < len(payload) <= limits.max_frame_bytes:
        raise LocalProtocolError(
            f"frame payload must be 1..{limits.max_frame_bytes} bytes, not {len(payload)}"
        )
    return len(payload).to_bytes(LENGTH_PREFIX_BYTES, "big") + payload


class FrameReader:
    """Reassembles length-prefixed frames from a byte stream of arbitrary chunks."""

    __slots__ = ("_broken", "_buffer", "_max_buffer_bytes", "_max_frame_bytes")

    def __init__(self, limits: WireLimits) -> None:
        """Create a reader enforcing ``limits.max_frame_bytes`` and ``max_receive_buffer_bytes``.

        Raises:
            ConfigError: the limits are impossible (a frame over 65,535 bytes, or a buffer that
                cannot hold one whole frame with its prefix).
        """
        if not 0 < limits.max_frame_bytes <= MAX_FRAME_BYTES:
            raise ConfigError(f"max_frame_bytes must be in 1..{MAX_FRAME_BYTES}")
        if limits.max_receive_buffer_bytes < LENGTH_PREFIX_BYTES + limits.max_frame_bytes:
            raise ConfigError("max_receive_buffer_bytes must hold one maximal frame and prefix")
        self._max_frame_bytes = limits.max_frame_bytes
        self._max_buffer_bytes = limits.max_receive_buffer_bytes
        self._buffer = bytearray()
        self._broken = False

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet returned as a frame (an incomplete frame at the end)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data`` from the stream; return the frames it completed, oldest first.

        Raises:
            DecodeError: TOO_LARGE if the buffer would exceed ``max_receive_buffer_bytes`` or a
                length prefix exceeds ``max_frame_bytes``; MALFORMED for a zero-length frame.
            LocalProtocolError: the reader already raised a DecodeError.
        """
        if self._broken:
            raise LocalProtocolError("FrameReader used after a framing error")
        if len(self._buffer) + len(data) > self._max_buffer_bytes:
            self._fail(
                f"receive buffer would hold {len(self._buffer) + len(data)} bytes, more than "
                f"max_receive_buffer_bytes={self._max_buffer_bytes}",
                CloseReason.TOO_LARGE,
            )
        self._buffer += data
        return self._cut_frames()

    def _cut_frames(self) -> list[bytes]:
        buffer = self._buffer
        frames: list[bytes] = []
        start = 0
        problem: tuple[str, CloseReason] | None = None
        with memoryview(buffer) as view:  # slices of a view copy once; of a bytearray, twice
            while len(buffer) - start >= LENGTH_PREFIX_BYTES:
                length = (buffer[start] << 8) | buffer[start + 1]
                problem = self._check_length(length)
                end = start + LENGTH_PREFIX_BYTES + length
                if problem is not None or end > len(buffer):
                    break
                frames.append(bytes(view[start + LENGTH_PREFIX_BYTES : end]))
                start = end
        if problem is not None:
            self._fail(*problem)
        # One deletion per feed call: CPython advances the bytearray's start pointer instead of
        # moving the remaining bytes, so the incomplete tail is not copied.
        del buffer[:start]
        return frames

    def _check_length(self, length: int) -> tuple[str, CloseReason] | None:
        if length == 0:
            return "zero-length frame", CloseReason.MALFORMED
        if length > self._max_frame_bytes:
            message = f"frame of {length} bytes exceeds max_frame_bytes={self._max_frame_bytes}"
            return message, CloseReason.TOO_LARGE
        return None

    def _fail(self, message: str, reason: CloseReason) -> NoReturn:
        self._broken = True
        self._buffer = bytearray()
        raise DecodeError(message, reason=reason)
