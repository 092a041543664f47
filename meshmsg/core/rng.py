"""Injected randomness.

The core never draws randomness by itself: every key, nonce and choice comes from an ``Rng``
passed in by the driver. ``net/`` passes :class:`meshmsg.sysrng.SystemRng` (the OS CSPRNG);
the simulator passes a seeded generator so a run is reproducible from its seed.
"""

from __future__ import annotations

from typing import Protocol


class Rng(Protocol):
    """Source of random bytes and choices for the core."""

    def randbytes(self, n: int) -> bytes:
        """Return ``n`` random bytes (key material in production: must be a CSPRNG)."""
        ...

    def randbelow(self, n: int) -> int:
        """Return a uniform integer in ``[0, n)``; ``n`` must be positive."""
        ...
