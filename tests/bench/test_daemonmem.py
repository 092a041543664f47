"""Smoke test of the real-daemon memory script (docs/performance.md, "mem-daemon"): it fills a
data directory, starts ``meshmsg run`` on it twice and reads /proc. Small: 300 envelopes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.bench.daemonmem import measure_daemon_store_memory


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/PID/status")
def test_a_daemon_restores_every_carried_envelope_and_its_memory_is_read(tmp_path: Path) -> None:
    figures = measure_daemon_store_memory(tmp_path, 300, settle_s=0.1)
    assert figures["full_relay"] == 300  # every record written is held after the start
    assert figures["envelope_bytes"] == 300 * 1_024
    assert 0 < figures["empty_rss_bytes"] <= figures["empty_hwm_bytes"]
    assert figures["full_rss_bytes"] > 0
