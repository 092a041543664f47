"""The ``meshmsg`` command with click's CliRunner, on temporary data directories.

Keystores use the test-only fast Argon2id setting (``MESHMSG_KDF_FAST=1``). A daemon, where a
test needs one, runs in a thread on loopback with its API on an ephemeral port.
"""

from __future__ import annotations

import json
import re
import stat
import threading
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner, Result

from meshmsg.app.cli import cli
from meshmsg.app.cli_common import resolve_contact
from meshmsg.app.daemon import run_daemon
from meshmsg.app.datadir import Settings, unlock
from meshmsg.errors import LocalProtocolError
from meshmsg.net.storage import DataDir

PASSPHRASE = "a long test passphrase"
LOOPBACK_CONFIG = """\
name = "{name}"
[network]
listen = "127.0.0.1:0"
[api]
port = 0
"""


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("MESHMSG_KDF_FAST", "1")
    monkeypatch.setenv("MESHMSG_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("MESHMSG_HOME", raising=False)
    return CliRunner()


def mm(
    runner: CliRunner,
    home: Path,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> Result:
    return runner.invoke(
        cli, ["--data-dir", str(home), *args], env=env, input=stdin, catch_exceptions=False
    )


def init(runner: CliRunner, home: Path, name: str) -> str:
    """Initialise a node on loopback settings; return its contact code."""
    result = mm(runner, home, "init", "--name", name)
    assert result.exit_code == 0, result.output
    (home / "config.toml").write_text(LOOPBACK_CONFIG.format(name=name))
    return contact_code(runner, home)


def contact_code(runner: CliRunner, home: Path) -> str:
    result = mm(runner, home, "id", "--no-qr")
    assert result.exit_code == 0, result.output
    return next(line for line in result.output.splitlines() if line.startswith("MM1:"))


def assert_one_line_error(result: Result, text: str) -> None:
    assert result.exit_code != 0
    assert text in result.output
    assert "Traceback" not in result.output
    assert result.output.count("Error:") == 1


def test_init_creates_a_private_data_dir(runner: CliRunner, tmp_path: Path) -> None:
    home = tmp_path / "alice"
    result = mm(runner, home, "init", "--name", "alice")
    assert result.exit_code == 0, result.output
    assert "Fingerprint:" in result.output
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for name in ("keystore", "node.db", "config.toml"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name
    assert 'name = "alice"' in (home / "config.toml").read_text()
    again = mm(runner, home, "init")
    assert_one_line_error(again, "already holds an identity")


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("Ö" * 40, "--name refused: display name is longer than 64 bytes (80 bytes given)"),
        ("bad\x1b[31mname", "control character U+001B"),
        ("", "--name is empty"),
    ],
)
def test_init_refuses_a_name_a_contact_code_cannot_carry(
    runner: CliRunner, tmp_path: Path, name: str, error: str
) -> None:
    home = tmp_path / "alice"
    assert_one_line_error(mm(runner, home, "init", "--name", name), error)
    assert not (home / "keystore").exists()
    assert mm(runner, home, "init", "--name", "alice").exit_code == 0
    if name:  # the same name written into config.toml by hand is refused there too
        (home / "config.toml").write_text(f"name = {json.dumps(name)}\n")
        assert_one_line_error(mm(runner, home, "id"), "config.toml: name refused")


def test_init_name_with_quotes_survives_config_toml(runner: CliRunner, tmp_path: Path) -> None:
    home = tmp_path / "alice"
    name = 'Al "the \\ admin" Ö'
    assert mm(runner, home, "init", "--name", name).exit_code == 0
    shown = mm(runner, home, "id", "--no-qr").output
    assert f"Name:        {name}" in shown


def test_id_shows_code_and_qr(runner: CliRunner, tmp_path: Path) -> None:
    home = tmp_path / "alice"
    code = init(runner, home, "alice")
    result = mm(runner, home, "id")
    assert result.exit_code == 0
    assert code in result.output
    assert "Fingerprint:" in result.output
    assert "█" in result.output  # the QR code, in half blocks


def test_contact_add_list_verify_remove_offline(runner: CliRunner, tmp_path: Path) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    init(runner, alice, "alice")
    bob_code = init(runner, bob, "bob")
    added = mm(runner, alice, "contact", "add", bob_code)
    assert added.exit_code == 0, added.output
    assert "Added bob" in added.output
    assert "unverified" in added.output
    listed = mm(runner, alice, "contact", "list")
    assert "bob" in listed.output
    assert "unverified" in listed.output
    verify = mm(runner, alice, "contact", "verify", "BOB", "--yes")
    assert verify.exit_code == 0, verify.output
    assert "now verified" in verify.output
    assert "█" in verify.output  # the safety QR
    ids = mm(runner, alice, "id", "--no-qr").output
    halves = [
        line for line in verify.output.splitlines() if re.fullmatch(r"\d{5}( \d{5}){5}", line)
    ]
    assert len(halves) == 2  # 60 digits, two rows of six groups of five
    assert all(half in ids for half in halves)  # the same number in the id table
    listed = mm(runner, alice, "contact", "list")
    assert "unverified" not in listed.output
    removed = mm(runner, alice, "contact", "remove", "bob", "--yes")
    assert removed.exit_code == 0
    assert "No contacts yet" in mm(runner, alice, "contact", "list").output


def test_clear_errors(runner: CliRunner, tmp_path: Path) -> None:
    alice = tmp_path / "alice"
    init(runner, alice, "alice")
    wrong = mm(runner, alice, "contact", "list", env={"MESHMSG_PASSPHRASE": "nope"})
    assert_one_line_error(wrong, "wrong passphrase")
    assert_one_line_error(mm(runner, alice, "send", "bob", "hi"), "daemon not running")
    assert_one_line_error(mm(runner, alice, "status"), "meshmsg run")
    assert_one_line_error(mm(runner, alice, "contact", "verify", "nobody"), "unknown contact")
    assert_one_line_error(mm(runner, alice, "contact", "add", "MM1:ABC"), "contact code")
    missing = mm(runner, tmp_path / "nobody", "id")
    assert_one_line_error(missing, "meshmsg init")
    (alice / "config.toml").write_text('profile = "party"\n')
    assert_one_line_error(mm(runner, alice, "id"), "profile must be one of")


def test_resolve_contact_by_name_prefix_or_fingerprint() -> None:
    contacts = [
        {"name": "bob", "peer_id": "ab12" + "0" * 28, "fingerprint": "WMKZ-31V0-WYCJ-PHVR"},
        {"name": "Bobby", "peer_id": "ab34" + "0" * 28, "fingerprint": "QQQQ-31V0-WYCJ-PHVR"},
    ]
    assert resolve_contact(contacts, "BOB")["name"] == "bob"
    assert resolve_contact(contacts, "ab34")["name"] == "Bobby"
    assert resolve_contact(contacts, "wmkz-31")["name"] == "bob"
    with pytest.raises(LocalProtocolError, match="unknown contact"):
        resolve_contact(contacts, "ab")  # too short to be taken as an id prefix
    twins = [dict(contacts[0]), dict(contacts[0], peer_id="cd" + "0" * 30)]
    with pytest.raises(LocalProtocolError, match="several"):
        resolve_contact(twins, "bob")


class DaemonThread:
    """``run_daemon`` in a thread with its own trio loop; stopped through its trio token."""

    def __init__(self, home: Path) -> None:
        self.data_dir = DataDir(home)
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._main)

    def _main(self) -> None:
        settings = Settings.load(self.data_dir)
        unlocked = unlock(self.data_dir, settings, lambda: PASSPHRASE)

        async def serve() -> None:
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            await run_daemon(
                self.data_dir, settings, unlocked, on_ready=lambda _: self.ready.set(),
                stop=self._stop,
            )  # fmt: skip

        try:
            trio.run(serve)
        except BaseException as exc:  # reported by the test through .error
            self.error = exc
            self.ready.set()

    def __enter__(self) -> DaemonThread:
        self._thread.start()
        assert self.ready.wait(20), "daemon did not start"
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(20)
        assert not self._thread.is_alive()
        assert self.error is None, self.error


@pytest.fixture
def two_nodes(runner: CliRunner, tmp_path: Path) -> tuple[Path, Path]:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    init(runner, alice, "alice")
    bob_code = init(runner, bob, "bob")
    assert mm(runner, alice, "contact", "add", bob_code).exit_code == 0
    return alice, bob


def test_commands_go_through_a_running_daemon(
    runner: CliRunner, two_nodes: tuple[Path, Path]
) -> None:
    alice, _bob = two_nodes
    with DaemonThread(alice):
        assert (alice / "daemon.json").exists()
        status = mm(runner, alice, "status")
        assert status.exit_code == 0, status.output
        assert "Links and queues" in status.output
        assert "Relay store" in status.output
        too_big = mm(runner, alice, "send", "bob", "x" * 40_000)
        assert_one_line_error(too_big, "message too big")
        assert_one_line_error(mm(runner, alice, "send", "carol", "hi"), "unknown contact")
        sent = mm(runner, alice, "send", "bob", "hello", "bob")
        assert sent.exit_code == 0, sent.output
        assert "Queued" in sent.output
        inbox = mm(runner, alice, "inbox", "bob")
        assert "hello bob" in inbox.output
        assert "queued" in inbox.output
        # Offline-safe commands use the daemon too (no second writer on the database).
        listed = mm(runner, alice, "contact", "list", env={"MESHMSG_PASSPHRASE": "wrong"})
        assert listed.exit_code == 0
        assert "bob" in listed.output
        again = mm(runner, alice, "run")
        assert_one_line_error(again, "already running")
    assert not (alice / "daemon.json").exists()
    # Without the daemon, history is read from a snapshot: read-only, no lock taken.
    stored = mm(runner, alice, "inbox")
    assert stored.exit_code == 0, stored.output
    assert "read-only" in stored.output
    assert "hello bob" in stored.output
    messages = mm(runner, alice, "inbox", "bob")
    assert "hello bob" in messages.output
    with DaemonThread(alice):  # and a daemon starts afterwards as usual
        assert "bob" in mm(runner, alice, "contact", "list").output


def test_contact_rename_block_and_re_add(runner: CliRunner, two_nodes: tuple[Path, Path]) -> None:
    alice, bob = two_nodes
    bob_code = contact_code(runner, bob)
    again = mm(runner, alice, "contact", "add", bob_code)
    assert again.exit_code == 0
    assert "Already a contact (bob)" in again.output
    assert "Added" not in again.output
    renamed = mm(runner, alice, "contact", "rename", "bob", "Robert")  # offline
    assert renamed.exit_code == 0, renamed.output
    assert "Renamed bob to Robert" in renamed.output
    assert_one_line_error(mm(runner, alice, "contact", "rename", "robert", ""), "NEW_NAME is empty")
    blocked = mm(runner, alice, "contact", "block", "robert")
    assert "Robert is blocked" in blocked.output
    assert "blocked" in mm(runner, alice, "contact", "list").output
    with DaemonThread(alice):  # the same commands through the daemon's API
        assert mm(runner, alice, "contact", "unblock", "ROBERT").exit_code == 0
        assert mm(runner, alice, "contact", "rename", "robert", "bobby").exit_code == 0
        listed = mm(runner, alice, "contact", "list").output
    assert "bobby" in listed
    assert "blocked" not in listed
