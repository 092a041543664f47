"""Identities, contact codes and safety numbers (sans-IO).

Theory of operation
-------------------
A user is an :class:`Identity`: three independent random secrets, one per purpose (Noise spec
§14, the SHS lesson that one key must never serve two protocols):

* an Ed25519 *identity key*, used only to sign the device certificate;
* an X25519 key that is the Noise static key of every link;
* an X25519 key for end-to-end message keys.

What others learn is a :class:`PublicIdentity`: the three public keys and the *device
certificate*, an Ed25519 signature by the identity key over a domain-separated encoding of the
two X25519 public keys. Whoever checks the certificate knows that the Noise and E2E keys belong
to the identity key; whoever has compared the safety number knows the identity key belongs to
the person. ``peer_id`` (a hash of the identity key) names a peer everywhere in the code.

A *contact code* carries a public identity, an optional display name and address hints as short
uppercase text (``MM1:`` + Crockford base32) that fits a QR code's alphanumeric mode. A 40-bit
checksum catches typos; the certificate catches keys swapped in from another identity. Name and
hints are *not* signed: they are claims, shown as such. Byte layouts: docs/protocol/identity.md.

The *safety number* is Signal's numeric fingerprint (5,200 iterations of SHA-512 per side, 30
digits per side, sorted so both people see the same 60 digits).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Final

import nacl.bindings
import nacl.exceptions
import nacl.signing

from meshmsg.config import (
    CONTACT_HINT_MAX_BYTES,
    CONTACT_MAX_HINTS,
    CONTACT_NAME_MAX_BYTES,
    MessageLimits,
)
from meshmsg.core.address import HINT, parse_address
from meshmsg.core.cursor import ByteCursor
from meshmsg.core.rng import Rng
from meshmsg.errors import InvalidContactCode, KeystoreError

KEY_BYTES: Final = 32  # Ed25519 seeds and public keys, X25519 private and public keys
SIGNATURE_BYTES: Final = 64  # Ed25519
PEER_ID_BYTES: Final = 16  # 128 bits: no accidental collision among any number of peers we meet

IDENTITY_VERSION: Final = 1  # first byte of Identity.to_bytes()
PUBLIC_VERSION: Final = 1  # first byte of PublicIdentity.to_bytes() and of a contact code
IDENTITY_BYTES: Final = 1 + 3 * KEY_BYTES  # version, signing seed, Noise private, E2E private
PUBLIC_BYTES: Final = 1 + 3 * KEY_BYTES + SIGNATURE_BYTES  # version, 3 public keys, certificate

# Domain separation: each hash or signature input starts with a string used nowhere else.
CERTIFICATE_CONTEXT: Final = b"meshmsg device certificate v1"
_PEER_ID_PERSON: Final = b"meshmsg/peer-id"  # BLAKE2b personalisation (at most 16 bytes)
_CHECKSUM_PERSON: Final = b"meshmsg/cc-check"

CONTACT_PREFIX: Final = "MM1:"  # "MM" + format version; ':' is in QR's alphanumeric set
CHECKSUM_BYTES: Final = 5  # 40 bits: a random typo slips through once in 10^12
_MIN_CONTACT_BYTES: Final = PUBLIC_BYTES + 1 + 1 + CHECKSUM_BYTES  # no name, no hints
_MAX_CONTACT_BYTES: Final = (
    PUBLIC_BYTES + 1 + CONTACT_NAME_MAX_BYTES + 1
    + CONTACT_MAX_HINTS * (1 + CONTACT_HINT_MAX_BYTES) + CHECKSUM_BYTES
)  # fmt: skip

# Signal's NumericFingerprintGenerator: format version 0, 5,200 iterations, 5-byte chunks.
SAFETY_ITERATIONS: Final = 5_200
_SAFETY_FORMAT_VERSION: Final = b"\x00\x00"
# Signal hashes a "stable identifier" (a phone number) after the key; our key is the identifier,
# so that slot holds a domain string instead.
_SAFETY_DOMAIN: Final = b"meshmsg safety number v1"
SAFETY_QR_PREFIX: Final = "MMSN1:"
_SAFETY_QR_HALF_BYTES: Final = 32  # per side, as in Signal's scannable fingerprint
FINGERPRINT_CHARS: Final = 16  # 80 bits of the peer id, 4 groups of 4 base32 characters


# --- Crockford base32 ----------------------------------------------------------------------------
# Crockford's alphabet leaves out I, L, O and U; a reader may type O for 0 and I or L for 1.
# Digits and capitals only: every code fits the QR alphanumeric mode.

_B32_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_B32_VALUES: Final = {c: i for i, c in enumerate(_B32_ALPHABET)} | {"O": 0, "I": 1, "L": 1}


def b32encode(data: bytes) -> str:
    """Encode ``data`` as Crockford base32: uppercase, no padding, zero bits at the end."""
    nbits = len(data) * 8
    nchars = -(-nbits // 5)
    value = int.from_bytes(data, "big") << (nchars * 5 - nbits)
    return "".join(_B32_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(nchars)))


def _b32_parse(text: str) -> tuple[bytes, bool]:
    """Decode the whole bytes of ``text``; also say whether the text is the canonical encoding.

    A canonical text has a length some byte string encodes to and zero padding bits, so that
    exactly one text decodes to given bytes (otherwise a typo in the last character could pass).
    """
    value = 0
    for position, char in enumerate(text):
        digit = _B32_VALUES.get(char)
        if digit is None:
            raise InvalidContactCode(f"invalid character {char!r} at position {position} (typo?)")
        value = (value << 5) | digit
    nbytes, pad_bits = divmod(len(text) * 5, 8)
    canonical = pad_bits < 5 and not value & ((1 << pad_bits) - 1)
    return (value >> pad_bits).to_bytes(nbytes, "big"), canonical


def b32decode(text: str) -> bytes:
    """Decode canonical Crockford base32 (uppercase; O, I and L read as 0, 1 and 1).

    Raises:
        InvalidContactCode: a character outside the alphabet, an impossible length, or padding
            bits that are not zero.
    """
    data, canonical = _b32_parse(text)
    if not canonical:
        raise InvalidContactCode("not canonical base32: a character is wrong, missing or extra")
    return data


# --- Identities ----------------------------------------------------------------------------------


def peer_id_of(identity_key: bytes) -> bytes:
    """The stable 16-byte id of the peer whose Ed25519 identity public key is ``identity_key``."""
    return hashlib.blake2b(identity_key, digest_size=PEER_ID_BYTES, person=_PEER_ID_PERSON).digest()


def _certificate_message(noise_key: bytes, e2e_key: bytes) -> bytes:
    # Fixed-length fields after a constant context: the encoding is unambiguous.
    return CERTIFICATE_CONTEXT + noise_key + e2e_key


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicIdentity:
    """What a peer publishes: three public keys bound together by the device certificate.

    Instances built directly are not checked until :meth:`verify`; :meth:`from_bytes` and
    :func:`decode_contact_code` always verify.
    """

    identity_key: bytes  # Ed25519 public key: the person
    noise_key: bytes  # X25519 public key: the Noise static key of this device
    e2e_key: bytes  # X25519 public key: end-to-end messages
    certificate: bytes  # Ed25519 signature by identity_key over the two X25519 keys
    peer_id: bytes = field(init=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("identity_key", "noise_key", "e2e_key"):
            if len(getattr(self, name)) != KEY_BYTES:
                raise InvalidContactCode(f"{name} must be {KEY_BYTES} bytes")
        if len(self.certificate) != SIGNATURE_BYTES:
            raise InvalidContactCode(f"certificate must be {SIGNATURE_BYTES} bytes")
        object.__setattr__(self, "peer_id", peer_id_of(self.identity_key))

    def verify(self) -> None:
        """Check the device certificate.

        Raises:
            InvalidContactCode: the signature does not bind these keys to the identity key.
        """
        message = _certificate_message(self.noise_key, self.e2e_key)
        try:
            nacl.signing.VerifyKey(self.identity_key).verify(message, self.certificate)
        except nacl.exceptions.CryptoError as exc:  # BadSignatureError, or an invalid point
            raise InvalidContactCode(
                "bad signature: the keys are not bound to this identity (forged or corrupted code)"
            ) from exc

    def to_bytes(self) -> bytes:
        """Strict fixed layout: version, identity key, Noise key, E2E key, certificate."""
        return (
            bytes([PUBLIC_VERSION]) + self.identity_key + self.noise_key + self.e2e_key
            + self.certificate
        )  # fmt: skip

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicIdentity:
        """Parse :meth:`to_bytes` output and verify the certificate.

        Raises:
            InvalidContactCode: wrong length or version, or a bad certificate.
        """
        if len(data) != PUBLIC_BYTES:
            raise InvalidContactCode(f"public identity must be {PUBLIC_BYTES} bytes")
        if data[0] != PUBLIC_VERSION:
            raise InvalidContactCode(f"unsupported public identity version {data[0]}")
        keys = [data[1 + i * KEY_BYTES : 1 + (i + 1) * KEY_BYTES] for i in range(3)]
        public = cls(
            identity_key=keys[0],
            noise_key=keys[1],
            e2e_key=keys[2],
            certificate=data[1 + 3 * KEY_BYTES :],
        )
        public.verify()
        return public


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """The private keys of this node. ``repr`` shows only the public part.

    The three secrets are independent random values: none is derived from another, so a flaw in
    one protocol's use of its key reveals nothing about the others.
    """

    signing_seed: bytes = field(repr=False)  # Ed25519 seed of the identity key
    noise_private: bytes = field(repr=False)  # X25519 private key, Noise static
    e2e_private: bytes = field(repr=False)  # X25519 private key, end-to-end
    public: PublicIdentity = field(init=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("signing_seed", "noise_private", "e2e_private"):
            if len(getattr(self, name)) != KEY_BYTES:
                raise KeystoreError(f"identity: {name} must be {KEY_BYTES} bytes")
        signing_key = nacl.signing.SigningKey(self.signing_seed)
        noise_key = nacl.bindings.crypto_scalarmult_base(self.noise_private)
        e2e_key = nacl.bindings.crypto_scalarmult_base(self.e2e_private)
        certificate = signing_key.sign(_certificate_message(noise_key, e2e_key)).signature
        public = PublicIdentity(
            identity_key=bytes(signing_key.verify_key),
            noise_key=noise_key,
            e2e_key=e2e_key,
            certificate=certificate,
        )
        object.__setattr__(self, "public", public)

    @property
    def peer_id(self) -> bytes:
        """This node's 16-byte peer id (see :func:`peer_id_of`)."""
        return self.public.peer_id

    @classmethod
    def generate(cls, rng: Rng) -> Identity:
        """Draw a new identity from ``rng``: signing seed, then Noise key, then E2E key."""
        return cls(
            signing_seed=rng.randbytes(KEY_BYTES),
            noise_private=rng.randbytes(KEY_BYTES),
            e2e_private=rng.randbytes(KEY_BYTES),
        )

    def to_bytes(self) -> bytes:
        """Strict fixed layout (97 bytes): version, signing seed, Noise private, E2E private."""
        return bytes([IDENTITY_VERSION]) + self.signing_seed + self.noise_private + self.e2e_private

    @classmethod
    def from_bytes(cls, data: bytes) -> Identity:
        """Parse :meth:`to_bytes` output (normally the plaintext of the keystore).

        Raises:
            KeystoreError: wrong length or unknown version.
        """
        if len(data) != IDENTITY_BYTES:
            raise KeystoreError(f"identity record must be {IDENTITY_BYTES} bytes, not {len(data)}")
        if data[0] != IDENTITY_VERSION:
            raise KeystoreError(f"unsupported identity record version {data[0]}")
        seed, noise, e2e = (data[1 + i * KEY_BYTES : 1 + (i + 1) * KEY_BYTES] for i in range(3))
        return cls(signing_seed=seed, noise_private=noise, e2e_private=e2e)


# --- Names and address hints ---------------------------------------------------------------------

# Bidirectional controls can make a name display as another (the "Trojan Source" trick).
_BIDI_CONTROLS: Final = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def _check_name(name: str) -> bytes:
    """Return the UTF-8 of a display name, or raise if it could not be shown safely."""
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise InvalidContactCode("display name is not valid Unicode") from exc
    if len(encoded) > CONTACT_NAME_MAX_BYTES:
        raise InvalidContactCode(f"display name is longer than {CONTACT_NAME_MAX_BYTES} bytes")
    for char in name:
        # Control characters and line breaks could rewrite what a terminal shows around the name.
        if unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI_CONTROLS:
            raise InvalidContactCode(f"display name contains control character U+{ord(char):04X}")
    return encoded


def parse_hint(hint: str) -> tuple[str, int]:
    """Split an address hint ``host:port`` (IPv6 in brackets) into host and port.

    Raises:
        InvalidContactCode: anything :data:`~meshmsg.core.address.HINT` refuses.
    """
    return parse_address(hint, HINT, InvalidContactCode)


def _check_hints(hints: tuple[str, ...]) -> None:
    if len(hints) > CONTACT_MAX_HINTS:
        raise InvalidContactCode(f"at most {CONTACT_MAX_HINTS} address hints")
    if len(set(hints)) != len(hints):
        raise InvalidContactCode("duplicate address hint")
    for hint in hints:
        parse_hint(hint)


# --- Contact codes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactCard:
    """A decoded contact code: ``public`` is verified; ``name`` and ``hints`` are unsigned."""

    public: PublicIdentity
    name: str | None = None
    hints: tuple[str, ...] = ()

    @property
    def peer_id(self) -> bytes:
        return self.public.peer_id


def _checksum(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=CHECKSUM_BYTES, person=_CHECKSUM_PERSON).digest()


def encode_contact_code(
    public: PublicIdentity, name: str | None = None, hints: tuple[str, ...] | list[str] = ()
) -> str:
    """Encode a contact code: ``MM1:`` + base32(version, keys, certificate, name, hints, checksum).

    An empty name is the same as no name.

    Raises:
        InvalidContactCode: bad certificate, name or hints (same rules as decoding).
    """
    public.verify()
    hints = tuple(hints)
    name_bytes = _check_name(name) if name else b""
    _check_hints(hints)
    body = bytearray(public.to_bytes())
    body += bytes([len(name_bytes)]) + name_bytes
    body.append(len(hints))
    for hint in hints:
        body += bytes([len(hint)]) + hint.encode("ascii")
    return CONTACT_PREFIX + b32encode(bytes(body) + _checksum(bytes(body)))


def _normalize(text: str) -> str:
    """Forgive what a person adds or changes when copying: case, whitespace and dashes."""
    return "".join(text.split()).replace("-", "").upper()


def _strip_prefix(text: str) -> str:
    if text.startswith(CONTACT_PREFIX):
        return text[len(CONTACT_PREFIX) :]
    version = re.match(r"MM([0-9]+):", text)
    if version:
        raise InvalidContactCode(
            f"contact code version {version.group(1)} is not supported (this meshmsg reads MM1)"
        )
    raise InvalidContactCode(f"not a meshmsg contact code: it should start with {CONTACT_PREFIX!r}")


def _announced_length(data: bytes) -> int:
    """The total length the length bytes announce, as far as ``data`` reaches (a lower bound)."""
    pos = PUBLIC_BYTES
    if len(data) <= pos:
        return _MIN_CONTACT_BYTES
    pos += 1 + data[pos]  # name
    if len(data) <= pos:
        return pos + 1 + CHECKSUM_BYTES
    count, pos = data[pos], pos + 1
    for _ in range(count):
        if len(data) <= pos:
            return pos + 1 + CHECKSUM_BYTES
        pos += 1 + data[pos]  # one hint
    return pos + CHECKSUM_BYTES


def _parse_extras(body: bytes) -> tuple[str | None, tuple[str, ...]]:
    """Parse name and hints after the public identity; ``body`` excludes the checksum."""
    reader = ByteCursor(
        body, error=InvalidContactCode, truncated="contact code is truncated", start=PUBLIC_BYTES
    )
    name_bytes = reader.take(reader.u8())
    if len(name_bytes) > CONTACT_NAME_MAX_BYTES:
        raise InvalidContactCode(f"display name is longer than {CONTACT_NAME_MAX_BYTES} bytes")
    try:
        name = name_bytes.decode("utf-8") if name_bytes else None
    except UnicodeDecodeError as exc:
        raise InvalidContactCode("display name is not valid UTF-8") from exc
    if name is not None:
        _check_name(name)
    hint_count = reader.u8()
    if hint_count > CONTACT_MAX_HINTS:
        raise InvalidContactCode(f"at most {CONTACT_MAX_HINTS} address hints")
    raw_hints = [reader.take(reader.u8()) for _ in range(hint_count)]
    reader.expect_end("trailing bytes after the address hints")
    if any(not raw.isascii() for raw in raw_hints):
        raise InvalidContactCode("bad hint: not ASCII")
    hints = tuple(raw.decode("ascii") for raw in raw_hints)
    _check_hints(hints)
    return name, hints


def decode_contact_code(text: str) -> ContactCard:
    """Decode and verify a contact code. Case, whitespace and dashes are ignored.

    Raises:
        InvalidContactCode: bad prefix or version, a typo (checksum), a truncated code, a bad
            name or hint, or keys that the certificate does not bind to the identity.
    """
    if len(text) > 4 * _MAX_CONTACT_BYTES:  # generous for whitespace and dashes; bounds the work
        raise InvalidContactCode("text is far too long for a contact code")
    data, canonical = _b32_parse(_strip_prefix(_normalize(text)))
    if len(data) < _announced_length(data):
        raise InvalidContactCode("contact code is truncated (or a length byte is mistyped)")
    if len(data) > _MAX_CONTACT_BYTES:
        raise InvalidContactCode("contact code is too long")
    body, check = data[:-CHECKSUM_BYTES], data[-CHECKSUM_BYTES:]
    if not canonical or not hmac.compare_digest(_checksum(body), check):
        raise InvalidContactCode("contact code checksum mismatch (typo?)")
    if body[0] != PUBLIC_VERSION:
        raise InvalidContactCode(f"unsupported contact code payload version {body[0]}")
    name, hints = _parse_extras(body)
    public = PublicIdentity.from_bytes(body[:PUBLIC_BYTES])
    return ContactCard(public=public, name=name, hints=hints)


# --- Safety numbers and fingerprints -------------------------------------------------------------


def _check_key(key: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise InvalidContactCode(f"an identity key is {KEY_BYTES} bytes, not {len(key)}")


def safety_hash(key: bytes, stable_id: bytes, iterations: int = SAFETY_ITERATIONS) -> bytes:
    """One side of Signal's numeric fingerprint: SHA-512 iterated over (version, key, id).

    Exposed with ``stable_id`` and ``iterations`` so that libsignal's published vectors can
    check this implementation; meshmsg itself always uses :func:`safety_number`.
    """
    digest = _SAFETY_FORMAT_VERSION + key + stable_id
    for _ in range(iterations):
        digest = hashlib.sha512(digest + key).digest()
    return digest


@functools.lru_cache(maxsize=MessageLimits().max_contacts + 1)
def _safety_side(key: bytes) -> bytes:
    """Our key's or a contact's half of the safety number (5,200 SHA-512 calls, 5.3 ms),
    remembered: listing 100 contacts computed 400 of them on every ``GET /contacts``. Sized
    for every contact and our own key."""
    return safety_hash(key, _SAFETY_DOMAIN)


def _safety_digits(digest: bytes) -> str:
    # Five bytes per group (2^40 >> 10^5) keep the digits uniform; Signal's choice.
    return "".join(
        f"{int.from_bytes(digest[i : i + 5], 'big') % 100_000:05d}" for i in range(0, 30, 5)
    )


def safety_number(a: bytes, b: bytes) -> str:
    """The 60-digit safety number of two identity keys, as 12 groups of 5 digits.

    Order-independent: both people see the same number, whoever is ``a``.

    Raises:
        InvalidContactCode: a key is not 32 bytes.
    """
    _check_key(a)
    _check_key(b)
    halves = sorted(_safety_digits(_safety_side(key)) for key in (a, b))
    digits = "".join(halves)
    return " ".join(digits[i : i + 5] for i in range(0, 60, 5))


def safety_qr_payload(a: bytes, b: bytes) -> str:
    """QR text for comparing safety numbers by scanning: ``MMSN1:`` + base32 of both sides.

    Each side contributes the first 32 bytes of its iterated hash (as Signal's scannable form);
    the two are sorted, so the payload is order-independent and equal on both phones.

    Raises:
        InvalidContactCode: a key is not 32 bytes.
    """
    _check_key(a)
    _check_key(b)
    halves = sorted(_safety_side(key)[:_SAFETY_QR_HALF_BYTES] for key in (a, b))
    return SAFETY_QR_PREFIX + b32encode(b"".join(halves))


def safety_qr_matches(scanned: str, a: bytes, b: bytes) -> bool:
    """Whether a scanned safety QR text belongs to this pair of identity keys."""
    expected = safety_qr_payload(a, b)
    return hmac.compare_digest(_normalize(scanned).encode(), expected.encode())


def fingerprint(public: PublicIdentity) -> str:
    """Short display form of a peer id, e.g. ``7ZQ4-M1C9-XK2P-0D3E`` (80 bits).

    For recognising a contact in a list; verification compares the safety number.
    """
    text = b32encode(public.peer_id[: FINGERPRINT_CHARS * 5 // 8])
    return "-".join(text[i : i + 4] for i in range(0, FINGERPRINT_CHARS, 4))


__all__ = [
    "ContactCard",
    "Identity",
    "PublicIdentity",
    "b32decode",
    "b32encode",
    "decode_contact_code",
    "encode_contact_code",
    "fingerprint",
    "parse_hint",
    "peer_id_of",
    "safety_hash",
    "safety_number",
    "safety_qr_matches",
    "safety_qr_payload",
]
