"""Smoke test of the driver measurements (the numbers themselves go to the benchmark issue)."""

from __future__ import annotations

import pytest

from meshmsg.bench.measure import (
    measure_links,
    measure_messages,
    noise_handshake_rate,
    noise_transport_rate,
)

KEYS = {"median_per_s", "min_per_s", "max_per_s", "limit_per_s", "ratio", "repeats", "count"}


def check(result: dict[str, float], repeats: int, extra: frozenset[str] = frozenset()) -> None:
    assert set(result) == KEYS | extra
    assert 0 < result["min_per_s"] <= result["median_per_s"] <= result["max_per_s"]
    assert result["ratio"] == pytest.approx(result["median_per_s"] / result["limit_per_s"])
    assert result["repeats"] == repeats


def test_in_process_limits_are_positive() -> None:
    assert noise_transport_rate(payload_bytes=64, batch=4) > 0
    assert noise_handshake_rate() > 0
    assert noise_handshake_rate(prepared=True) > 0


@pytest.mark.slow  # starts a child process
def test_link_messages_between_two_processes() -> None:
    result = measure_messages(count=256, repeats=2, layer="link")
    check(result, 2)
    assert result["count"] == 256


@pytest.mark.slow  # starts a child process
def test_node_messages_between_two_processes() -> None:
    check(measure_messages(count=20, repeats=1, layer="node"), 1)


@pytest.mark.slow  # starts a child process
def test_links_between_two_processes() -> None:
    check(measure_links(count=5, repeats=1), 1, frozenset({"parallel"}))


@pytest.mark.slow  # starts a child process
def test_links_from_parallel_dialers() -> None:
    result = measure_links(count=9, repeats=1, parallel=4)
    check(result, 1, frozenset({"parallel"}))
    assert result["parallel"] == 4
