"""QR codes of contact codes and safety numbers: for a terminal, and as SVG or PNG bytes.

Terminal output packs two module rows into one line with the half-block characters, so a
contact code (QR version 10, 57 modules, plus the quiet zone) fits an 80-column terminal. By
default light modules are drawn (terminal foreground is light on most dark themes) and dark
modules are left blank; ``invert=True`` is for dark-on-light terminals. The quiet zone is drawn
too: a scanner needs it, and the terminal background around it may be any colour.
"""

from __future__ import annotations

import io
from typing import Final

import segno

from meshmsg.errors import InvalidContactCode

QUIET_ZONE: Final = 4  # modules; ISO/IEC 18004 asks for 4 around a QR code
ERROR_LEVEL: Final = "M"  # 15 % recovery: survives a smudged screen; segno boosts it if it fits
_HALF_BLOCKS: Final = {
    (True, True): "█",
    (True, False): "▀",
    (False, True): "▄",
    (False, False): " ",
}


def _make(text: str) -> segno.QRCode:
    try:
        return segno.make(text, error=ERROR_LEVEL, micro=False)
    except segno.DataOverflowError as exc:
        raise InvalidContactCode(f"text of {len(text)} characters does not fit a QR code") from exc


def matrix(text: str, *, border: int = QUIET_ZONE) -> list[list[bool]]:
    """The QR modules of ``text`` with ``border`` quiet modules around; True is dark.

    Raises:
        InvalidContactCode: the text does not fit a QR code.
    """
    return [[bool(m) for m in row] for row in _make(text).matrix_iter(border=border)]


def render_terminal(text: str, *, border: int = QUIET_ZONE, invert: bool = False) -> str:
    """Render ``text`` as a QR code of half-block characters, lines joined by newlines.

    Raises:
        InvalidContactCode: the text does not fit a QR code.
    """
    rows = [[dark == invert for dark in row] for row in matrix(text, border=border)]
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))  # below the code: nothing is drawn
    lines = (
        "".join(_HALF_BLOCKS[top, bottom] for top, bottom in zip(upper, lower, strict=True))
        for upper, lower in zip(rows[::2], rows[1::2], strict=True)
    )
    return "\n".join(lines)


def _save(text: str, kind: str, scale: int, border: int) -> bytes:
    out = io.BytesIO()
    _make(text).save(out, kind=kind, scale=scale, border=border)
    return out.getvalue()


def render_svg(text: str, *, scale: int = 4, border: int = QUIET_ZONE) -> bytes:
    """``text`` as an SVG document (UTF-8 bytes); ``scale`` is the module size in pixels.

    Raises:
        InvalidContactCode: the text does not fit a QR code.
    """
    return _save(text, "svg", scale, border)


def render_png(text: str, *, scale: int = 4, border: int = QUIET_ZONE) -> bytes:
    """``text`` as a PNG image (black on white); ``scale`` is the module size in pixels.

    Raises:
        InvalidContactCode: the text does not fit a QR code.
    """
    return _save(text, "png", scale, border)


__all__ = ["matrix", "render_png", "render_svg", "render_terminal"]
