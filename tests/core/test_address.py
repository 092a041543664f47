"""The one address parser: each source's rules, and one spelling per address."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshmsg.core.address import (
    DIAL,
    HINT,
    LISTEN,
    STATIC_PEER,
    AddressRules,
    format_address,
    parse_address,
)
from meshmsg.errors import ConfigError

ALL = [DIAL, STATIC_PEER, HINT, LISTEN]


@pytest.mark.parametrize("rules", ALL, ids=lambda r: r.what)
@pytest.mark.parametrize(
    ("text", "expected"),
    [("10.0.0.1:7400", ("10.0.0.1", 7400)), ("[fd00::1]:1", ("fd00::1", 1))],
)
def test_every_source_accepts_ip_literals(
    rules: AddressRules, text: str, expected: tuple[str, int]
) -> None:
    assert parse_address(text, rules) == expected


@pytest.mark.parametrize(
    ("text", "accepted_by"),
    [
        ("relay.example.org:7400", {"address", "peer address", "hint"}),  # names: not to bind
        ("[fe80::1%eth0]:7400", {"address", "peer address", "listen address"}),  # not in a code
        ("0.0.0.0:0", {"listen address"}),  # "any port" only where we bind
    ],
)
def test_the_rules_differ_where_the_sources_differ(text: str, accepted_by: set[str]) -> None:
    accepted = set()
    for rules in ALL:
        try:
            parse_address(text, rules)
        except ValueError:
            continue
        accepted.add(rules.what)
    assert accepted == accepted_by


@pytest.mark.parametrize("rules", ALL, ids=lambda r: r.what)
@pytest.mark.parametrize(
    "text",
    [
        "10.0.0.1",  # no port
        "10.0.0.1:07400",  # a second spelling of port 7400
        "10.0.0.1:65536",
        "fd00::1:7400",  # IPv6 without brackets: which colon is the port's?
        "[fd00::zz]:1",
        "999.1.1.1:1",  # digits and dots that are no IPv4 address
        "-bad-.example:1",
        "héllo:1",
        ":1",
        "a" * 300 + ":1",
    ],
)
def test_every_source_refuses_what_is_no_address(rules: AddressRules, text: str) -> None:
    with pytest.raises(ValueError, match=rules.what):
        parse_address(text, rules)


def test_the_caller_chooses_the_error_type() -> None:
    with pytest.raises(ConfigError, match="bad peer address"):
        parse_address("nope", STATIC_PEER, ConfigError)


@given(
    host=st.one_of(
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(str),
        st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z]{2,5}){0,2}", fullmatch=True),
    ),
    port=st.integers(1, 65_535),
)
def test_format_and_parse_are_inverse(host: str, port: int) -> None:
    assert parse_address(format_address(host, port), DIAL) == (host, port)
