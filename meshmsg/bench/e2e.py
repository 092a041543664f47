"""How fast a B+ channel seals and opens, against the raw AEAD it is built on; tag index memory.

``measure_seal_open(n, size)`` runs, in one process and one run:

* ``seal_open_per_s``: ``n`` messages of ``size`` inner bytes sealed by one side and parsed and
  opened by the other (KDFs, tag window upkeep, padding, AEAD, parsing), median of repeats;
* ``raw_aead_per_s``: ``n`` XChaCha20-Poly1305 encrypt+decrypt pairs of ``size`` bytes through
  the same pynacl binding, median of repeats: the floor;
* ``raw_aead_padded_per_s``: the same at the padded size the envelope actually encrypts;
* ``ratio``: ``seal_open_per_s / raw_aead_per_s`` (1.0 would mean the schedule costs nothing);
* ``state_bytes`` and ``to_bytes_per_s``: the channel state the Node persists with every seal.

``measure_tag_index(contacts)`` pairs that many contacts into one :class:`TagIndex` and reports
entries and bytes per entry (tracemalloc), for the memory bound in docs/protocol/e2e.md.

Run: ``python -m meshmsg.bench.e2e -n 2000 --size 100 --size 1000 --size 16000``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
import tracemalloc
from collections.abc import Callable

import nacl.bindings

from meshmsg.config import MessageLimits
from meshmsg.core.e2e import ContactChannel, TagIndex, new_key_share
from meshmsg.core.envelope import OVERHEAD_BYTES, bucket_for, parse_envelope
from meshmsg.sysrng import SystemRng

T0 = 1_750_000_000.0
_IK_A = bytes([1]) * 32
_IK_B = bytes([2]) * 32


def _pair(limits: MessageLimits, rng: SystemRng) -> tuple[ContactChannel, ContactChannel]:
    secret_a, share_a = new_key_share(rng, T0, limits)
    secret_b, share_b = new_key_share(rng, T0, limits)
    a = ContactChannel.pair(
        our_ik=_IK_A, their_ik=_IK_B, our_secret=secret_a, ours=share_a, theirs=share_b,
        handshake_hash=bytes(64), now=T0, limits=limits,
    )  # fmt: skip
    b = ContactChannel.pair(
        our_ik=_IK_B, their_ik=_IK_A, our_secret=secret_b, ours=share_b, theirs=share_a,
        handshake_hash=bytes(64), now=T0, limits=limits,
    )  # fmt: skip
    return a, b


def _rate(n: int, run: Callable[[], None], repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def measure_seal_open(n: int, size: int, *, repeats: int = 5) -> dict[str, float]:
    """Seal+open rate of ``size``-byte messages next to the raw AEAD rate (see module doc)."""
    # One period must hold n messages from one contact; the default cap is 1,000.
    limits = dataclasses.replace(MessageLimits(), max_messages_per_period=max(n, 1))
    rng = SystemRng()
    inner = bytes(size)
    channels: list[tuple[ContactChannel, ContactChannel]] = []

    def seal_open() -> None:
        alice, bob = _pair(limits, rng)
        bob.register(TagIndex(), b"alice")
        for _ in range(n):
            sealed = alice.seal(inner, T0, 3_600.0, rng)
            bob.open(parse_envelope(sealed.envelope), T0)
        channels.append((alice, bob))

    key = rng.randbytes(32)
    padded = bytes(bucket_for(size, limits.envelope_size_buckets) - OVERHEAD_BYTES)

    def raw(plain: bytes) -> Callable[[], None]:
        def run() -> None:
            for _ in range(n):
                nonce = rng.randbytes(24)
                c = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, b"", nonce, key)
                nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(c, b"", nonce, key)

        return run

    seal_open_rate = _rate(n, seal_open, repeats)
    raw_rate = _rate(n, raw(inner), repeats)
    padded_rate = _rate(n, raw(padded), repeats)
    alice = channels[-1][0]
    state = alice.to_bytes()

    def persist() -> None:
        for _ in range(n):
            alice.to_bytes()

    return {
        "n": n,
        "size": size,
        "envelope_bytes": len(padded) + OVERHEAD_BYTES,
        "seal_open_per_s": seal_open_rate,
        "raw_aead_per_s": raw_rate,
        "raw_aead_padded_per_s": padded_rate,
        "ratio": seal_open_rate / raw_rate,
        "state_bytes": len(state),
        "to_bytes_per_s": _rate(n, persist, repeats),
    }


def measure_tag_index(contacts: int, limits: MessageLimits | None = None) -> dict[str, float]:
    """Pair ``contacts`` contacts into one index; memory of the receiving side (tracemalloc).

    Counts everything a node keeps per contact for recognition: the index entries, the tag
    bytes and the channel state, right after pairing (two periods of windows in the office
    profile: the current one and one ahead).
    """
    limits = limits or MessageLimits()
    rng = SystemRng()
    index = TagIndex(max_contacts=contacts)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = []
    for i in range(contacts):
        _, bob = _pair(limits, rng)
        bob.register(index, i.to_bytes(4, "big"))
        kept.append(bob)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {
        "contacts": contacts,
        "entries": len(index),
        "bytes_per_entry": used / max(len(index), 1),
        "bytes_per_contact": used / max(contacts, 1),
        "megabytes": used / 1e6,
    }


def main() -> None:  # pragma: no cover - command-line wrapper
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2_000)
    parser.add_argument("--size", type=int, action="append")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--contacts", type=int, default=256)
    args = parser.parse_args()
    for size in args.size or [100, 1_000, 16_000]:
        print(json.dumps(measure_seal_open(args.n, size, repeats=args.repeats)))
    print(json.dumps(measure_tag_index(args.contacts)))


if __name__ == "__main__":  # pragma: no cover
    main()
