"""Smoke test of the storage benchmark (the numbers themselves are reported in docs/storage.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshmsg.bench.storage import measure_durable_submits


def test_measure_durable_submits_reports_consistent_rates(tmp_path: Path) -> None:
    result = measure_durable_submits(tmp_path, 40, value_bytes=256, batch=8)
    rates = [k for k in result if k.endswith("_per_s")]
    assert len(rates) == 5
    assert all(result[k] > 0 for k in rates)
    assert result["ratio"] == pytest.approx(
        result["durable_submits_per_s"] / result["plain_wal_commits_per_s"]
    )
    assert result["batched_records_per_s"] == pytest.approx(8 * result["batched_commits_per_s"])
    assert list(tmp_path.iterdir()) == []  # the temporary databases are gone
