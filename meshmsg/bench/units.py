"""How ``meshmsg bench`` prints figures: one function per unit."""

from __future__ import annotations

from typing import Final

KIB: Final = 1024
MIB: Final = 1024 * 1024


def plain(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def per_s(value: float) -> str:
    return f"{value:,.0f}/s"


def size(value: float) -> str:
    if value >= MIB:
        return f"{value / MIB:,.1f} MiB"
    if value >= KIB:
        return f"{value / KIB:,.1f} KiB"
    return f"{value:,.0f} B"


def seconds(value: float) -> str:
    return f"{value:.3f} s"


def whole_seconds(value: float) -> str:
    return f"{value:,.0f} s"


def speedup(value: float) -> str:
    return f"{value:,.0f}×"
