"""Text from peers, made safe for a terminal: never Rich markup, never raw control characters.

Anything a peer chose (message bodies, contact names, names in contact codes, addresses it
announced) can carry Rich markup (``[link=http://evil.example]...[/link]`` hides a link's
target, ``[red]Admin[/red]`` dresses up a name) or terminal controls (ESC sequences recolour
or rewrite the screen, OSC 8 makes hidden hyperlinks, bidi overrides reorder what is shown).
The CLI therefore shows such text only through this module:

* :func:`escape_controls` spells control characters out (``\\x1b``, ``\\u202e``);
* :func:`peer_text` wraps the result in a :class:`rich.text.Text`, which Rich never parses as
  markup: use it for table cells and for lines built with ``Text.assemble``;
* :func:`peer_markup` is for the rare place where peer text sits inside a markup string.
"""

from __future__ import annotations

import unicodedata
from typing import Final

from rich.markup import escape as escape_markup
from rich.text import Text

# Bidirectional formatting characters (Unicode's "Trojan Source" set, CVE-2021-42574), the same
# set the core refuses in display names (core/identity.py).
BIDI_CONTROLS: Final = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# Cc: C0, DEL and C1 controls; Zl/Zp: line and paragraph separators; Cs: lone surrogates
# (cannot even be encoded for the terminal).
_ESCAPED_CATEGORIES: Final = frozenset({"Cc", "Zl", "Zp", "Cs"})
_BODY_KEEPS: Final = frozenset("\n\t")  # a message may have lines; a name may not


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def is_unsafe(char: str) -> bool:
    """Whether ``char`` could change what a terminal shows around it."""
    return char in BIDI_CONTROLS or unicodedata.category(char) in _ESCAPED_CATEGORIES


def escape_controls(text: str, *, multiline: bool = False) -> str:
    """``text`` with every control character spelt out; ``multiline`` keeps line breaks and tabs.

    Printable text, including emoji and every script, is left as it is.
    """
    keep = _BODY_KEEPS if multiline else frozenset()
    return "".join(_escaped(c) if is_unsafe(c) and c not in keep else c for c in text)


def peer_text(value: object, style: str = "", *, multiline: bool = False) -> Text:
    """A peer-provided value as Rich text: literal (no markup), controls escaped."""
    shown = "" if value is None else str(value)
    return Text(escape_controls(shown, multiline=multiline), style=style)


def peer_markup(value: object) -> str:
    """A peer-provided value to put inside a Rich markup string: tags and controls escaped."""
    return escape_markup(escape_controls("" if value is None else str(value)))


__all__ = ["BIDI_CONTROLS", "escape_controls", "is_unsafe", "peer_markup", "peer_text"]
