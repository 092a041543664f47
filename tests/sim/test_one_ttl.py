"""The ONE's effective message lifetime, which ONE mode hands to the core as its TTL."""

from __future__ import annotations

import pytest

from meshmsg.sim.engine import one_ttl_s


@pytest.mark.parametrize(
    ("created", "expected_death"),
    [
        (0.0, 17_940.0 + 60.0),  # age must exceed 299 min: first check after 17,940 s is 18,000
        (32.0, 18_000.0),  # created mid-interval: dies at the check at 18,000 (age 17,968)
        (59.9, 18_000.0),
        (60.0, 18_060.0),
    ],
)
def test_message_dies_at_the_first_check_with_under_a_minute_left(
    created: float, expected_death: float
) -> None:
    ttl = one_ttl_s(created, 18_000.0)
    assert created + ttl == pytest.approx(expected_death)
    # The ONE's own rule at that check, and one check earlier.
    assert int((18_000.0 - (expected_death - created)) / 60) <= 0
    assert int((18_000.0 - (expected_death - 60.0 - created)) / 60) > 0
