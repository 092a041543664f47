"""``nodes.pre_pair``: who is paired before t=0 ("all", "traffic", "none"; true/false aliases)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmsg.config import NodeConfig
from meshmsg.errors import ConfigError
from meshmsg.sim import corehost
from meshmsg.sim.api import external_sources, node_setups, pre_pairing, run_scenario
from meshmsg.sim.corehost import CoreFactory
from meshmsg.sim.host import CodesOnly, NodeSetup
from meshmsg.sim.rng import SeededRng
from meshmsg.sim.scenario import Scenario, scenario_from_dict
from meshmsg.sim.traces import MessageEvent
from tests.sim.fakes import ScriptFactory


def build(table: dict[str, object], *overrides: str, base: Path = Path(".")) -> Scenario:
    return scenario_from_dict(table, base_dir=base, overrides=overrides)


def unordered(a: int, b: int) -> tuple[int, int]:
    return (min(a, b), max(a, b))


# ---- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("all", "all"),
        ("traffic", "traffic"),
        ("codes", "codes"),
        ("none", "none"),
        (True, "all"),
        (False, "none"),
    ],
)
def test_values_and_boolean_aliases(value: object, expected: str) -> None:
    assert build({"nodes": {"pre_pair": value}}).nodes.pre_pair == expected


def test_default_is_all_and_overrides_take_bare_words_and_booleans() -> None:
    assert build({}).nodes.pre_pair == "all"
    assert build({}, "nodes.pre_pair=traffic").nodes.pre_pair == "traffic"
    assert build({}, 'nodes.pre_pair="none"').nodes.pre_pair == "none"
    assert build({"nodes": {"pre_pair": "none"}}, "nodes.pre_pair=true").nodes.pre_pair == "all"


@pytest.mark.parametrize("value", [1, 0, 1.5, "All", "yes", "", "traffic ", [], {"a": 1}])
def test_other_values_are_rejected_by_name(value: object) -> None:
    with pytest.raises(ConfigError, match=r'nodes\.pre_pair: expected "all", "traffic", "codes"'):
        build({"nodes": {"pre_pair": value}})


# ---- which pairs "traffic" names -----------------------------------------------------------------


def trace_scenario(tmp_path: Path, lines: list[str], duration_s: float = 100.0) -> Scenario:
    (tmp_path / "m.txt").write_text("".join(f"{line}\n" for line in lines))
    return build(
        {
            "run": {"duration_s": duration_s},
            "nodes": {"count": 6, "pre_pair": "traffic"},
            "traffic": {"source": "trace", "trace": "m.txt"},
        },
        base=tmp_path,
    )


def test_trace_pairs_are_the_unordered_sender_recipient_pairs_within_the_run(
    tmp_path: Path,
) -> None:
    s = trace_scenario(
        tmp_path,
        [
            "1.0 C M1 n0 n3 500",
            "2.0 C M2 n3 n0 500",  # the same pair the other way
            "3.0 C M3 n2 n1 500",
            "100.0 C M5 n5 n1 500",  # created at the last instant of the run
            "100.5 C M6 n5 n2 500",  # after the run: never created
        ],
    )
    assert pre_pairing(s) == frozenset({(0, 3), (1, 2), (1, 5)})


def test_a_trace_naming_a_node_outside_the_run_is_a_config_error(tmp_path: Path) -> None:
    s = trace_scenario(tmp_path, ["1.0 C M1 n0 n9 500"])
    with pytest.raises(ConfigError, match=r"traffic\.trace: node 9"):
        pre_pairing(s)


def test_all_and_none_are_passed_as_booleans() -> None:
    assert pre_pairing(build({"nodes": {"pre_pair": "all"}})) is True
    assert pre_pairing(build({"nodes": {"pre_pair": "none"}})) is False
    assert pre_pairing(build({"nodes": {"pre_pair": "traffic"}})) == frozenset()


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    count=st.integers(2, 30),
    source=st.sampled_from(["generator", "one-to-each"]),
    duration=st.floats(10.0, 2_000.0),
)
def test_generated_pairs_are_exactly_those_of_the_run_traffic(
    seed: int, count: int, source: str, duration: float
) -> None:
    s = build({
        "run": {"seed": seed, "duration_s": duration},
        "nodes": {"count": count, "pre_pair": "traffic"},
        "traffic": {"source": source, "interval_s": [1.0, 40.0]},
    })  # fmt: skip
    pairs = pre_pairing(s)
    # The events the engine is fed: computing the pairs must not move the "traffic" stream.
    sent = [e for src in external_sources(s) for e in src if isinstance(e, MessageEvent)]
    assert pairs == frozenset(unordered(e.source, e.destination) for e in sent)
    assert all(a < b for a, b in pairs)


def test_the_engine_hands_the_pairs_to_the_factory(tmp_path: Path) -> None:
    s = trace_scenario(tmp_path, ["1.0 C M1 n0 n3 500", "2.0 C M2 n2 n1 500"])
    factory = ScriptFactory()
    run_scenario(s.replace(output=dataclasses.replace(s.output, plots=False)),
                 tmp_path / "out", agent=factory)  # fmt: skip
    assert factory.pre_pair == frozenset({(0, 3), (1, 2)})


# ---- the core factory ----------------------------------------------------------------------------


def setups(count: int) -> list[NodeSetup]:
    return node_setups(build({"run": {"mode": "one"}, "nodes": {"count": count, "tag_window": 8}}))


def core_node(factory: CoreFactory, setup: NodeSetup) -> object:
    return factory.build(setup, rng=SeededRng(1, f"node:{setup.address}"), now=0.0, records={})


def test_core_pairs_exactly_the_given_pairs() -> None:
    nodes = setups(5)
    factory = CoreFactory()
    factory.prepare(nodes, seed=1, pre_pair=frozenset({(0, 3), (1, 3)}))
    built = [core_node(factory, s) for s in nodes]
    for address, partners in {0: {3}, 1: {3}, 2: set(), 3: {0, 1}, 4: set()}.items():
        book = built[address].contacts  # type: ignore[attr-defined]
        assert {c.peer_id for c in book} == {factory.identity(p) for p in partners}
        assert all(c.paired and c.verified for c in book)


@pytest.mark.parametrize("pair", [(1, 1), (2, 1), (0, 5), (-1, 2)])
def test_core_rejects_pairs_that_are_not_two_nodes_of_the_run(pair: tuple[int, int]) -> None:
    with pytest.raises(ConfigError, match=r"nodes\.pre_pair: pair"):
        CoreFactory().prepare(setups(5), seed=1, pre_pair=frozenset({pair}))


def test_core_refuses_more_pre_paired_contacts_than_max_contacts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = corehost.node_config

    def two_contacts(setup: NodeSetup) -> NodeConfig:
        config = real(setup)
        return config.replace(message=dataclasses.replace(config.message, max_contacts=2))

    monkeypatch.setattr(corehost, "node_config", two_contacts)
    CoreFactory().prepare(setups(4), seed=1, pre_pair=frozenset({(0, 1), (0, 2)}))
    with pytest.raises(ConfigError, match=r"node 0 would have 3 pre-paired contacts.*\(2\)"):
        CoreFactory().prepare(setups(4), seed=1, pre_pair=frozenset({(0, 1), (0, 2), (0, 3)}))
    with pytest.raises(ConfigError, match="max_contacts"):
        CoreFactory().prepare(setups(4), seed=1, pre_pair=True)


# ---- a run with the real core ------------------------------------------------------------------


def rwp_run(tmp_path: Path, pre_pair: str) -> tuple[int, int, int]:
    s = build({
        "run": {"duration_s": 1_800.0, "mode": "one", "seed": 3},
        "nodes": {"count": 12, "pre_pair": pre_pair, "tag_window": 8},
        "routing": {"policy": "epidemic"},
        "contacts": {"source": "rwp"},
        "mobility": {"world_m": [120.0, 90.0], "range_m": 15.0, "scan_interval_s": 1.0},
        "traffic": {"source": "generator", "interval_s": [40.0, 80.0], "end_s": 1_200.0},
        "output": {"plots": False, "contact_log": False},
    })  # fmt: skip
    r = run_scenario(s, tmp_path / pre_pair)
    assert r.violations == ()
    return r.stats.created, r.stats.delivered, r.extras["creation_failed"]


def test_traffic_pairing_lets_every_message_queue_and_be_delivered(tmp_path: Path) -> None:
    created, delivered, failed = rwp_run(tmp_path, "traffic")
    assert created >= 10
    assert failed == 0
    assert delivered >= created * 4 // 5
    # The same run without pairing: no one may write to anyone.
    created_none, delivered_none, failed_none = rwp_run(tmp_path, "none")
    assert (created_none, delivered_none, failed_none) == (created, 0, created)


def test_codes_makes_contacts_without_keys() -> None:
    nodes = setups(4)
    factory = CoreFactory()
    factory.prepare(nodes, seed=1, pre_pair=CodesOnly(frozenset({(0, 2)})))
    built = [core_node(factory, s) for s in nodes]
    book = built[0].contacts  # type: ignore[attr-defined]
    assert [c.peer_id for c in book] == [factory.identity(2)]
    assert not any(c.paired for c in book)


def test_codes_delivers_by_first_contact_without_a_meeting_before_the_run(tmp_path: Path) -> None:
    created, delivered, _ = rwp_run(tmp_path, "traffic")
    created_codes, delivered_codes, failed_codes = rwp_run(tmp_path, "codes")
    assert created_codes == created
    assert failed_codes == 0
    assert delivered_codes >= created * 4 // 5  # no meeting before the run, yet delivered
    assert delivered_codes >= delivered - 2  # about what pre-paired contacts get
