from __future__ import annotations

import dataclasses

import pytest

from meshmsg.config import NodeConfig, describe
from meshmsg.errors import ConfigError


def test_every_value_has_a_unit_and_a_reason() -> None:
    rows = describe(NodeConfig())
    assert len(rows) > 30
    missing = [name for name, _v, unit, why in rows if not unit or len(why) < 10]
    assert missing == []


def test_config_is_frozen() -> None:
    config = NodeConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.site_key = b"x" * 32  # type: ignore[misc]


def test_site_key_must_be_32_bytes() -> None:
    with pytest.raises(ConfigError, match="32 bytes"):
        NodeConfig(site_key=b"short")
    assert NodeConfig(site_key=b"k" * 32).site_key == b"k" * 32


def test_crisis_profile_has_a_two_week_budget() -> None:
    assert NodeConfig.crisis().message.latency_budget_s == 14 * 86_400
    assert NodeConfig.office().message.latency_budget_s == 86_400
