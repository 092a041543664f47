"""The ONE's trace formats: good lines, bad lines with line numbers, the contact-log writer."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshmsg.errors import ConfigError
from meshmsg.sim.traces import (
    ContactEvent,
    ContactLogWriter,
    MessageEvent,
    parse_host,
    parse_size,
    read_contacts,
    read_events,
    read_messages,
)

GOOD = """# a comment
0.10 CONN 19 30 up btInterface

11172.50 CONN c121 p120 down highspeedInterface
11172.50 CONN 3 4 up
32.0e3 C M1 c42 w46 1k
32000 C M2 p1 p2 2MiB 0
"""


def write(tmp_path: Path, text: str, *, gz: bool = False) -> Path:
    path = tmp_path / ("t.txt.gz" if gz else "t.txt")
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_reads_good_lines_plain_or_gzip(tmp_path: Path, gz: bool) -> None:
    events = list(read_events(write(tmp_path, GOOD, gz=gz)))
    assert events == [
        ContactEvent(time=0.1, a=19, b=30, up=True, interface="btInterface"),
        ContactEvent(time=11172.5, a=120, b=121, up=False, interface="highspeedInterface"),
        ContactEvent(time=11172.5, a=3, b=4, up=True, interface=None),
        MessageEvent(time=32000.0, message_id="M1", source=42, destination=46, size=1000),
        MessageEvent(time=32000.0, message_id="M2", source=1, destination=2, size=2 * 1024**2),
    ]


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("x CONN 1 2 up", "bad time"),
        ("-1 CONN 1 2 up", "finite and >= 0"),
        ("1 CONN 1 2 sideways", "'up' or 'down'"),
        ("1 CONN 1 2", "expected '<time> CONN"),
        ("1 CONN 2 2 up", "itself"),
        ("1 CONN 1 b up", "bad host id"),
        ("1 C M1 1 2", "expected '<time> C"),
        ("1 C M1 1 2 3q", "bad size"),
        ("1 C M1 1 2 1.5", "whole number"),
        ("1 C M1 1 2 10 5", "request/response"),
        ("1 C M1 2 2 10", "from a node to itself"),
        ("1 DE M1 1 2", "unsupported action 'DE'"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str, error: str) -> None:
    path = write(tmp_path, "# header\n0 CONN 0 1 up\n" + line + "\n")
    with pytest.raises(ConfigError, match=error) as info:
        list(read_events(path))
    assert str(info.value).count(f"{path}:3:") == 1  # named once, not once per layer


def test_time_going_back_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r":2: time 1.0 goes back"):
        list(read_events(write(tmp_path, "2 CONN 0 1 up\n1 CONN 0 1 down\n")))


def test_contact_and_message_readers_reject_the_other_kind(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError, match="message event M1 in a contact trace"):
        list(read_contacts(path))
    with pytest.raises(ConfigError, match="contact event"):
        list(read_messages(path))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open"):
        list(read_events(tmp_path / "absent.txt"))


def test_host_and_size_parsing() -> None:
    assert [parse_host(h) for h in ("42", "c42", "tram7")] == [42, 42, 7]
    assert [parse_size(s) for s in ("5", "1k", "1M", "1G", "1kiB", "1.5k")] == [
        5, 1000, 10**6, 10**9, 1024, 1500,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="bad host id"):
        parse_host("c")


events_strategy = st.lists(
    st.tuples(
        st.integers(0, 10**6),
        st.integers(0, 500),
        st.integers(0, 500),
        st.booleans(),
        st.sampled_from([None, "btInterface", "wifi"]),
    ).filter(lambda e: e[1] != e[2]),
    max_size=30,
)


@given(events_strategy)
def test_contact_log_round_trips(raw: list[tuple[int, int, int, bool, str | None]]) -> None:
    events = [
        ContactEvent(time=t / 100, a=min(a, b), b=max(a, b), up=u, interface=i)
        for t, a, b, u, i in sorted(raw, key=lambda e: e[0])
    ]
    buffer = io.StringIO()
    writer = ContactLogWriter(buffer, interfaces=True)
    for event in events:
        writer.write(event)
    lines = buffer.getvalue().splitlines()
    assert all(line.split()[0] == f"{e.time:.2f}" for line, e in zip(lines, events, strict=True))
    parsed = []
    for line in lines:
        fields = line.split()
        parsed.append(
            ContactEvent(
                time=float(fields[0]),
                a=int(fields[2]),
                b=int(fields[3]),
                up=fields[4] == "up",
                interface=fields[5] if len(fields) == 6 else None,
            )
        )
    assert parsed == events
