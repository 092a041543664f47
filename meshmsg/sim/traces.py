"""Readers and writers for the ONE simulator's trace formats (research note §4).

Contacts (``StandardEventsReader`` CONN lines, or ``ConnectivityONEReport`` output)::

    <time> CONN <hostA> <hostB> up|down [interface]

Message creations (``StandardEventsReader`` C lines)::

    <time> C <msgId> <from> <to> <size> [responseSize]

Host ids are digits, or letters followed by digits (``c42`` is address 42). Sizes accept the
ONE's suffixes k/M/G (powers of 1000) and kiB/MiB/GiB (powers of 1024). ``#`` comments and blank
lines are ignored; files may be gzip-compressed (detected by magic bytes, not the name). Readers
are lazy, so a long trace is never held in memory, and strict: any malformed line, a time going
backwards or an unknown action raises :class:`~meshmsg.errors.ConfigError` naming the file and
line.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from meshmsg.errors import ConfigError

_HOST_RE = re.compile(r"^[A-Za-z]*(\d+)$")
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)(k|M|G|kiB|MiB|GiB)?$")
_MULTIPLIERS = {
    None: 1,
    "k": 1_000,
    "M": 1_000_000,
    "G": 1_000_000_000,
    "kiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactEvent:
    """A link between ``a`` and ``b`` (``a < b``) on ``interface`` went up or down."""

    time: float
    a: int
    b: int
    up: bool
    interface: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageEvent:
    """The application at ``source`` writes ``size`` bytes to ``destination``."""

    time: float
    message_id: str
    source: int
    destination: int
    size: int


def parse_host(token: str) -> int:
    """``"c42"`` or ``"42"`` -> 42.

    Raises:
        ValueError: not a host id.
    """
    match = _HOST_RE.match(token)
    if match is None:
        raise ValueError(f"bad host id {token!r} (expected digits or letters then digits)")
    return int(match.group(1))


def parse_size(token: str) -> int:
    """``"1k"`` -> 1000, ``"2MiB"`` -> 2097152, ``"512"`` -> 512.

    Raises:
        ValueError: not a size.
    """
    match = _SIZE_RE.match(token)
    if match is None:
        raise ValueError(f"bad size {token!r} (expected a number with optional k/M/G/kiB/...)")
    value = float(match.group(1)) * _MULTIPLIERS[match.group(2)]
    if value != int(value):
        raise ValueError(f"size {token!r} is not a whole number of bytes")
    return int(value)


def open_text(path: Path) -> TextIO:
    """Open a trace, transparently un-gzipping it."""
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def read_events(path: Path) -> Iterator[ContactEvent | MessageEvent]:
    """Yield the CONN and C events of a ONE events file, in file order.

    Raises:
        ConfigError: unreadable file, malformed line, unsupported action or time going back.
    """
    try:
        handle = open_text(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open trace: {exc}") from exc
    last = float("-inf")
    with handle:
        try:
            for lineno, line in enumerate(handle, 1):
                fields = line.split()
                if not fields or fields[0].startswith("#"):
                    continue
                event = _parse_line(fields, path, lineno)
                if event.time < last:
                    raise ConfigError(f"{path}:{lineno}: time {event.time} goes back (from {last})")
                last = event.time
                yield event
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read trace: {exc}") from exc


def read_contacts(path: Path) -> Iterator[ContactEvent]:
    """Yield only CONN lines; any other action is an error (a contact trace was expected)."""
    for event in read_events(path):
        if not isinstance(event, ContactEvent):
            raise ConfigError(f"{path}: message event {event.message_id} in a contact trace")
        yield event


def read_messages(path: Path) -> Iterator[MessageEvent]:
    """Yield only C lines; any other action is an error (a message trace was expected)."""
    for event in read_events(path):
        if not isinstance(event, MessageEvent):
            raise ConfigError(f"{path}: contact event at t={event.time} in a message trace")
        yield event


def _parse_line(fields: list[str], path: Path, lineno: int) -> ContactEvent | MessageEvent:
    where = f"{path}:{lineno}"
    if len(fields) < 2:
        raise ConfigError(f"{where}: expected '<time> <action> ...'")
    try:
        time = float(fields[0])
    except ValueError:
        raise ConfigError(f"{where}: bad time {fields[0]!r}") from None
    if not time >= 0.0 or time == float("inf"):
        raise ConfigError(f"{where}: time must be finite and >= 0, got {fields[0]!r}")
    action = fields[1]
    try:
        if action == "CONN":
            return _parse_conn(time, fields, where)
        if action == "C":
            return _parse_create(time, fields, where)
    except ConfigError:
        raise  # already names the line (ConfigError is a ValueError: do not wrap it twice)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    raise ConfigError(
        f"{where}: unsupported action {action!r} (only CONN and C are replayed; "
        "S/DE/A/DR/R drive the ONE's PassiveRouter)"
    )


def _parse_conn(time: float, fields: list[str], where: str) -> ContactEvent:
    if len(fields) not in (5, 6):
        raise ConfigError(f"{where}: expected '<time> CONN <a> <b> up|down [interface]'")
    a, b = parse_host(fields[2]), parse_host(fields[3])
    if a == b:
        raise ConfigError(f"{where}: a node cannot connect to itself ({a})")
    state = fields[4]
    if state not in ("up", "down"):
        raise ConfigError(f"{where}: expected 'up' or 'down', got {state!r}")
    iface = fields[5] if len(fields) == 6 else None
    return ContactEvent(time=time, a=min(a, b), b=max(a, b), up=state == "up", interface=iface)


def _parse_create(time: float, fields: list[str], where: str) -> MessageEvent:
    if len(fields) not in (6, 7):
        raise ConfigError(f"{where}: expected '<time> C <id> <from> <to> <size> [responseSize]'")
    source, destination = parse_host(fields[3]), parse_host(fields[4])
    if source == destination:
        raise ConfigError(f"{where}: message {fields[2]} from a node to itself")
    size = parse_size(fields[5])
    if len(fields) == 7 and parse_size(fields[6]) != 0:
        raise ConfigError(f"{where}: request/response messages are not supported (responseSize)")
    return MessageEvent(
        time=time, message_id=fields[2], source=source, destination=destination, size=size
    )


class ContactLogWriter:
    """Writes the contact log in the ONE's format (``ConnectivityONEReport``).

    ``time CONN a b up|down`` with 2-decimal times and the lower address first; with
    ``interfaces=True`` the interface name is appended, so the file replays multi-interface runs.
    """

    __slots__ = ("_handle", "_interfaces")

    def __init__(self, handle: TextIO, *, interfaces: bool) -> None:
        self._handle = handle
        self._interfaces = interfaces

    def write(self, event: ContactEvent) -> None:
        state = "up" if event.up else "down"
        line = f"{event.time:.2f} CONN {event.a} {event.b} {state}"
        if self._interfaces and event.interface is not None:
            line += f" {event.interface}"
        self._handle.write(line + "\n")
