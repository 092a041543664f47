"""Status warnings: clock faults, discovery off, disk and relay store nearly full."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import pytest

from meshmsg.app import warnings
from meshmsg.app.warnings import clock_warnings, host_warnings
from meshmsg.core.events import ClockSkewDetected
from tests.helpers import Mesh

YEAR = 365 * 86_400.0
Usage = namedtuple("Usage", "total used free")


def paired_mesh() -> Mesh:
    mesh = Mesh(["alice", "bob"])
    mesh.befriend("alice", "bob", pair=True)
    return mesh


def test_a_channel_clock_ahead_of_now_is_named_with_the_contact() -> None:
    mesh = paired_mesh()
    alice = mesh.nodes["alice"]
    assert clock_warnings(alice, mesh.now, {}) == []
    alice.handle_timer(now=mesh.now + YEAR)  # one wrong reading a year ahead
    lines = clock_warnings(alice, mesh.now, {})
    assert len(lines) == 1
    assert "ahead by about 365 days for bob" in lines[0]
    assert "next meeting" in lines[0]


def test_a_contact_whose_clock_differs_is_named_until_repaired() -> None:
    mesh = paired_mesh()
    alice = mesh.nodes["alice"]
    bob = mesh.peer_id("bob")
    wrong = ClockSkewDetected(peer_id=bob, skew_s=3 * 86_400.0, repaired=False)
    lines = clock_warnings(alice, mesh.now, {bob: wrong})
    assert lines == [
        "bob's clock differs from ours by about 3 days: messages between you cannot be read "
        "until the wrong clock is corrected."
    ]
    fixed = ClockSkewDetected(peer_id=bob, skew_s=3 * 86_400.0, repaired=True)
    assert clock_warnings(alice, mesh.now, {bob: fixed}) == []


def test_host_warnings_name_discovery_disk_and_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on = {"enabled": True}
    roomy = {"bytes": 10, "max_bytes": 100}
    assert host_warnings(tmp_path, on, roomy) == []  # this test's disk has room
    off = {"enabled": False, "reason": "no trusted network is configured"}
    assert host_warnings(tmp_path, off, roomy) == [
        "mDNS discovery is off (no trusted network is configured): only static peers are dialled."
    ]
    monkeypatch.setattr(warnings.shutil, "disk_usage", lambda _: Usage(10**9, 10**9, 5 << 20))
    full = {"bytes": 95, "max_bytes": 100}
    lines = host_warnings(tmp_path, on, full)
    assert "only 5 MiB free" in lines[0]
    assert "over 90 % full" in lines[1]


async def test_the_status_endpoint_carries_the_warnings(tmp_path: Path) -> None:
    from tests.net.test_api import daemon

    async with daemon(tmp_path, "alice") as d:
        status = await d.get("/status")
        assert any("mDNS discovery is off" in line for line in status["warnings"])
