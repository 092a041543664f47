"""The one parser of ``host:port`` addresses; where they come from decides only its rules.

Four places read addresses, each with a reason for its own rule, and all go through
:func:`parse_address`:

* ``DIAL`` — addresses the driver dials (from discovery or static peers, already checked there):
  DNS names, IPv4, bracketed IPv6 with a scope id (``fe80::1%eth0`` is how link-local works).
* ``STATIC_PEER`` — ``network.static_peers`` in ``config.toml``: the same as ``DIAL``.
* ``HINT`` — the address hints inside a contact code: no scope id (it names an interface of the
  *sender's* machine, meaningless on ours), and the contact code's byte limit.
* ``LISTEN`` — ``network.listen``: an IP literal (we bind it, we do not resolve it); port 0
  means "any free port", so it is allowed here and only here.

Every rule refuses what would make one address have two spellings (leading zeros in the port,
an IPv6 literal without brackets), so that duplicates are caught by comparing strings.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from meshmsg.config import CONTACT_HINT_MAX_BYTES

HOSTNAME_MAX: Final = 253  # RFC 1035 §2.3.4
_LABEL: Final = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_PORT: Final = re.compile(r"0|[1-9][0-9]{0,4}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressRules:
    """What one source of addresses accepts (see the module docstring)."""

    what: str
    """How errors name the address ("peer address", "hint", ...)."""
    names: bool = True
    """DNS names are allowed; otherwise only IP literals."""
    scope_ids: bool = False
    """IPv6 scope ids (``%eth0``) are allowed."""
    port_zero: bool = False
    """Port 0 ("any free port") is allowed."""
    max_length: int = HOSTNAME_MAX + 8  # the longest name, brackets, colon and a 5-digit port


DIAL: Final = AddressRules(what="address", scope_ids=True)
STATIC_PEER: Final = AddressRules(what="peer address", scope_ids=True)
HINT: Final = AddressRules(what="hint", max_length=CONTACT_HINT_MAX_BYTES)
LISTEN: Final = AddressRules(what="listen address", names=False, scope_ids=True, port_zero=True)


def parse_address(
    text: str, rules: AddressRules, error: Callable[[str], Exception] = ValueError
) -> tuple[str, int]:
    """Split ``host:port`` or ``[ipv6]:port`` into host (without brackets) and port.

    Raises:
        Exception: ``error(message)`` for anything ``rules`` does not accept.
    """
    if not text.isascii() or len(text) > rules.max_length:
        raise error(f"bad {rules.what} {text[:80]!r}: not ASCII or too long")
    host, sep, port = text.rpartition(":")
    low = 0 if rules.port_zero else 1
    if not sep or not _PORT.fullmatch(port) or not low <= int(port) <= 65_535:
        raise error(f"bad {rules.what} {text!r}: expected host:port with port {low}-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        _check_ipv6(host, text, rules, error)
    elif not _valid_host(host, rules.names):
        kind = "host" if rules.names else "IP address"
        raise error(f"bad {rules.what} {text!r}: invalid {kind} (IPv6 needs [brackets])")
    return host, int(port)


def format_address(host: str, port: int) -> str:
    """The inverse of :func:`parse_address`: brackets around IPv6 hosts."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_ipv6(
    host: str, text: str, rules: AddressRules, error: Callable[[str], Exception]
) -> None:
    if "%" in host and not rules.scope_ids:
        raise error(f"bad {rules.what} {text!r}: IPv6 scope ids are not allowed")
    try:
        ipaddress.IPv6Address(host)
    except ValueError as exc:
        raise error(f"bad {rules.what} {text!r}: invalid IPv6 address") from exc


def _valid_host(host: str, names: bool) -> bool:
    labels = host.split(".")
    looks_numeric = all(label.isdigit() for label in labels)
    if looks_numeric or not names:  # digits and dots must be a real IPv4 address
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    return 0 < len(host) <= HOSTNAME_MAX and all(_LABEL.fullmatch(x) for x in labels)
