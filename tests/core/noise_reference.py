"""A second, independent Noise implementation, used only by the tests.

It follows the Noise specification (rev 34, §§5, 7, 9, 11.3) for the one suite meshmsg uses,
``25519_ChaChaPoly_BLAKE2b``, on a different crypto stack from noiseprotocol: X25519 and
ChaCha20-Poly1305 come from libsodium (pynacl), BLAKE2b and HMAC from the standard library.
noiseprotocol uses OpenSSL through ``cryptography``. The published vectors check this code too
(``test_noise_vectors.py``), and it then produces the vectors that no public set has: our
protocol names ``Noise_XXpsk0_...`` and ``Noise_XX_...`` with the meshmsg prologue, and a rekey.

Deliberately small and slow; no validation beyond what the tests need. Never import it from
``meshmsg``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any

from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_decrypt,
    crypto_aead_chacha20poly1305_ietf_encrypt,
    crypto_scalarmult,
    crypto_scalarmult_base,
)

SUITE = "25519_ChaChaPoly_BLAKE2b"
HASHLEN = 64
MAX_NONCE = 2**64 - 1

# Noise spec §7.4 and §7.5: (pre-messages, messages); "->" is initiator to responder.
PATTERNS: dict[str, tuple[list[tuple[str, list[str]]], list[list[str]]]] = {
    "N": ([("<-", ["s"])], [["e", "es"]]),
    "K": ([("->", ["s"]), ("<-", ["s"])], [["e", "es", "ss"]]),
    "X": ([("<-", ["s"])], [["e", "es", "s", "ss"]]),
    "NN": ([], [["e"], ["e", "ee"]]),
    "NK": ([("<-", ["s"])], [["e", "es"], ["e", "ee"]]),
    "NX": ([], [["e"], ["e", "ee", "s", "es"]]),
    "KN": ([("->", ["s"])], [["e"], ["e", "ee", "se"]]),
    "KK": ([("->", ["s"]), ("<-", ["s"])], [["e", "es", "ss"], ["e", "ee", "se"]]),
    "KX": ([("->", ["s"])], [["e"], ["e", "ee", "se", "s", "es"]]),
    "XN": ([], [["e"], ["e", "ee"], ["s", "se"]]),
    "XK": ([("<-", ["s"])], [["e", "es"], ["e", "ee"], ["s", "se"]]),
    "XX": ([], [["e"], ["e", "ee", "s", "es"], ["s", "se"]]),
    "IN": ([], [["e", "s"], ["e", "ee", "se"]]),
    "IK": ([("<-", ["s"])], [["e", "es", "s", "ss"], ["e", "ee", "se"]]),
    "IX": ([], [["e", "s"], ["e", "ee", "se", "s", "es"]]),
}


def split_pattern(pattern: str) -> tuple[str, list[int]]:
    """``"XXpsk0+psk2"`` -> ``("XX", [0, 2])``."""
    base = re.match(r"[A-Z]*", pattern).group()  # type: ignore[union-attr]
    rest = pattern[len(base) :]
    return base, [int(m.removeprefix("psk")) for m in rest.split("+")] if rest else []


def messages_of(pattern: str) -> list[list[str]]:
    base, psks = split_pattern(pattern)
    messages = [list(m) for m in PATTERNS[base][1]]
    for index in psks:
        if index == 0:
            messages[0].insert(0, "psk")
        else:
            messages[index - 1].append("psk")
    return messages


def public_key(private: bytes) -> bytes:
    return crypto_scalarmult_base(private)


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.blake2b).digest()


def hkdf(ck: bytes, ikm: bytes, n: int) -> list[bytes]:
    temp = _hmac(ck, ikm)
    out = [_hmac(temp, b"\x01")]
    for i in range(2, n + 1):
        out.append(_hmac(temp, out[-1] + bytes([i])))
    return out


@dataclass
class Cipher:
    k: bytes | None = None
    n: int = 0

    def _nonce(self, n: int) -> bytes:
        return b"\x00" * 4 + n.to_bytes(8, "little")

    def encrypt(self, ad: bytes, plaintext: bytes) -> bytes:
        if self.k is None:
            return plaintext
        out: bytes = crypto_aead_chacha20poly1305_ietf_encrypt(
            plaintext, ad, self._nonce(self.n), self.k
        )
        self.n += 1
        return out

    def decrypt(self, ad: bytes, ciphertext: bytes) -> bytes:
        if self.k is None:
            return ciphertext
        out: bytes = crypto_aead_chacha20poly1305_ietf_decrypt(
            ciphertext, ad, self._nonce(self.n), self.k
        )
        self.n += 1
        return out

    def rekey(self) -> None:
        assert self.k is not None
        self.k = crypto_aead_chacha20poly1305_ietf_encrypt(
            b"\x00" * 32, b"", self._nonce(MAX_NONCE), self.k
        )[:32]


@dataclass
class Handshake:
    """One side of a handshake. Keys are raw 32-byte X25519 private/public keys."""

    pattern: str
    initiator: bool
    prologue: bytes
    s: bytes | None = None
    e: bytes | None = None
    rs: bytes | None = None
    psks: list[bytes] = field(default_factory=list)
    re: bytes | None = None
    h: bytes = b""
    ck: bytes = b""
    cipher: Cipher = field(default_factory=Cipher)
    index: int = 0

    def __post_init__(self) -> None:
        name = f"Noise_{self.pattern}_{SUITE}".encode()
        self.h = name.ljust(HASHLEN, b"\x00") if len(name) <= HASHLEN else self._hash(name)
        self.ck = self.h
        self.messages = messages_of(self.pattern)
        self.is_psk = "psk" in self.pattern
        self.psks = list(self.psks)
        self.mix_hash(self.prologue)
        # Pre-message keys (only "s" in these patterns), the initiator's first (spec §5.3).
        for direction, _tokens in PATTERNS[split_pattern(self.pattern)[0]][0]:
            ours = (direction == "->") == self.initiator
            key = self.rs if not ours else public_key(self.s) if self.s is not None else None
            assert key is not None
            self.mix_hash(key)

    @staticmethod
    def _hash(data: bytes) -> bytes:
        return hashlib.blake2b(data).digest()

    def mix_hash(self, data: bytes) -> None:
        self.h = self._hash(self.h + data)

    def mix_key(self, ikm: bytes) -> None:
        self.ck, k = hkdf(self.ck, ikm, 2)
        self.cipher = Cipher(k[:32])

    def mix_key_and_hash(self, ikm: bytes) -> None:
        self.ck, th, k = hkdf(self.ck, ikm, 3)
        self.mix_hash(th)
        self.cipher = Cipher(k[:32])

    def _dh(self, token: str) -> bytes:
        local, remote = token[0], token[1]  # "es": initiator's e with responder's s
        if not self.initiator:
            local, remote = remote, local
        mine = self.e if local == "e" else self.s
        theirs = self.re if remote == "e" else self.rs
        assert mine is not None
        assert theirs is not None
        return bytes(crypto_scalarmult(mine, theirs))

    def _token(self, token: str, message: bytearray, writing: bool) -> None:
        if token == "e":
            if writing:
                assert self.e is not None
                pub = public_key(self.e)
                message += pub
            else:
                pub = bytes(message[:32])
                del message[:32]
                self.re = pub
            self.mix_hash(pub)
            if self.is_psk:
                self.mix_key(pub)
        elif token == "s":
            if writing:
                assert self.s is not None
                message += self.encrypt_and_hash(public_key(self.s))
            else:
                size = 48 if self.cipher.k is not None else 32
                self.rs = self.decrypt_and_hash(bytes(message[:size]))
                del message[:size]
        elif token == "psk":
            self.mix_key_and_hash(self.psks.pop(0))
        else:
            self.mix_key(self._dh(token))

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    @property
    def finished(self) -> bool:
        return self.index == len(self.messages)

    def write_message(self, payload: bytes) -> bytes:
        out = bytearray()
        for token in self.messages[self.index]:
            self._token(token, out, writing=True)
        self.index += 1
        return bytes(out) + self.encrypt_and_hash(payload)

    def read_message(self, message: bytes) -> bytes:
        rest = bytearray(message)
        for token in self.messages[self.index]:
            self._token(token, rest, writing=False)
        self.index += 1
        return self.decrypt_and_hash(bytes(rest))

    def split(self) -> tuple[Cipher, Cipher]:
        """(send, receive) ciphers for this side."""
        k1, k2 = hkdf(self.ck, b"", 2)
        c1, c2 = Cipher(k1[:32]), Cipher(k2[:32])
        return (c1, c2) if self.initiator else (c2, c1)


# -- meshmsg's own vectors ---------------------------------------------------------------------

MESHMSG_PAYLOADS = [b"", b"hello from the responder", b"hello from the initiator"] + [
    b"transport %d" % n for n in range(4)
]


def derived_key(label: str) -> bytes:
    """A fixed, documented test key: BLAKE2b-256 of ``"meshmsg noise vector " + label``."""
    return hashlib.blake2b(f"meshmsg noise vector {label}".encode(), digest_size=32).digest()


def transcript(init: Handshake, resp: Handshake, payloads: list[bytes]) -> list[bytes]:
    """Send ``payloads`` in the vector order and return the messages. Handshake messages
    alternate from the initiator on; transport messages keep alternating, except in one-way
    patterns, where only the initiator sends. Each message is read back by the other side."""
    one_way = len(init.messages) == 1
    out = []
    ciphers: tuple[tuple[Cipher, Cipher], tuple[Cipher, Cipher]] | None = None
    for n, payload in enumerate(payloads):
        initiator_sends = one_way or n % 2 == 0
        if ciphers is None:
            writer, reader = (init, resp) if initiator_sends else (resp, init)
            message = writer.write_message(payload)
            assert reader.read_message(message) == payload
            if init.finished:
                ciphers = (init.split(), resp.split())
        else:
            (send, _), (_, receive) = ciphers if initiator_sends else ciphers[::-1]
            message = send.encrypt(b"", payload)
            assert receive.decrypt(b"", message) == payload
        out.append(message)
    return out


def make_vector(pattern: str, prologue: bytes, psks: list[bytes]) -> dict[str, Any]:
    """A vector in the cacophony format for a pattern both sides of which have a static key."""
    keys = {name: derived_key(f"{pattern} {name}") for name in ("is", "ie", "rs", "re")}
    init = Handshake(pattern, True, prologue, s=keys["is"], e=keys["ie"], psks=psks)
    resp = Handshake(pattern, False, prologue, s=keys["rs"], e=keys["re"], psks=psks)
    ciphertexts = transcript(init, resp, MESHMSG_PAYLOADS)
    messages = [
        {"payload": p.hex(), "ciphertext": c.hex()}
        for p, c in zip(MESHMSG_PAYLOADS, ciphertexts, strict=True)
    ]
    assert init.h == resp.h
    psk_fields = {"init_psks": [p.hex() for p in psks], "resp_psks": [p.hex() for p in psks]}
    return {
        "protocol_name": f"Noise_{pattern}_{SUITE}",
        "init_prologue": prologue.hex(),
        **(psk_fields if psks else {}),
        "init_static": keys["is"].hex(),
        "init_ephemeral": keys["ie"].hex(),
        "init_remote_static": public_key(keys["rs"]).hex(),
        "resp_prologue": prologue.hex(),
        "resp_static": keys["rs"].hex(),
        "resp_ephemeral": keys["re"].hex(),
        "resp_remote_static": public_key(keys["is"]).hex(),
        "handshake_hash": init.h.hex(),
        "messages": messages,
        "source": "meshmsg-reference",
    }


def meshmsg_vectors(prologue: bytes) -> str:
    """The content of ``tests/vectors/noise/meshmsg_vectors.json``: meshmsg's two protocols."""
    vectors = [
        make_vector("XX", prologue, []),
        make_vector("XXpsk0", prologue, [derived_key("XXpsk0 site key")]),
    ]
    return json.dumps({"vectors": vectors}, indent=1) + "\n"


# Regenerate: python -m tests.core.noise_reference > tests/vectors/noise/meshmsg_vectors.json
if __name__ == "__main__":
    from meshmsg.config import PROLOGUE

    print(meshmsg_vectors(PROLOGUE), end="")
