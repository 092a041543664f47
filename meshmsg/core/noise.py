"""The Noise adapter: the only module of meshmsg that imports ``noise`` (noiseprotocol 0.3.1).

meshmsg links run ``Noise_XX_25519_ChaChaPoly_BLAKE2b``, or ``Noise_XXpsk0_...`` when a site key
is configured (``docs/protocol/noise.md``). noiseprotocol is unmaintained and has sharp edges
(``shared/research/libraries-and-limits.md`` §2); this module wraps it in a small typed face
that the rest of the core can trust:

- Every exception the library or ``cryptography`` raises on remote input becomes
  :class:`~meshmsg.errors.HandshakeError` (handshake) or :class:`~meshmsg.errors.DecryptError`
  (transport); misuse by our caller is :class:`~meshmsg.errors.LocalProtocolError`.
- Sizes are checked here, because the library checks none during the handshake and checks the
  wrong length in ``encrypt`` (issue #44: a 65,535-byte plaintext makes a 65,551-byte message
  the peer must refuse, after the sender's nonce has moved). Plaintext is capped at 65,519.
- The peer's static key is read from the ``HandshakeState`` we keep; the library deletes its own
  reference when the handshake ends.
- Ephemeral keys are always injected, so the simulator replays a run from its seed.
- A node's static key can be prepared once (:class:`StaticKey`): deriving its public half is an
  X25519 base multiplication the library would otherwise repeat for every link.
- A failed handshake, and the inbound direction of a transport after a failed frame, refuse any
  further use: the link closes, and nothing half-processed can be used by mistake.

Bytes-like input (``bytearray``, ``memoryview``) is accepted everywhere; the library itself
rejects it in places.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from noise.backends.default.keypairs import KeyPair25519
from noise.connection import Keypair, NoiseConnection
from noise.constants import Empty

from meshmsg.config import WireLimits
from meshmsg.errors import CloseReason, DecryptError, HandshakeError, LocalProtocolError

BytesLike = bytes | bytearray | memoryview

SUITE: Final = "25519_ChaChaPoly_BLAKE2b"
"""meshmsg's only cipher suite: X25519, ChaCha20-Poly1305, BLAKE2b."""
KEY_BYTES: Final = 32
"""X25519 private and public keys, and pre-shared keys (Noise spec §4.1, §9)."""
TAG_BYTES: Final = 16
"""ChaCha20-Poly1305 authentication tag."""
MAX_MESSAGE_BYTES: Final = 65_535
"""Noise spec §3: no Noise message, handshake or transport, is longer."""
MAX_PLAINTEXT_BYTES: Final = MAX_MESSAGE_BYTES - TAG_BYTES
"""65,519: the largest transport plaintext whose message still fits (noiseprotocol #44)."""
DEFAULT_MAX_PAYLOAD_BYTES: Final[int] = WireLimits().max_handshake_payload_bytes
"""Handshake payload cap, from the configuration (a small hello; the library checks none)."""

# A handshake pattern from Noise spec §7 with optional psk modifiers (§9), nothing else: the
# pattern is pasted into the protocol name, where an underscore would change the suite.
_PATTERN_RE: Final = re.compile(r"[A-Z]{1,2}(?:psk[0-9](?:\+psk[0-9])*)?")


def _as_bytes(value: BytesLike) -> bytes:
    return value if type(value) is bytes else bytes(value)


def _key(value: BytesLike, what: str) -> bytes:
    key = _as_bytes(value)
    if len(key) != KEY_BYTES:
        raise LocalProtocolError(f"{what} must be {KEY_BYTES} bytes, not {len(key)}")
    return key


def _message_overheads(tokens: list[list[str]], is_psk: bool) -> tuple[int, ...]:
    """Bytes each handshake message carries besides its payload (Noise spec §5.3).

    A key is in use from the first DH or psk token on, and in a psk handshake also from the
    first ``e`` (spec §9.2); from then on ``s`` and the payload each carry a tag.
    """
    overheads = []
    has_key = False
    for message in tokens:
        size = 0
        for token in message:
            if token == "e":
                size += KEY_BYTES
                has_key = has_key or is_psk
            elif token == "s":
                size += KEY_BYTES + (TAG_BYTES if has_key else 0)
            else:  # ee, es, se, ss, psk
                has_key = True
        overheads.append(size + (TAG_BYTES if has_key else 0))
    return tuple(overheads)


class StaticKey:
    """A Noise static key pair, prepared once and used for every handshake of a node."""

    __slots__ = ("_keypair", "public")

    def __init__(self, private: BytesLike) -> None:
        self._keypair: Any = KeyPair25519.from_private_bytes(_key(private, "static_private"))
        self.public: Final = bytes(self._keypair.public_bytes)

    def __repr__(self) -> str:  # never show the private half
        return f"StaticKey(public={self.public.hex()[:16]}...)"


def _start(
    conn: Any,
    initiator: bool,
    prologue: bytes,
    psks: list[bytes],
    static: StaticKey,
    ephemeral: bytes,
    remote_static: bytes | None,
) -> None:
    """Configure ``conn`` and start its handshake, with the library's own setters."""
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_prologue(prologue)
    if psks:
        conn.set_psks(psks=psks)
    # The library's setter would rebuild the pair from private bytes; its handshake reads the
    # pair from this dict, which is what the setter writes too.
    conn.noise_protocol.keypairs["s"] = static._keypair
    if remote_static is not None:
        conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, remote_static)
    # NoiseConnection.start_handshake() is validate() + initialise_handshake_state(). We run the
    # two ourselves and set the ephemeral key in between, because validate() warns about a
    # preset ephemeral and the project turns warnings into errors (a warnings filter around the
    # call would change process-wide state). Injecting it is deliberate: it comes from the
    # core's Rng, which is the OS CSPRNG outside the simulator.
    conn.noise_protocol.validate()
    conn.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral)
    conn.noise_protocol.initialise_handshake_state()


class NoiseHandshake:
    """One side of a Noise handshake, driven message by message (sans-IO).

    ``pattern`` is ``"XX"`` for meshmsg; a ``psk`` turns it into ``"XXpsk0"``. Other patterns of
    the Noise spec §7.4–7.5 with psk modifiers (``"IKpsk2"``, ``"XXpsk0+psk3"``) run too, so
    the published test vectors can be replayed: name the modifiers in ``pattern`` and give one
    ``psk`` or, for several, ``psks`` in the order the pattern uses them. ``remote_static`` is
    for patterns where the peer's static key is known before the handshake (the ``K``/``IK``
    family) and is refused otherwise: XX learns the key during the handshake and would not
    check it against a preset one. A ``static_private`` the pattern never sends is ignored.

    Call :meth:`write_message` when :attr:`is_our_turn_to_write`, :meth:`read_message`
    otherwise, until :attr:`finished`; then take :meth:`into_transport`.
    """

    __slots__ = (
        "_failed",
        "_handshake_hash",
        "_hs",
        "_index",
        "_initiator",
        "_max_payload_bytes",
        "_overheads",
        "_proto",
        "_remote_static",
        "_transport_taken",
        "protocol_name",
    )

    def __init__(
        self,
        *,
        initiator: bool,
        static_private: BytesLike | StaticKey,
        ephemeral_private: BytesLike,
        prologue: BytesLike,
        psk: BytesLike | None = None,
        pattern: str = "XX",
        remote_static: BytesLike | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        psks: Sequence[BytesLike] = (),
    ) -> None:
        if psk is not None and psks:
            raise LocalProtocolError("give either psk or psks, not both")
        psk_list = [_key(p, "psk") for p in ([psk] if psk is not None else psks)]
        if not _PATTERN_RE.fullmatch(pattern):
            raise LocalProtocolError(f"not a Noise handshake pattern: {pattern!r}")
        if psk_list and "psk" not in pattern:
            if len(psk_list) != 1:
                raise LocalProtocolError(f"pattern {pattern} names no psk modifiers")
            pattern += "psk0"
        static = (
            static_private if isinstance(static_private, StaticKey) else StaticKey(static_private)
        )
        ephemeral = _key(ephemeral_private, "ephemeral_private")
        remote = None if remote_static is None else _key(remote_static, "remote_static")
        self.protocol_name: Final = f"Noise_{pattern}_{SUITE}"
        try:
            conn = NoiseConnection.from_name(self.protocol_name.encode("ascii"))
        except Exception as exc:  # NoiseProtocolNameError, ValueError, NotImplementedError
            raise LocalProtocolError(f"unsupported protocol {self.protocol_name}") from exc
        proto = conn.noise_protocol
        if proto.pattern.psk_count != len(psk_list):
            raise LocalProtocolError(
                f"{self.protocol_name} needs {proto.pattern.psk_count} psks, got {len(psk_list)}"
            )
        peer_pre = (
            proto.pattern.get_responder_pre_messages()
            if initiator
            else proto.pattern.get_initiator_pre_messages()
        )
        if ("s" in peer_pre) != (remote is not None):
            raise LocalProtocolError(
                f"remote_static must be given exactly when {pattern} has the peer's static key "
                "as a pre-message"
            )
        self._overheads: Final = _message_overheads(proto.pattern.tokens, proto.is_psk_handshake)
        if not 0 <= max_payload_bytes <= MAX_MESSAGE_BYTES - max(self._overheads):
            raise LocalProtocolError(f"max_payload_bytes out of range: {max_payload_bytes}")
        # Cannot fail after the checks above: every key is 32 bytes, every psk and pre-message
        # key the pattern needs is present.
        _start(conn, initiator, _as_bytes(prologue), psk_list, static, ephemeral, remote)

        self._proto: Any = proto
        self._hs: Any = proto.handshake_state  # the library deletes its reference at split()
        self._initiator: Final = initiator
        self._max_payload_bytes: Final = max_payload_bytes
        self._index = 0  # messages done
        self._failed = False
        self._transport_taken = False
        self._handshake_hash: bytes | None = None
        self._remote_static: bytes | None = remote

    # -- state -------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """Every handshake message was written or read successfully."""
        return self._index == len(self._overheads)

    @property
    def is_our_turn_to_write(self) -> bool:
        """The next step is :meth:`write_message` (false once finished or failed)."""
        if self._failed or self.finished:
            return False
        return (self._index % 2 == 0) == self._initiator

    @property
    def remote_static(self) -> bytes | None:
        """The peer's static public key once a message carrying it was read successfully
        (or the preset one); ``None`` before that. In XX the initiator has it after message 2,
        so it can refuse the peer before message 3 reveals its own identity."""
        return self._remote_static

    @property
    def handshake_hash(self) -> bytes:
        """The final handshake hash ``h`` (64 bytes), for channel binding (spec §11.2)."""
        if self._handshake_hash is None:
            raise LocalProtocolError("the handshake hash exists only once the handshake finished")
        return self._handshake_hash

    # -- messages ----------------------------------------------------------------------------

    def _check_turn(self, writing: bool) -> None:
        if self._failed:
            raise LocalProtocolError("the handshake already failed; the link must close")
        if self.finished:
            raise LocalProtocolError("the handshake is finished; use into_transport()")
        if writing and not self.is_our_turn_to_write:
            raise LocalProtocolError("it is the peer's turn: call read_message()")
        if not writing and self.is_our_turn_to_write:
            raise LocalProtocolError("it is our turn: call write_message()")

    def write_message(self, payload: BytesLike = b"") -> bytes:
        """Return the next handshake message, carrying ``payload``.

        An oversized payload raises :class:`LocalProtocolError` and leaves the handshake as it
        was. :class:`HandshakeError` here means the peer sent an invalid (low-order) key in
        its last message, which shows only at the DH that uses it.
        """
        self._check_turn(writing=True)
        payload = _as_bytes(payload)
        if len(payload) > self._max_payload_bytes:
            raise LocalProtocolError(
                f"handshake payload of {len(payload)} bytes exceeds {self._max_payload_bytes}",
                reason=CloseReason.TOO_LARGE,
            )
        buffer = bytearray()
        try:
            self._hs.write_message(payload, buffer)
        except Exception as exc:  # ValueError from X25519 on a low-order peer key, ...
            self._failed = True
            raise HandshakeError("Noise handshake failed while writing") from exc
        self._advance()
        return bytes(buffer)

    def read_message(self, message: BytesLike) -> bytes:
        """Process the peer's next handshake message and return its payload.

        Any failure raises :class:`HandshakeError` (reason ``TOO_LARGE`` for a message over
        65,535 bytes or a payload over ``max_payload_bytes``, checked before any crypto).
        """
        self._check_turn(writing=False)
        message = _as_bytes(message)
        size = len(message)
        overhead = self._overheads[self._index]
        if size > MAX_MESSAGE_BYTES or size - overhead > self._max_payload_bytes:
            self._failed = True
            raise HandshakeError(
                f"handshake message of {size} bytes is too large", reason=CloseReason.TOO_LARGE
            )
        if size < overhead:
            self._failed = True
            raise HandshakeError(f"handshake message of {size} bytes is shorter than {overhead}")
        payload = bytearray()
        try:
            self._hs.read_message(message, payload)
        except Exception as exc:  # InvalidTag, NoiseValueError, ValueError, ...: all remote input
            self._failed = True
            raise HandshakeError("Noise handshake message rejected") from exc
        rs = self._hs.rs
        if self._remote_static is None and not isinstance(rs, Empty):
            self._remote_static = rs.public_bytes
        self._advance()
        return bytes(payload)

    def _advance(self) -> None:
        self._index += 1
        if self.finished:
            self._handshake_hash = self._proto.handshake_hash
            self._hs = None  # drop the ephemeral private key and the chaining key

    def into_transport(self) -> NoiseTransport:
        """The transport cipher pair, once: a second call raises :class:`LocalProtocolError`."""
        if not self.finished:
            raise LocalProtocolError("the handshake is not finished")
        if self._transport_taken:
            raise LocalProtocolError("into_transport() was already called")
        self._transport_taken = True
        proto, self._proto = self._proto, None
        return NoiseTransport(proto.cipher_state_encrypt, proto.cipher_state_decrypt)


class NoiseTransport:
    """The two transport ciphers of a finished handshake (made by
    :meth:`NoiseHandshake.into_transport`).

    Frames must be decrypted in the order they were encrypted. A frame that fails to decrypt
    leaves the library's inbound nonce where it was (``frames_received`` does not move), but
    this transport refuses further decryption anyway: the link closes on the first failure.
    Encryption keeps working, so a Close record can still be sent.
    """

    __slots__ = ("_inbound", "_inbound_failed", "_outbound")

    def __init__(self, outbound: Any, inbound: Any) -> None:
        # noiseprotocol CipherStates; one is None on the silent side of a one-way pattern.
        self._outbound = outbound
        self._inbound = inbound
        self._inbound_failed = False

    @property
    def frames_sent(self) -> int:
        """Frames encrypted so far (equal to the outbound nonce)."""
        return 0 if self._outbound is None else int(self._outbound.n)

    @property
    def frames_received(self) -> int:
        """Frames decrypted successfully so far (equal to the inbound nonce)."""
        return 0 if self._inbound is None else int(self._inbound.n)

    def encrypt(self, plaintext: BytesLike) -> bytes:
        """Encrypt one frame. Over 65,519 bytes raises :class:`LocalProtocolError` (reason
        ``TOO_LARGE``) before the nonce moves, so the next frame is unaffected."""
        if type(plaintext) is not bytes:  # inline _as_bytes(): this is the per-frame path
            plaintext = bytes(plaintext)
        if len(plaintext) > MAX_PLAINTEXT_BYTES:
            raise LocalProtocolError(
                f"plaintext of {len(plaintext)} bytes exceeds {MAX_PLAINTEXT_BYTES}",
                reason=CloseReason.TOO_LARGE,
            )
        outbound = self._outbound
        if outbound is None:
            raise LocalProtocolError("this side of a one-way pattern cannot send")
        try:
            return outbound.encrypt_with_ad(None, plaintext)  # type: ignore[no-any-return]
        except Exception as exc:  # NoiseMaxNonceError after 2**64 - 1 frames
            raise LocalProtocolError(
                "outbound nonce exhausted", reason=CloseReason.LIMIT_REACHED
            ) from exc

    def decrypt(self, ciphertext: BytesLike) -> bytes:
        """Decrypt the next frame. Tampered, replayed, reordered, truncated or oversized input
        raises :class:`DecryptError`; after that, every further call raises
        :class:`LocalProtocolError`."""
        inbound = self._inbound
        if self._inbound_failed or inbound is None:
            raise self._inbound_refusal()
        if type(ciphertext) is not bytes:
            ciphertext = bytes(ciphertext)
        if len(ciphertext) > MAX_MESSAGE_BYTES:
            self._inbound_failed = True
            raise DecryptError(
                f"transport message of {len(ciphertext)} bytes is too large",
                reason=CloseReason.TOO_LARGE,
            )
        try:
            return inbound.decrypt_with_ad(None, ciphertext)  # type: ignore[no-any-return]
        except Exception as exc:  # InvalidTag (tamper, replay, reorder, short), nonce exhausted
            self._inbound_failed = True
            raise DecryptError("transport frame failed authentication") from exc

    def rekey_outbound(self) -> None:
        """Noise ``Rekey()`` (spec §11.3) of the sending key; the peer must call
        :meth:`rekey_inbound` at the same frame boundary. The nonce does not reset."""
        if self._outbound is None:
            raise LocalProtocolError("this side of a one-way pattern cannot send")
        self._outbound.rekey()

    def rekey_inbound(self) -> None:
        """Noise ``Rekey()`` of the receiving key, matching the peer's :meth:`rekey_outbound`."""
        if self._inbound_failed or self._inbound is None:
            raise self._inbound_refusal()
        self._inbound.rekey()

    def _inbound_refusal(self) -> LocalProtocolError:
        if self._inbound_failed:
            return LocalProtocolError("an earlier frame failed to decrypt; the link must close")
        return LocalProtocolError("this side of a one-way pattern cannot receive")


__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "KEY_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_PLAINTEXT_BYTES",
    "SUITE",
    "TAG_BYTES",
    "BytesLike",
    "NoiseHandshake",
    "NoiseTransport",
    "StaticKey",
]
