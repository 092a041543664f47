"""Group traffic in the simulator (issue #14): groups made by the real core, delivery counted
per member, and the relay cost of one group ciphertext beside pairwise fan-out."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshmsg.errors import ConfigError
from meshmsg.sim.api import run_scenario
from meshmsg.sim.groupcompare import load, mean_ci, table
from meshmsg.sim.groupreport import GroupSummary
from meshmsg.sim.grouptraffic import plan_groups, plan_sends
from meshmsg.sim.rng import SeededRng
from meshmsg.sim.scenario import GroupTrafficSection, Scenario, scenario_from_dict

MEMBERS = (0, 1, 2, 3)
RELAYS = (4, 5)
SEED = 3
SPEC = GroupTrafficSection(
    count=1, size=(4, 4), members="0-3", start_s=150.0, interval_s=(50.0, 100.0)
)


def contacts() -> str:
    """Members never meet each other: everything goes through two relays they meet in turn."""
    lines, t = [], 10.0
    while t < 700.0:
        for member in MEMBERS:
            relay = RELAYS[int(t) % 2]
            lines += [f"{t} CONN {member} {relay} up", f"{t + 8.0} CONN {member} {relay} down"]
            t += 10.0
    return "\n".join(lines) + "\n"


def scenario(tmp_path: Path, delivery: str, *, crashed: int | None = None) -> Scenario:
    (tmp_path / "c.txt").write_text(contacts())
    faults = {"crashes": [{"address": crashed, "at_s": 0.0}]} if crashed is not None else {}
    table: dict[str, object] = {
        "run": {"name": "groups", "seed": SEED, "duration_s": 750.0},
        "nodes": {"count": 6, "ttl_s": 3_600.0},
        "routing": {"policy": "epidemic"},
        "links": {"interfaces": {"default": {"rate_bps": 2e6, "latency_s": 0.001}}},
        "contacts": {"source": "trace", "trace": "c.txt"},
        "group_traffic": {
            "count": SPEC.count,
            "size": list(SPEC.size),
            "members": SPEC.members,
            "start_s": SPEC.start_s,
            "interval_s": list(SPEC.interval_s),
            "delivery": delivery,
        },
        "faults": faults,
        "output": {"plots": False, "contact_log": False},
    }
    return scenario_from_dict(table, base_dir=tmp_path)


def summary(tmp_path: Path, delivery: str, **kw: int) -> GroupSummary:
    result = run_scenario(scenario(tmp_path, delivery, **kw), tmp_path / delivery)
    assert result.groups is not None
    assert (tmp_path / delivery / "group_traffic.json").is_file()
    return result.groups


def test_the_plan_is_a_function_of_the_seed_alone() -> None:
    def plan() -> tuple[list[tuple[int, ...]], list[tuple[float, int]]]:
        rng = SeededRng(SEED, "group_traffic")
        groups = plan_groups(SPEC, count=6, rng=rng)
        planned = plan_sends(SPEC, groups, duration_s=750, rng=rng, count=6)
        sends = [(s.time, s.sender) for s in planned]
        return groups, sends

    groups, sends = plan()
    assert plan() == (groups, sends)
    assert sorted(groups[0]) == list(MEMBERS)
    assert all(sender in MEMBERS for _, sender in sends)
    assert len({sender for _, sender in sends}) > 1


def test_writers_can_be_a_few_of_the_members() -> None:
    spec = GroupTrafficSection(count=2, size=(4, 4), members="0-5", senders="0,1")
    rng = SeededRng(SEED, "group_traffic")
    groups = plan_groups(spec, count=6, rng=rng)
    sends = list(plan_sends(spec, groups, duration_s=3_000, rng=rng, count=6))
    for send in sends:
        writers = {0, 1} & set(groups[send.group]) or set(groups[send.group])
        assert send.sender in writers
    assert sends


def test_group_delivery_is_counted_per_member(tmp_path: Path) -> None:
    creator = plan_groups(SPEC, count=6, rng=SeededRng(SEED, "group_traffic"))[0][0]
    offline = next(m for m in MEMBERS if m != creator)
    s = summary(tmp_path, "group", crashed=offline)
    sent = s.messages - s.not_created
    assert sent > 3
    assert s.pairs == 3 * s.messages  # a group of 4: three recipients per message
    assert s.per_member[str(offline)][0] == 0  # down for the whole run: gets nothing
    assert s.per_member[str(offline)][1] > 0  # ...though messages were addressed to it
    online = [str(m) for m in MEMBERS if m != offline]
    assert all(s.per_member[m][0] > 0 for m in online)
    assert sum(got for got, _ in s.per_member.values()) == s.pairs_delivered
    assert sum(total for _, total in s.per_member.values()) == s.pairs
    assert s.member_ratio_min == 0.0
    assert s.all_members_ratio == 0.0  # no message reached the member that was down
    assert s.latency_median_s > 0


def test_fan_out_carries_more_relay_copies_than_group_mail(tmp_path: Path) -> None:
    group = summary(tmp_path, "group")
    fanout = summary(tmp_path, "fanout")
    assert (group.messages, group.pairs) == (fanout.messages, fanout.pairs)  # the same traffic
    assert group.pairs_delivered > 0
    assert fanout.pairs_delivered > 0
    # Every message reaches the relays once as group mail, three times as fan-out (fewer where
    # a purge after delivery stops a pairwise copy).
    assert fanout.relay_copies > 2 * group.relay_copies > 0
    # Fewer bytes too, though a group envelope is larger (its signature and heads can move it
    # up a padding bucket).
    assert fanout.relay_bytes > group.relay_bytes
    assert group.other_copies > 0  # the operations and chains that group mail needs first
    for delivery in ("group", "fanout"):  # the folder names compare() writes, read back
        (tmp_path / "runs" / f"{delivery}-seed{SEED}").mkdir(parents=True)
        (tmp_path / delivery / "group_traffic.json").rename(
            tmp_path / "runs" / f"{delivery}-seed{SEED}" / "group_traffic.json"
        )
    assert load(tmp_path / "runs", [SEED, SEED + 1]) == {"group": [group], "fanout": [fanout]}
    rendered = table({"group": [group], "fanout": [fanout]})
    assert "relay copies" in rendered
    assert str(fanout.relay_copies) in rendered


def test_confidence_interval_of_several_seeds() -> None:
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(4.303 * 1.0 / 3**0.5)


def test_group_traffic_is_checked(tmp_path: Path) -> None:
    base = scenario(tmp_path, "group")
    with pytest.raises(ConfigError, match=r"group_traffic\.delivery"):
        scenario(tmp_path, "broadcast")
    with pytest.raises(ConfigError, match=r"group_traffic\.size"):
        scenario_from_dict(
            {"nodes": {"count": 3}, "group_traffic": {"count": 1, "size": [2, 5]}},
            base_dir=tmp_path,
        )
    assert base.group_traffic.count == 1
