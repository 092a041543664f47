"""The link-attachment row: a real attachment between two processes arrives and is timed."""

from __future__ import annotations

import pytest

from meshmsg.bench.attach import measure_attachment_throughput


@pytest.mark.slow  # two processes, a handshake and 1 MiB on disk: ~5 s on this machine
def test_one_attachment_between_two_processes_is_measured() -> None:
    size = 1 << 20
    figures = measure_attachment_throughput(size)
    # The recipient saw AttachmentComplete (else TransportError): 1 MiB moved in finite time,
    # and no faster than the machine could possibly copy it.
    assert 0 < figures["attach_bytes_per_s"] < 100 * figures["limit_bytes_per_s"]
    assert figures["limit_bytes_per_s"] > 0
