"""meshmsg: a serverless, offline-capable peer-to-peer mesh messenger."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
