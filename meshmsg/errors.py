"""The one exception hierarchy of meshmsg.

No other module defines exceptions. The split follows who is at fault and what happens next:

    MeshError
    ├── ProtocolError                 has .reason: CloseReason (the code sent when a link closes)
    │   ├── LocalProtocolError        our caller misused the core (wrong state, link): a bug
    │   └── RemoteProtocolError       the peer broke the protocol; only that link closes
    │       ├── DecodeError           bad CBOR, frame or record; size limit; non-canonical
    │       ├── HandshakeError        Noise failure, wrong prologue/version/site key, refused peer
    │       └── DecryptError          AEAD failure on a link, replayed or out-of-order frame
    ├── InvalidMessage                an end-to-end envelope is invalid: dropped, link stays up
    ├── StorageError                  local persistence failed: transient, retry
    ├── TransportError                net/ only: wraps OSError / trio errors with ``from``
    ├── KeystoreError                 wrong passphrase, tampered or unreadable keystore file
    ├── InvalidContactCode(MeshError, ValueError)  a typo'd, truncated or forged contact code
    └── ConfigError(MeshError, ValueError)

Third-party exceptions are translated in the one module that imports the library, always with
``raise X(...) from exc``, so callers never see ``cbor2`` or ``noise`` exceptions.
"""

from __future__ import annotations

import enum


class CloseReason(enum.IntEnum):
    """Why a link closed. The integer is the wire code carried in a Close record."""

    NORMAL = 0  # orderly shutdown by either side
    MALFORMED = 1  # bad frame, bad CBOR, bad record
    TOO_LARGE = 2  # a size limit was exceeded
    HANDSHAKE_FAILED = 3  # Noise handshake failed (bad key, prologue, site key)
    DECRYPT_FAILED = 4  # AEAD failure or replayed transport frame
    TIMEOUT = 5  # handshake deadline or idle timeout
    PEER_BLOCKED = 6  # the authenticated peer is blocked by policy
    UNSUPPORTED = 7  # unknown critical record type or version
    LIMIT_REACHED = 8  # too many links, rate limit, or rekey hard limit
    LOCAL_ERROR = 9  # this node misbehaved or is shutting down on error
    DUPLICATE_LINK = 10  # a second link to the same peer; both sides keep one (core/tiebreak.py)
    LINK_LOST = 11  # the transport went away (set by the driver, never sent)


class MeshError(Exception):
    """Base class of every error meshmsg raises on purpose."""


class ProtocolError(MeshError):
    """A protocol rule was broken. ``reason`` is the close code to send."""

    default_reason: CloseReason = CloseReason.LOCAL_ERROR

    def __init__(self, message: str, *, reason: CloseReason | None = None) -> None:
        super().__init__(message)
        self.reason: CloseReason = reason if reason is not None else self.default_reason


class LocalProtocolError(ProtocolError):
    """The caller used the core wrongly (a bug in the driver or application)."""

    default_reason = CloseReason.LOCAL_ERROR


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol. The link to that peer closes; nothing else is affected."""

    default_reason = CloseReason.MALFORMED


class DecodeError(RemoteProtocolError):
    """Bytes that are not a valid frame or record under the strict codec."""

    default_reason = CloseReason.MALFORMED


class HandshakeError(RemoteProtocolError):
    """The Noise handshake failed or the authenticated peer was refused."""

    default_reason = CloseReason.HANDSHAKE_FAILED


class DecryptError(RemoteProtocolError):
    """A transport frame failed authentication (tampered, replayed or reordered)."""

    default_reason = CloseReason.DECRYPT_FAILED


class InvalidMessage(MeshError):
    """An end-to-end envelope or message failed validation. It is dropped; the link stays up."""


class StorageError(MeshError):
    """Local persistence failed. Transient: the operation may be retried."""


class TransportError(MeshError):
    """A network operation failed (net/ only)."""


class KeystoreError(MeshError):
    """The keystore could not be opened: wrong passphrase, tampered or unreadable file."""


class ConfigError(MeshError, ValueError):
    """A configuration value or scenario file is invalid."""


class InvalidContactCode(MeshError, ValueError):
    """A contact code (text or QR) that does not parse, has a bad checksum or a bad signature."""


__all__ = [
    "CloseReason",
    "ConfigError",
    "DecodeError",
    "DecryptError",
    "HandshakeError",
    "InvalidContactCode",
    "InvalidMessage",
    "KeystoreError",
    "LocalProtocolError",
    "MeshError",
    "ProtocolError",
    "RemoteProtocolError",
    "StorageError",
    "TransportError",
]
