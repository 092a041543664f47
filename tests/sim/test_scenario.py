"""Scenarios: defaults, unknown keys, type checks, overrides, the resolved-scenario round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshmsg.config import RoutingConfig
from meshmsg.errors import ConfigError
from meshmsg.sim.scenario import (
    Scenario,
    dump_toml,
    load_scenario,
    parse_addresses,
    scenario_from_dict,
    scenario_to_dict,
)

ROOT = Path(__file__).resolve().parents[2]


def build(table: dict[str, object], *overrides: str) -> Scenario:
    return scenario_from_dict(table, base_dir=Path("."), overrides=overrides)


def test_empty_table_gives_documented_defaults() -> None:
    s = build({})
    assert (s.run.mode, s.run.seed, s.routing.policy, s.routing.copies) == (
        "messenger", 1, "spray-and-wait", 6,
    )  # fmt: skip
    assert s.links.interfaces["default"].rate_bps == 250_000.0


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"routing": {"polcy": "direct"}}, "unknown key 'routing.polcy'"),
        ({"links": {"interfaces": {"bt": {"rate": 1}}}}, "unknown key 'links.interfaces.bt.rate'"),
        (
            {"faults": {"crashes": [{"address": 1, "at": 2}]}},
            r"unknown key 'faults.crashes\[0\].at'",
        ),
        ({"bogus": {}}, "unknown key 'bogus'"),
        ({"run": {"seed": "1"}}, "run.seed: expected an integer"),
        ({"run": {"seed": True}}, "run.seed: expected an integer"),
        ({"nodes": {"pre_pair": 1}}, 'nodes.pre_pair: expected "all", "traffic", "codes"'),
        ({"mobility": {"world_m": [1.0]}}, r"mobility.world_m: expected 2 values"),
        ({"run": {"mode": "ns3"}}, "run.mode: must be 'one' or 'messenger'"),
        ({"nodes": {"count": 1}}, "nodes.count"),
        (
            {"contacts": {"source": "trace", "trace": "absent.txt"}},
            "contacts.trace: file not found",
        ),
        ({"nodes": {"groups": [{"addresses": "1-9"}]}}, r"outside 0..1"),
        ({"faults": {"crashes": [{"address": 1}]}}, r"missing key 'faults.crashes\[0\].at_s'"),
    ],
)
def test_bad_scenarios_are_rejected_with_the_key_path(
    table: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build(table)


def test_overrides_parse_toml_values_and_reach_nested_tables() -> None:
    s = build({}, "routing.policy=epidemic", "routing.copies=4", "mobility.world_m=[10, 20]",
              "run.strict=false", 'links.interfaces.wifi.rate_bps=1e7')  # fmt: skip
    assert (s.routing.policy, s.routing.copies, s.mobility.world_m) == ("epidemic", 4, (10.0, 20.0))
    assert s.run.strict is False
    assert s.links.interfaces["wifi"].rate_bps == 1e7
    with pytest.raises(ConfigError, match="not key=value"):
        build({}, "routing.copies")
    with pytest.raises(ConfigError, match=r"unknown key 'routing\.copy'"):
        build({}, "routing.copy=2")


def test_trace_paths_are_relative_to_the_scenario_file(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("0 CONN 0 1 up\n")
    (tmp_path / "s.toml").write_text('[contacts]\nsource = "trace"\ntrace = "c.txt"\n')
    s = load_scenario(tmp_path / "s.toml")
    assert s.contacts.trace == str(tmp_path / "c.txt")


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text("[run\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_scenario(tmp_path / "s.toml")


@pytest.mark.parametrize("path", sorted((ROOT / "simulations").rglob("*.toml")), ids=str)
def test_shipped_scenarios_load_and_round_trip(path: Path) -> None:
    s = scenario_from_dict(
        __import__("tomllib").loads(path.read_text()), base_dir=path.parent,
        overrides=['contacts.source="none"', 'traffic.source="none"'],
    )  # fmt: skip
    again = build(__import__("tomllib").loads(dump_toml(scenario_to_dict(s))))
    assert again == s


@given(
    seed=st.integers(0, 2**62),
    copies=st.integers(1, 64),
    name=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20),
    rate=st.floats(1.0, 1e9),
)
def test_dump_and_load_round_trip(seed: int, copies: int, name: str, rate: float) -> None:
    s = build({
        "run": {"seed": seed, "name": name},
        "routing": {"copies": copies},
        "links": {"interfaces": {"bt": {"rate_bps": rate}}},
        "faults": {"partitions": [{"start_s": 1.0, "end_s": 2.0, "groups": [[0], [1]]}]},
    })  # fmt: skip
    assert build(__import__("tomllib").loads(dump_toml(scenario_to_dict(s)))) == s


def test_address_lists() -> None:
    assert parse_addresses("1,4,7-9", 10, "x") == (1, 4, 7, 8, 9)
    assert parse_addresses("", 3, "x") == (0, 1, 2)
    with pytest.raises(ConfigError, match="x: bad address list"):
        parse_addresses("a-b", 3, "x")


def test_routing_is_the_nodes_own_routing_config() -> None:
    """[routing] takes exactly RoutingConfig's keys and defaults (one definition, no drift)."""
    assert build({}).routing == RoutingConfig()
    s = build({}, "routing.max_route_entries=64", "routing.prophet_beta=0.5")
    assert s.routing == RoutingConfig(max_route_entries=64, prophet_beta=0.5)


@pytest.mark.parametrize(
    ("mode", "given", "expected"),
    [("one", None, False), ("one", True, True), ("messenger", None, True),
     ("messenger", False, False)],
)  # fmt: skip
def test_one_mode_keeps_delivered_copies_unless_told(
    mode: str, given: bool | None, expected: bool
) -> None:
    routing = {} if given is None else {"drop_after_delivery": given}
    s = build({"run": {"mode": mode}, "routing": routing})
    assert s.routing.drop_after_delivery is expected
    # The resolved scenario states it, so reloading it in any mode gives the same value.
    assert scenario_to_dict(s)["routing"]["drop_after_delivery"] is expected  # type: ignore[index]
