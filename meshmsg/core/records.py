"""The record table of the meshmsg protocol, version 1.

Every record that crosses a link is declared here, with its type code and field specs. The
codec (:mod:`meshmsg.core.wire`) turns them into bytes and back. ``wire.record_table([...])``
prints a layer's rows for its protocol doc; ``docs/protocol/wire.md`` carries the link records'
table, and a test keeps it current.

Type code plan (one byte; see the version policy in wire.py):

    0x00         reserved, never assigned (a zeroed buffer is never a valid record)
    0x01-0x0F    link layer: hello, close, keepalive, rekey
    0x10-0x7F    critical protocol records (sync, messaging) — an unknown one closes the link
    0x80-0xFF    ignorable records (hints, extensions) — an unknown one is skipped

Rules for adding a record: take the next free code in the right range, never reuse a code,
never change the fields of a published record (add a new record instead), give every bound a
reason, and add it to the registry of the layer that reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from meshmsg.core.wire import (
    UINT64_MAX,
    ListOf,
    Optional,
    RecordRegistry,
    Text,
    UInt,
    record,
    wire,
)

MAX_AGENT_BYTES: Final = 64  # a product name and version, never a fingerprintable essay
MAX_CLOSE_DETAIL_BYTES: Final = 256  # one line for logs; the reason code is what programs read
MAX_CAPABILITIES: Final = 32  # feature flags; 32 is far more than v1 defines

# --- Link layer: 0x01-0x0F ---------------------------------------------------------------------


@record(0x01)
@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """First record each side sends inside the encrypted session."""

    version: int = wire(UInt(max=0xFFFF))  # protocol version the sender speaks
    capabilities: tuple[int, ...] = wire(ListOf(UInt(max=0xFF), max_items=MAX_CAPABILITIES))
    agent: str | None = wire(Optional(Text(max_bytes=MAX_AGENT_BYTES)))  # e.g. "meshmsg/0.1"


@record(0x02)
@dataclass(frozen=True, slots=True, kw_only=True)
class Close:
    """The sender is closing the link; ``reason`` is a CloseReason code (unknown codes allowed)."""

    reason: int = wire(UInt(max=0xFF))
    detail: str = wire(Text(max_bytes=MAX_CLOSE_DETAIL_BYTES))


@record(0x03)
@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """Keepalive and liveness probe; the peer answers with a Pong carrying the same nonce."""

    nonce: int = wire(UInt(max=UINT64_MAX))


@record(0x04)
@dataclass(frozen=True, slots=True, kw_only=True)
class Pong:
    """Answer to a Ping."""

    nonce: int = wire(UInt(max=UINT64_MAX))


@record(0x05)
@dataclass(frozen=True, slots=True, kw_only=True)
class Rekey:
    """After the frame carrying this record, the sender's outbound key changes."""


LINK_RECORDS: Final = RecordRegistry([Hello, Close, Ping, Pong, Rekey])
"""Records the link layer reads from an established session."""
