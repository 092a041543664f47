"""Scenarios: TOML files mapped onto frozen dataclasses with documented defaults.

Every key has a default here, so a scenario file states only what differs. Unknown keys are
rejected with their dotted path (the ONE silently ignores misspelt settings), and values are
type-checked. ``--param key.sub=value`` overrides apply to the raw table before it is checked;
the value is read as a TOML value (``4``, ``true``, ``[1, 2]``, ``"x"``) or else as a string.
Relative trace paths are relative to the scenario file. :func:`dump_toml` writes the resolved
scenario (defaults filled in, paths absolute) into every run folder.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from meshmsg.config import RoutingConfig
from meshmsg.errors import ConfigError

T = TypeVar("T")
Range = tuple[float, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSection:
    name: str = "scenario"  # used in report titles and folder names
    seed: int = 1  # master seed; every random stream is derived from it by name
    duration_s: float = 3_600.0  # simulated time
    mode: str = "messenger"  # "messenger" (pipelined frames) or "one" (the ONE's semantics)
    step_s: float = 0.1  # ONE mode update interval (the ONE's Scenario.updateInterval)
    agent: str = "core"  # "core" (the real Node) or "module:Factory" (meshmsg.sim.agents)
    strict: bool = True  # stop at the first invariant violation


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeGroup:
    addresses: str  # "120-125" or "1,4,7-9"
    buffer_bytes: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NodesSection:
    count: int = 2
    buffer_bytes: int = 5_000_000  # relay store cap; the ONE default scenario's 5 MB
    ttl_s: float = 18_000.0  # message lifetime; the ONE reference runs use 300 min
    # Who is a verified, already paired contact of whom at t=0 (the core's offline pairing):
    # "all" every pair of nodes, "traffic" only the pairs that write to each other in the run's
    # traffic (relays carry sealed mail and need no pairing), "none" nobody. true and false are
    # accepted as "all" and "none".
    pre_pair: str = "all"
    name_prefix: str = "n"  # node names are prefix + address
    # Counters of tags each node precomputes per contact and period (the core's tag_window).
    # 64 suits a messenger; with every pair of 126 nodes pre-paired, 8 keeps set-up fast and is
    # ample for the reference trace, where no pair exchanges more than a handful of messages.
    tag_window: int = 64
    # End-to-end receipts and purge tokens: None means on in messenger mode, off in ONE mode
    # (the ONE has neither, so they would add transfers and removals it does not count).
    receipts: bool | None = None
    groups: tuple[NodeGroup, ...] = ()  # per-address overrides (the ONE's trams: 50 MB)


@dataclass(frozen=True, slots=True, kw_only=True)
class InterfaceSection:
    rate_bps: float = 250_000.0  # bytes/s; the ONE's Bluetooth interface
    latency_s: float = 0.0  # messenger mode only
    loss_prob: float = 0.0  # messenger mode: a frame is held back by retransmit_s
    retransmit_s: float = 0.2
    corrupt_prob: float = 0.0  # messenger mode: one byte flipped (AEAD must catch it)


@dataclass(frozen=True, slots=True, kw_only=True)
class LinksSection:
    default_interface: str = "default"  # for trace lines without an interface
    interfaces: dict[str, InterfaceSection] = field(
        default_factory=lambda: {"default": InterfaceSection()}
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactsSection:
    source: str = "none"  # none | trace | rwp | presence
    trace: str = ""  # ONE CONN file (gzip or plain) when source = "trace"


@dataclass(frozen=True, slots=True, kw_only=True)
class StaticNode:
    address: int
    x: float
    y: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MobilitySection:
    world_m: Range = (1_000.0, 1_000.0)  # width, height
    speed_mps: Range = (0.5, 1.5)  # the ONE's pedestrians
    pause_s: Range = (0.0, 120.0)
    range_m: float = 10.0  # radio range (the ONE's Bluetooth 10 m)
    interface: str = "default"
    scan_interval_s: float = 0.1  # contact times are rounded up to this grid; 0 = exact
    window_s: float = 0.0  # candidate-pair window; 0 = range_m / max speed
    static: tuple[StaticNode, ...] = ()  # relays that do not move


@dataclass(frozen=True, slots=True, kw_only=True)
class PresenceSection:
    arrive_s: Range = (8 * 3_600.0, 10 * 3_600.0)  # each person arrives uniformly in this range
    leave_s: Range = (16 * 3_600.0, 19 * 3_600.0)
    always: str = ""  # addresses always present (servers, relays): "0-1"
    interface: str = "default"


@dataclass(frozen=True, slots=True, kw_only=True)
class TrafficSection:
    source: str = "none"  # none | trace | generator | one-to-each
    trace: str = ""  # ONE C file when source = "trace"
    interval_s: Range = (25.0, 35.0)  # the ONE's MessageEventGenerator interval
    size_bytes: tuple[int, int] = (1_000, 2_000)  # the reference run's 1-2 kB
    senders: str = ""  # address spec; "" = all nodes
    receivers: str = ""  # address spec; "" = all nodes
    start_s: float = 0.0
    end_s: float | None = None  # None: end of the run
    prefix: str = "M"


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupTrafficSection:
    """Group mail (issue #14; ``meshmsg.sim.grouptraffic``): groups made with the real core's
    group operations at ``setup_s``, then messages to a random group from a random member."""

    count: int = 0  # groups; 0 = no group traffic
    size: tuple[int, int] = (3, 10)  # members per group, creator included (uniform)
    members: str = ""  # address spec members are drawn from; "" = all nodes
    # Who writes: a message comes from a random member of the group among these addresses
    # ("" = any member; a group with none of them: any member). Few writers (a coordinator,
    # team leads) reuse their sender chains; many first-time writers each hand a chain out first.
    senders: str = ""
    setup_s: float = 0.0  # when each group's creator creates it
    interval_s: Range = (60.0, 120.0)  # between group messages (uniform), over all groups
    size_bytes: tuple[int, int] = (100, 2_000)  # text bodies (at most a text body's 32 KiB)
    start_s: float = 60.0
    end_s: float | None = None  # None: end of the run
    # "group": one group message (one ciphertext for every member); "fanout": the same traffic
    # as one pairwise message per member, for the relay-cost comparison (same seed, same run).
    delivery: str = "group"
    prefix: str = "G"


@dataclass(frozen=True, slots=True, kw_only=True)
class CrashSpec:
    address: int
    at_s: float
    restart_after_s: float | None = None  # None: stays down


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionSpec:
    start_s: float
    end_s: float
    groups: tuple[tuple[int, ...], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultsSection:
    crashes: tuple[CrashSpec, ...] = ()
    crash_rate_per_h: float = 0.0  # random crashes per node-hour
    downtime_s: Range = (60.0, 600.0)  # for random crashes
    partitions: tuple[PartitionSpec, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputSection:
    plots: bool = True
    event_log: bool = False  # also write every hashed line to events.log.gz (large)
    contact_log: bool = True
    contact_log_interfaces: bool = True  # append the interface, so multi-interface runs replay
    sample_interval_s: float = 60.0  # time-series resolution (copies in flight)
    # Score an honest-but-curious relay's guesses of sender and recipient (relay_privacy.txt,
    # meshmsg/sim/observer.py; issue #11, finding 4). Off by default: it logs every copy.
    relay_privacy: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    run: RunSection = field(default_factory=RunSection)
    nodes: NodesSection = field(default_factory=NodesSection)
    # The node's own RoutingConfig: its fields, defaults and reasons are the scenario's
    # [routing] keys, so the two cannot drift. ONE mode changes one default (see below).
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    links: LinksSection = field(default_factory=LinksSection)
    contacts: ContactsSection = field(default_factory=ContactsSection)
    mobility: MobilitySection = field(default_factory=MobilitySection)
    presence: PresenceSection = field(default_factory=PresenceSection)
    traffic: TrafficSection = field(default_factory=TrafficSection)
    group_traffic: GroupTrafficSection = field(default_factory=GroupTrafficSection)
    faults: FaultsSection = field(default_factory=FaultsSection)
    output: OutputSection = field(default_factory=OutputSection)

    def replace(self, **changes: object) -> Scenario:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


# ---- loading -----------------------------------------------------------------------------------


def load_scenario(path: Path, overrides: Sequence[str] = ()) -> Scenario:
    """Read a scenario file, apply ``key=value`` overrides, check and resolve it.

    Raises:
        ConfigError: unreadable file, bad TOML, unknown key, wrong type or invalid value.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read scenario: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    return scenario_from_dict(data, base_dir=path.parent, overrides=overrides)


def scenario_from_dict(
    data: Mapping[str, object], *, base_dir: Path, overrides: Sequence[str] = ()
) -> Scenario:
    """Build a :class:`Scenario` from a TOML-shaped table (see :func:`load_scenario`)."""
    table = _deep_copy(data)
    for item in overrides:
        apply_override(table, item)
    _apply_aliases(table)
    _apply_mode_defaults(table)
    scenario = _convert(Scenario, table, "")
    assert isinstance(scenario, Scenario)
    scenario = _resolve_paths(scenario, base_dir)
    validate(scenario)
    return scenario


def apply_override(table: dict[str, object], item: str) -> None:
    """Set ``a.b.c=value`` in a nested table (creating sub-tables).

    Raises:
        ConfigError: not of the form ``key=value``.
    """
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not key=value")
    parts = key.strip().split(".")
    node = table
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {part!r} is not a table")
        node = child
    node[parts[-1]] = parse_value(raw.strip())


def parse_value(raw: str) -> object:
    """A TOML value if it parses as one, else the raw string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_mode_defaults(table: dict[str, object]) -> None:
    """ONE mode keeps delivered copies (the ONE's ``deleteDelivered = false``) unless the
    scenario says otherwise; the resolved scenario then states the value explicitly."""
    run = table.get("run")
    mode = run.get("mode", RunSection().mode) if isinstance(run, dict) else RunSection().mode
    routing = table.setdefault("routing", {})
    if mode == "one" and isinstance(routing, dict):
        routing.setdefault("drop_after_delivery", False)


PRE_PAIR_VALUES = ("all", "traffic", "codes", "none")
_PRE_PAIR_EXPECTED = (
    'expected "all", "traffic", "codes" or "none" (true and false mean "all" and "none")'
)


def _apply_aliases(table: dict[str, object]) -> None:
    """Older spellings, rewritten in the raw table: ``nodes.pre_pair = true|false``.

    Raises:
        ConfigError: ``nodes.pre_pair`` is neither a string nor a boolean.
    """
    nodes = table.get("nodes")
    if not isinstance(nodes, dict) or "pre_pair" not in nodes:
        return
    value = nodes["pre_pair"]
    if isinstance(value, bool):
        nodes["pre_pair"] = "all" if value else "none"
    elif not isinstance(value, str):
        raise ConfigError(f"nodes.pre_pair: {_PRE_PAIR_EXPECTED}, got {value!r}")


def _deep_copy(data: Mapping[str, object]) -> dict[str, object]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def _convert(tp: object, value: object, path: str) -> object:
    where = path or "scenario"
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _convert_dataclass(tp, value, path)
    if origin is types.UnionType or origin is typing.Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path)
    if origin is tuple:
        return _convert_tuple(tp, value, where)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table")
        _, vt = typing.get_args(tp)
        return {str(k): _convert(vt, v, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported setting type {tp!r}")


def _convert_tuple(tp: object, value: object, where: str) -> tuple[object, ...]:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{where}: expected an array, got {value!r}")
    args = typing.get_args(tp)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
    return tuple(
        _convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
    )


def _convert_dataclass(cls: type, value: object, path: str) -> object:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path or 'scenario'}: expected a table, got {value!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in value:
        if key not in names:
            dotted = f"{path}.{key}" if path else str(key)
            known = ", ".join(sorted(names))
            raise ConfigError(f"unknown key {dotted!r} (known here: {known})")
    kwargs: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        dotted = f"{path}.{f.name}" if path else f.name
        if f.name in value:
            kwargs[f.name] = _convert(hints[f.name], value[f.name], dotted)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing key {dotted!r}")
    return cls(**kwargs)


def _resolve_paths(scenario: Scenario, base_dir: Path) -> Scenario:
    def resolve(p: str) -> str:
        return str((base_dir / p).resolve()) if p else p

    return scenario.replace(
        contacts=dataclasses.replace(scenario.contacts, trace=resolve(scenario.contacts.trace)),
        traffic=dataclasses.replace(scenario.traffic, trace=resolve(scenario.traffic.trace)),
    )


# ---- validation --------------------------------------------------------------------------------


def parse_addresses(spec: str, count: int, where: str) -> tuple[int, ...]:
    """``"1,4,7-9"`` -> (1, 4, 7, 8, 9); ``""`` -> every address.

    Raises:
        ConfigError: bad syntax or an address outside ``0..count-1``.
    """
    if not spec.strip():
        return tuple(range(count))
    out: dict[int, None] = {}
    for part in spec.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ConfigError(f"{where}: bad address list {spec!r}") from None
        if not 0 <= first <= last < count:
            raise ConfigError(f"{where}: {part.strip()!r} is outside 0..{count - 1}")
        out.update(dict.fromkeys(range(first, last + 1)))
    return tuple(out)


def _check(ok: bool, where: str, text: str) -> None:
    if not ok:
        raise ConfigError(f"{where}: {text}")


def _check_range(r: Range | tuple[int, int], where: str, *, low: float = 0.0) -> None:
    _check(low <= r[0] <= r[1], where, f"expected {low} <= low <= high, got {list(r)}")


def validate(s: Scenario) -> None:
    """Cross-field checks that types alone cannot express.

    Raises:
        ConfigError: naming the offending key.
    """
    _check(s.run.mode in ("one", "messenger"), "run.mode", "must be 'one' or 'messenger'")
    _check(s.run.duration_s > 0, "run.duration_s", "must be positive")
    _check(s.run.step_s > 0, "run.step_s", "must be positive")
    _check(s.nodes.count >= 2, "nodes.count", "a network needs at least 2 nodes")
    _check(s.nodes.buffer_bytes > 0, "nodes.buffer_bytes", "must be positive")
    _check(s.nodes.ttl_s > 0, "nodes.ttl_s", "must be positive")
    _check(1 <= s.nodes.tag_window <= 4_096, "nodes.tag_window", "must be in 1..4096")
    _check(
        s.nodes.pre_pair in PRE_PAIR_VALUES,
        "nodes.pre_pair",
        f"{_PRE_PAIR_EXPECTED}, got {s.nodes.pre_pair!r}",
    )
    for i, g in enumerate(s.nodes.groups):
        parse_addresses(g.addresses, s.nodes.count, f"nodes.groups[{i}].addresses")
    policies = ("direct", "epidemic", "spray-and-wait", "prophet")
    _check(s.routing.policy in policies, "routing.policy", f"must be one of {policies}")
    _check(s.routing.copies >= 1, "routing.copies", "must be at least 1")
    _check(bool(s.links.interfaces), "links.interfaces", "at least one interface is needed")
    for name, iface in s.links.interfaces.items():
        where = f"links.interfaces.{name}"
        _check(iface.rate_bps > 0, f"{where}.rate_bps", "must be positive")
        _check(iface.latency_s >= 0, f"{where}.latency_s", "must be >= 0")
        for key in ("loss_prob", "corrupt_prob"):
            _check(0 <= getattr(iface, key) < 1, f"{where}.{key}", "must be in [0, 1)")
    sources = ("none", "trace", "rwp", "presence")
    _check(s.contacts.source in sources, "contacts.source", f"must be one of {sources}")
    if s.contacts.source == "trace":
        _check(Path(s.contacts.trace).is_file(), "contacts.trace", "file not found")
    m = s.mobility
    _check(m.world_m[0] > 0 and m.world_m[1] > 0, "mobility.world_m", "must be positive")
    _check_range(m.speed_mps, "mobility.speed_mps")
    _check(m.speed_mps[1] > 0, "mobility.speed_mps", "some speed must be positive")
    _check_range(m.pause_s, "mobility.pause_s")
    _check(m.range_m > 0, "mobility.range_m", "must be positive")
    _check(m.scan_interval_s >= 0 and m.window_s >= 0, "mobility", "intervals must be >= 0")
    for i, st in enumerate(m.static):
        _check(0 <= st.address < s.nodes.count, f"mobility.static[{i}]", "address out of range")
    _check_range(s.presence.arrive_s, "presence.arrive_s")
    _check_range(s.presence.leave_s, "presence.leave_s")
    parse_addresses(s.presence.always, s.nodes.count, "presence.always")
    traffic = ("none", "trace", "generator", "one-to-each")
    _check(s.traffic.source in traffic, "traffic.source", f"must be one of {traffic}")
    if s.traffic.source == "trace":
        _check(Path(s.traffic.trace).is_file(), "traffic.trace", "file not found")
    _check_range(s.traffic.interval_s, "traffic.interval_s")
    _check(s.traffic.interval_s[1] > 0, "traffic.interval_s", "must allow a positive interval")
    _check_range(s.traffic.size_bytes, "traffic.size_bytes", low=1)
    parse_addresses(s.traffic.senders, s.nodes.count, "traffic.senders")
    parse_addresses(s.traffic.receivers, s.nodes.count, "traffic.receivers")
    _validate_group_traffic(s)
    _check(s.faults.crash_rate_per_h >= 0, "faults.crash_rate_per_h", "must be >= 0")
    _check_range(s.faults.downtime_s, "faults.downtime_s")
    for i, c in enumerate(s.faults.crashes):
        _check(0 <= c.address < s.nodes.count, f"faults.crashes[{i}].address", "out of range")
    for i, p in enumerate(s.faults.partitions):
        _check(p.start_s < p.end_s, f"faults.partitions[{i}]", "start_s must be before end_s")
    _check(s.output.sample_interval_s > 0, "output.sample_interval_s", "must be positive")


def _validate_group_traffic(s: Scenario) -> None:
    g = s.group_traffic
    _check(g.count >= 0, "group_traffic.count", "must be >= 0")
    _check_range(g.size, "group_traffic.size", low=2)
    pool = parse_addresses(g.members, s.nodes.count, "group_traffic.members")
    parse_addresses(g.senders, s.nodes.count, "group_traffic.senders")
    _check(
        g.count == 0 or g.size[1] <= len(pool),
        "group_traffic.size",
        f"more than the {len(pool)} addresses of group_traffic.members",
    )
    _check_range(g.interval_s, "group_traffic.interval_s")
    _check(g.interval_s[1] > 0, "group_traffic.interval_s", "must allow a positive interval")
    _check_range(g.size_bytes, "group_traffic.size_bytes", low=1)
    _check(g.delivery in ("group", "fanout"), "group_traffic.delivery", "'group' or 'fanout'")
    _check(g.setup_s >= 0 and g.start_s >= 0, "group_traffic", "times must be >= 0")
    _check(g.count == 0 or s.run.mode == "messenger", "group_traffic", "needs messenger mode")


# ---- writing -----------------------------------------------------------------------------------


def scenario_to_dict(scenario: Scenario) -> dict[str, object]:
    """Plain tables (tuples as lists, ``None`` left out: TOML has no null)."""
    return _plain(dataclasses.asdict(scenario))  # type: ignore[return-value]


def _plain(value: object) -> object:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def dump_toml(table: Mapping[str, object]) -> str:
    """A small TOML writer for scenario tables (tables, arrays of tables, scalars, arrays)."""
    lines: list[str] = []
    _dump_table(table, [], lines)
    return "\n".join(lines).strip() + "\n"


def _dump_table(table: Mapping[str, object], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not _is_table(v) and not _is_table_array(v)}
    if path and (scalars or not table):
        lines += ["", f"[{'.'.join(_key(p) for p in path)}]"]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in scalars.items()]
    for k, v in table.items():
        if _is_table(v):
            assert isinstance(v, Mapping)
            _dump_table(v, [*path, k], lines)
        elif _is_table_array(v):
            assert isinstance(v, list)
            for item in v:
                lines += ["", f"[[{'.'.join(_key(p) for p in [*path, k])}]]"]
                lines += [f"{_key(ik)} = {_value(iv)}" for ik, iv in item.items()]


def _is_table(v: object) -> bool:
    return isinstance(v, Mapping)


def _is_table_array(v: object) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(i, Mapping) for i in v)


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _value(k)


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        escaped = v.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(v, list):
        return "[" + ", ".join(_value(i) for i in v) + "]"
    raise ConfigError(f"cannot write {v!r} to TOML")
