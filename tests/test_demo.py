"""``meshmsg demo`` end to end, as a newcomer runs it: a subprocess, real sockets, < 30 s."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from meshmsg.app.demo import BUDGET_S

ROOT = Path(__file__).resolve().parent.parent


def run_demo(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = dict(os.environ, COLUMNS="200", PYTHONPATH=str(ROOT))  # wide: no wrapped lines
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "meshmsg", "demo", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=BUDGET_S + 30,
    )  # fmt: skip
    return done, time.monotonic() - started


def assert_story(output: str) -> None:
    for line in [
        "alice ↔ carol: Noise XX link",
        "carol received it (direct)",
        "alice: DELIVERED (carol's encrypted receipt came back)",
        "carol went offline",
        "alice: RELAYED (bob committed a copy to disk and took custody)",
        "alice went offline",
        "carol received it from bob",
        "bob took custody of carol's delivered receipt for alice",
        "alice and carol were never online at the same time",
        "alice: DELIVERED (the receipt was carried back by bob)",
        "timeline of each message",
        "demo passed",
    ]:
        assert line in output, f"missing {line!r} in:\n{output}"
    steps = [s for s in ("QUEUED", "RELAYED", "RECEIVED", "DELIVERED") if s in output]
    assert len(steps) == 4


def test_demo_runs_in_under_30_seconds() -> None:
    done, wall = run_demo()
    assert done.returncode == 0, done.stdout + done.stderr
    assert wall < BUDGET_S, f"demo took {wall:.1f} s"
    assert_story(done.stdout)
    # mDNS on loopback works on most systems; where it does not, the demo must say so.
    assert "found by mDNS" in done.stdout or "falling back to static peers" in done.stdout
    assert "Traceback" not in done.stderr


def test_demo_with_static_peers() -> None:
    done, wall = run_demo("--no-mdns")
    assert done.returncode == 0, done.stdout + done.stderr
    assert wall < BUDGET_S
    assert_story(done.stdout)
    assert "static peers (--no-mdns)" in done.stdout
