"""Shared fixtures: seeded randomness and hypothesis profiles."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from meshmsg.sim.rng import SeededRng

# CI runs at least 1,000 examples per property (issue #2); "dev" keeps local runs quick.
settings.register_profile(
    "ci", max_examples=1_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def rng() -> SeededRng:
    return SeededRng(1234, "test")
