"""Smoke test of the E2E benchmark (the numbers themselves are reported in docs/protocol/e2e.md)."""

from __future__ import annotations

import pytest

from meshmsg.bench.e2e import measure_seal_open, measure_tag_index


def test_measure_seal_open_reports_both_rates_and_their_ratio() -> None:
    result = measure_seal_open(50, 100, repeats=2)
    assert result["envelope_bytes"] == 256
    assert result["seal_open_per_s"] > 0
    assert result["raw_aead_per_s"] > 0
    assert result["ratio"] == pytest.approx(result["seal_open_per_s"] / result["raw_aead_per_s"])
    assert 0 < result["state_bytes"] < 2_000


def test_measure_tag_index_counts_every_window() -> None:
    result = measure_tag_index(4)
    assert result["entries"] == 4 * 2 * 64  # two periods of 64 tags right after pairing
    assert result["bytes_per_entry"] > 16
