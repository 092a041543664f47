"""``meshmsg run``'s event lines and bind errors; ``--ttl`` durations (issue #15, everyday use)."""

from __future__ import annotations

import gc
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from meshmsg.app.cli_common import Duration
from meshmsg.app.cli_run import describe_event
from meshmsg.app.client import DaemonClient
from meshmsg.app.snapshot import read_only_node
from meshmsg.core.events import MessageStatus, MessageStatusChanged, PeerConnected
from meshmsg.net.storage import DataDir
from tests.test_cli import DaemonThread, assert_one_line_error, init, mm, runner
from tests.test_snapshot import node_with_history

__all__ = ["runner"]  # the fixture, shared with test_cli


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("90", 90), ("2h", 7_200), ("3d", 259_200), ("15m", 900), ("1.5H", 5_400)],
)
def test_duration_forms(text: str, seconds: float) -> None:
    assert Duration().convert(text, None, None) == seconds


@pytest.mark.parametrize("text", ["5x", "0", "-3h", "h", ""])
def test_duration_refuses_what_is_not_one(text: str) -> None:
    with pytest.raises(click.BadParameter, match="not a duration"):
        Duration().convert(text, None, None)


def test_send_ttl_takes_a_duration(runner: CliRunner, tmp_path: Path) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    init(runner, alice, "alice")
    assert mm(runner, alice, "contact", "add", init(runner, bob, "bob")).exit_code == 0
    with DaemonThread(alice) as daemon:
        sent = mm(runner, alice, "send", "--ttl", "2h", "bob", "short-lived")
        assert sent.exit_code == 0, sent.output
        bad = mm(runner, alice, "send", "--ttl", "soon", "bob", "x")
        assert bad.exit_code == 2
        assert "not a duration" in bad.output
        client = DaemonClient.connect(daemon.data_dir)
        assert client is not None
        bob_id = client.get("/contacts")[0]["peer_id"]
        [message] = client.get(f"/conversations/{bob_id}/messages")
    assert message["expiry_at"] - message["sent_at"] == pytest.approx(7_200, abs=1)


def test_event_lines_name_contacts(tmp_path: Path) -> None:
    data_dir, settings, unlocked, bob = node_with_history(tmp_path)
    node = read_only_node(data_dir, settings, unlocked)
    linked = describe_event(PeerConnected(link=1, peer_id=bob, is_contact=True), node)
    assert linked is not None
    assert linked.plain == "linked to contact bob"
    stranger = describe_event(PeerConnected(link=2, peer_id=b"\x01" * 16, is_contact=False), node)
    assert stranger is not None
    assert stranger.plain == "linked to stranger 01010101"
    status = MessageStatusChanged(
        message_id=b"\xaa" * 16, peer_id=bob, status=MessageStatus.DELIVERED, at=0.0
    )
    line = describe_event(status, node)
    assert line is not None
    assert line.plain == "message aaaaaaaa to bob: delivered"


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("setting", ["network.listen", "api.port"])
def test_a_port_in_use_names_the_setting(
    runner: CliRunner, tmp_path: Path, busy_port: int, setting: str
) -> None:
    home = tmp_path / "alice"
    init(runner, home, "alice")
    value = f"127.0.0.1:{busy_port}" if setting == "network.listen" else str(busy_port)
    assert mm(runner, home, "config", "set", setting, value).exit_code == 0
    result = mm(runner, home, "run")
    assert_one_line_error(result, f"{setting} 127.0.0.1:{busy_port} is already in use")
    del result  # its traceback holds the socket hypercorn failed to bind and did not close
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    assert not (DataDir(home).root / "daemon.json").exists()
