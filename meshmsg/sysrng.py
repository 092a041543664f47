"""The operating system's CSPRNG behind the core's ``Rng`` protocol (used by net/ and the CLI)."""

from __future__ import annotations

import secrets


class SystemRng:
    """Randomness from the OS (``secrets`` draws from ``os.urandom``)."""

    def randbytes(self, n: int) -> bytes:
        return secrets.token_bytes(n)

    def randbelow(self, n: int) -> int:
        return secrets.randbelow(n)
