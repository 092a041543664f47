"""The fuzz targets in the normal test run: every corpus input, a few hypothesis inputs, and
checks that the harness reaches deep states and does not swallow crashes.

The long, coverage-guided runs are ``python -m tests.fuzz`` (atheris) and ``.ci/fuzz``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshmsg.core.events import LinkClosed, MessageReceived
from meshmsg.core.records import Ping, TextMessage
from meshmsg.core.wire import encode_record
from tests.fuzz import targets
from tests.fuzz.harness import CORPUS_ROOT, TARGETS, Cursor, sized
from tests.fuzz.targets import (
    OP_ADVANCE,
    OP_CONNECT,
    OP_HAND,
    OP_INJECT,
    OP_SEND,
    node_program,
    run_node_program,
)

EXPECTED_TARGETS = {"frames", "records", "key_share", "envelope", "sync", "identity", "link",
                    "node", "group_ops", "api"}  # fmt: skip
CORPUS_INPUTS = [(name, path) for name, spec in TARGETS.items() for path in spec.corpus_inputs()]


def test_every_parser_a_peer_reaches_has_a_target() -> None:
    assert set(TARGETS) == EXPECTED_TARGETS
    for spec in TARGETS.values():
        assert spec.about, f"{spec.name} has no docstring saying what it asserts"


def test_every_target_has_a_small_corpus_holding_its_seeds() -> None:
    total = sum(p.stat().st_size for p in CORPUS_ROOT.rglob("*") if p.is_file())
    assert total < 2 * 1024 * 1024
    for spec in TARGETS.values():
        stored = {p.read_bytes() for p in spec.corpus_inputs()}
        seeds = set(spec.seeds())
        assert seeds, spec.name
        missing = seeds - stored
        assert not missing, f"{spec.name}: run `python -m tests.fuzz seeds` ({len(missing)} new)"


@pytest.mark.parametrize(("name", "path"), CORPUS_INPUTS, ids=lambda v: getattr(v, "name", v))
def test_corpus_input(name: str, path: Path) -> None:
    TARGETS[name].run(path.read_bytes())


@pytest.mark.parametrize("name", sorted(EXPECTED_TARGETS))
def test_target_on_arbitrary_bytes(name: str) -> None:
    run = TARGETS[name].run
    examples = 10 if name == "node" else 100

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(st.binary(max_size=600))
    def check(data: bytes) -> None:
        for mode in range(8):  # the first byte picks the mode of most targets
            run(bytes([mode]) + data)

    check()


def test_cursor_runs_dry_as_zeros() -> None:
    c = Cursor(b"\x01\x02\x03")
    assert c.u16() == 0x0102
    assert c.sized() == b""  # length 0x0300, but nothing is left
    assert (c.u8(), c.take(4), c.remaining) == (0, b"", 0)


def test_node_harness_delivers_mail_between_real_nodes() -> None:
    world = run_node_program(
        node_program((OP_SEND, b"\x01\x05hello"), (OP_CONNECT, b"\x01"), (OP_ADVANCE, b"\x00\x00"))
    )
    received = [e for side, e in world.events if side == "alice" and isinstance(e, MessageReceived)]
    assert [e.body for e in received] == ["hello"]
    assert world.node.sessions  # the link is still up


def test_node_harness_injects_records_into_established_sessions() -> None:
    # A stranger's hand link sends a TextMessage record in clear session plaintext: it is not
    # a session record, so Bob closes that link (and only that link).
    program = node_program(
        (OP_CONNECT, b"\x00"), (OP_HAND, b"\x00"),
        (OP_INJECT, b"\x01" + sized(encode_record(TextMessage(message_id=bytes(16), sent_at=0,
                                                              body="x")))),
        (OP_INJECT, b"\x00" + sized(encode_record(Ping(nonce=5)))),
    )  # fmt: skip
    world = run_node_program(program)
    closed = [e for side, e in world.events if side == "bob" and isinstance(e, LinkClosed)]
    assert len(closed) == 1
    assert len(world.node.sessions) == 1


def test_targets_do_not_swallow_unexpected_exceptions(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object, **__: object) -> None:
        raise ValueError("a parser bug")

    monkeypatch.setattr(targets, "decode_records", broken)
    with pytest.raises(ValueError, match="a parser bug"):
        targets.fuzz_records(b"\x00\x81\x03")


def test_records_target_flags_a_non_canonical_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(targets, "encode_record", lambda rec: b"\xff" + encode_record(rec))
    with pytest.raises(AssertionError, match="re-encode"):
        targets.fuzz_records(b"\x00" + encode_record(Ping(nonce=1)))


@pytest.mark.slow  # 15 s of atheris start-up; .ci/fuzz runs the same runner on every target
def test_the_runner_fuzzes_a_target_with_atheris(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz", "run", "frames", "--time", "2",
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=120,
        cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "frames     ok" in proc.stdout
    execs = int(proc.stdout.split("execs=")[1].split()[0])
    assert execs > 100
