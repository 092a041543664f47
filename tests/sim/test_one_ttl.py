"""The ONE's effective message lifetime, which ONE mode hands to the core as its TTL."""

from __future__ import annotations

import pytest

from meshmsg.sim.oneclock import one_ttl_s


@pytest.mark.parametrize("created", [0.0, 32.0, 6007.0])
def test_message_lives_while_a_whole_minute_remains(created: float) -> None:
    ttl = one_ttl_s(created, 18_000.0)
    # The ONE's rule: alive while int((ttl - age) / 60) > 0, so dead just after the bound.
    assert int((18_000.0 - ttl) / 60) > 0
    assert int((18_000.0 - (ttl + 0.1)) / 60) <= 0
    assert ttl == pytest.approx(17_940.0)


def test_tiny_ttls_stay_positive() -> None:
    assert one_ttl_s(0.0, 30.0) > 0
