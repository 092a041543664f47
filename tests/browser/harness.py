"""Real daemons (``meshmsg run`` processes on loopback) and Debian's Chromium under Playwright.

Chromium comes from the system (``apt-get install chromium``; ``.ci/run`` installs it), never
from Playwright's own download. Without it the browser tests skip on a developer's machine but
fail in CI (``CI`` set): there a missing browser is a broken CI, not a reason to pass.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "browser tests"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
]  # fmt: skip
ARTIFACTS = Path(os.environ.get("MESHMSG_ARTIFACTS", ROOT / "artifacts")) / "screenshots"


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "Debian's chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DaemonProcess:
    name: str
    home: Path
    listen: str
    process: subprocess.Popen[bytes] | None = None
    log: BinaryIO | None = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "MESHMSG_PASSPHRASE": PASSPHRASE, "MESHMSG_KDF_FAST": "1"}

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "meshmsg", "--data-dir", str(self.home), *args],
            env=self.env(), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        log = f"--- {self.name}'s daemon.log:\n{self.log_tail()}"
        assert done.returncode == 0, f"{done.stderr}\n{log}"
        return done.stdout

    def log_tail(self, lines: int = 40) -> str:
        """The end of the daemon's log, and whether it still runs (for failure messages)."""
        path = self.home / "daemon.log"
        text = path.read_text(errors="replace") if path.exists() else "(no log)"
        state = "not started" if self.process is None else f"exit code {self.process.poll()}"
        return "\n".join(text.splitlines()[-lines:]) + f"\n(daemon: {state})"

    def init(self, static_peers: list[str]) -> None:
        self.cli("init", "--name", self.name)
        peers = ", ".join(f'"{p}"' for p in static_peers)
        (self.home / "config.toml").write_text(
            f'name = "{self.name}"\nprofile = "office"\n[network]\nlisten = "{self.listen}"\n'
            f"static_peers = [{peers}]\n[api]\nport = 0\n"
        )

    def start(self) -> None:
        self.log = (self.home / "daemon.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "meshmsg", "--data-dir", str(self.home), "run"],
            env=self.env(), stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        runtime = self.home / "daemon.json"
        deadline = time.monotonic() + 30
        while not runtime.exists():
            assert self.process.poll() is None, (self.home / "daemon.log").read_text()
            assert time.monotonic() < deadline, "daemon did not start"
            time.sleep(0.05)

    @property
    def api_url(self) -> str:
        for _ in range(100):  # written atomically, but read it until it parses
            try:
                return str(json.loads((self.home / "daemon.json").read_text())["api"])
            except (ValueError, KeyError):
                time.sleep(0.02)
        raise AssertionError("daemon.json never became readable")

    def ui_url(self) -> str:
        return self.cli("ui", "--print").strip().splitlines()[-1]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.log is not None:
            self.log.close()


@contextmanager
def daemons(root: Path, *names: str) -> Iterator[list[DaemonProcess]]:
    """Daemons that know each other's address as a static peer (no mDNS needed)."""
    nodes = [DaemonProcess(n, root / n, f"127.0.0.1:{free_port()}") for n in names]
    try:
        for node in nodes:
            node.init([other.listen for other in nodes if other is not node])
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def screenshot(page: object, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)  # type: ignore[attr-defined]
    return path
