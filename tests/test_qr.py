"""QR rendering: the terminal form decodes back to exactly segno's modules."""

from __future__ import annotations

import io

import pytest
import segno
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmsg.app.qr import matrix, render_png, render_svg, render_terminal
from meshmsg.core.identity import Identity, encode_contact_code, safety_qr_payload
from meshmsg.errors import InvalidContactCode
from meshmsg.sim.rng import SeededRng

ALICE = Identity.generate(SeededRng(1, "identity"))
BOB = Identity.generate(SeededRng(2, "identity"))
CODE = encode_contact_code(ALICE.public, "Alice", ["192.168.1.5:7000"])
TOP = {"█": True, "▀": True, "▄": False, " ": False}
BOTTOM = {"█": True, "▀": False, "▄": True, " ": False}


def unrender(text: str, *, invert: bool = False) -> list[list[bool]]:
    """Read a terminal QR back into modules (True = dark)."""
    rows: list[list[bool]] = []
    for line in text.split("\n"):
        rows.append([TOP[c] == invert for c in line])
        rows.append([BOTTOM[c] == invert for c in line])
    return rows


def reference(text: str, border: int) -> list[list[bool]]:
    qr = segno.make(text, error="M", micro=False)
    return [[bool(m) for m in row] for row in qr.matrix_iter(border=border)]


def test_contact_code_fits_qr_alphanumeric_and_an_80_column_terminal() -> None:
    qr = segno.make(CODE, error="M", micro=False)
    assert qr.mode == "alphanumeric"
    lines = render_terminal(CODE).split("\n")
    assert all(len(line) == len(lines[0]) <= 80 for line in lines)
    assert len(lines) <= 40


def test_terminal_rendering_round_trips_to_the_modules() -> None:
    expected = reference(CODE, 4)
    rows = unrender(render_terminal(CODE))
    assert rows[: len(expected)] == expected
    assert rows[len(expected) :] in ([], [[True] * len(expected[0])])  # the filler row, not drawn


def test_the_quiet_zone_is_drawn_as_light_modules() -> None:
    lines = render_terminal(CODE, border=4).split("\n")
    assert set(lines[0]) == set(lines[1]) == {"█"}  # 4 light rows = 2 full lines
    assert all(line.startswith("████") and line.endswith("████") for line in lines[:-1])


def test_inverted_rendering_draws_dark_modules() -> None:
    expected = reference(CODE, 2)
    rows = unrender(render_terminal(CODE, border=2, invert=True), invert=True)
    assert rows[: len(expected)] == expected
    assert render_terminal(CODE, invert=True).split("\n")[0].strip() == ""


@settings(max_examples=50)
@given(st.text(st.sampled_from("0123456789ABCDEFGHJKMNPQRSTVWXYZ:"), min_size=1, max_size=300))
def test_any_text_round_trips(text: str) -> None:
    expected = reference(text, 1)
    assert matrix(text, border=1) == expected
    assert unrender(render_terminal(text, border=1))[: len(expected)] == expected


def test_safety_payload_renders() -> None:
    payload = safety_qr_payload(ALICE.public.identity_key, BOB.public.identity_key)
    assert matrix(payload, border=0) == reference(payload, 0)


def test_svg_and_png_bytes() -> None:
    svg = render_svg(CODE, scale=2)
    assert svg.startswith(b"<?xml")
    assert b"<svg" in svg
    png = render_png(CODE, scale=3, border=4)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_png_pixels_are_the_modules() -> None:
    image_module = pytest.importorskip("PIL.Image")
    expected = reference(CODE, 4)
    image = image_module.open(io.BytesIO(render_png(CODE, scale=3))).convert("L")
    assert image.size == (len(expected) * 3, len(expected) * 3)
    pixels = [
        [image.getpixel((x * 3 + 1, y * 3 + 1)) == 0 for x in range(len(expected))]
        for y in range(len(expected))
    ]
    assert pixels == expected


def test_too_much_text_is_a_clear_error() -> None:
    with pytest.raises(InvalidContactCode, match="does not fit"):
        render_terminal("A" * 5000)
