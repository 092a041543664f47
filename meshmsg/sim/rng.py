"""Seeded randomness for the simulator and for tests: one master seed, independent named streams.

Each stream's seed is a hash of the master seed and the stream's name, so adding draws to one
stream (say, more traffic) never shifts another (the mobility): the determinism trap the ONE
falls into (research note §4.3). Not a CSPRNG: never use outside simulation and tests.
"""

from __future__ import annotations

import hashlib
import random


def stream_seed(master_seed: int, name: str) -> int:
    """Derive a 64-bit seed for the stream ``name`` from ``master_seed``."""
    digest = hashlib.blake2b(
        f"{master_seed}:{name}".encode(), digest_size=8, person=b"meshmsg-simrng"
    ).digest()
    return int.from_bytes(digest, "big")


class SeededRng:
    """Deterministic ``Rng`` (implements :class:`meshmsg.core.rng.Rng`) plus float helpers."""

    __slots__ = ("_random",)

    def __init__(self, master_seed: int, name: str = "") -> None:
        self._random = random.Random(stream_seed(master_seed, name))

    def randbytes(self, n: int) -> bytes:
        return self._random.randbytes(n)

    def randbelow(self, n: int) -> int:
        if n <= 0:
            raise ValueError("randbelow needs a positive bound")
        return self._random.randrange(n)

    def uniform(self, low: float, high: float) -> float:
        return self._random.uniform(low, high)

    def random(self) -> float:
        return self._random.random()

    def child(self, name: str) -> SeededRng:
        """A new independent stream derived from this one's next draw and ``name``."""
        return SeededRng(self._random.getrandbits(64), name)
