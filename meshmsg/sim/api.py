"""Python API: run a scenario into a folder, or sweep parameters over seeds.

One run writes one folder::

    MessageStatsReport.txt   the ONE's report, same fields and format
    relay_privacy.txt        with output.relay_privacy: a curious relay's guesses of sender and
                             recipient beside random guessing (meshmsg/sim/observer.py)
    messages.jsonl           one record per message: created, each hop, delivered, drops and why
    contacts.txt             the contact log in the ONE's format (replayable)
    scenario.toml            the resolved scenario (defaults filled in, absolute paths)
    delivery.png, latency_cdf.png, copies.png
    group_traffic.json       with [group_traffic]: delivery per member, latency, relay copies
                             and bytes (meshmsg.sim.groupreport)
    run.json                 seed, stats, extra counts, event-log hash, wall time, peak memory,
                             git commit, Python and package versions; written last, so a folder
                             with run.json is complete (sweeps rely on it to resume)
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TextIO, TypeVar

from meshmsg.errors import ConfigError
from meshmsg.sim.engine import Engine, EngineConfig, External
from meshmsg.sim.factories import load_factory
from meshmsg.sim.failures import Failure, find_failures
from meshmsg.sim.groupreport import GroupRecorder, GroupSummary
from meshmsg.sim.grouptraffic import GroupTraffic
from meshmsg.sim.host import CodesOnly, NodeFactory, NodeSetup, PrePairing
from meshmsg.sim.links import LinkParams
from meshmsg.sim.mobility import presence_contacts, random_waypoint_contacts
from meshmsg.sim.observer import RelayObserver
from meshmsg.sim.report import MessageStats, Recorder
from meshmsg.sim.rng import SeededRng
from meshmsg.sim.scenario import (
    Scenario,
    dump_toml,
    load_scenario,
    parse_addresses,
    scenario_from_dict,
    scenario_to_dict,
)
from meshmsg.sim.traces import ContactEvent, MessageEvent, read_contacts, read_messages
from meshmsg.sim.traffic import fault_events, generate_messages, one_to_each

_E = TypeVar("_E", ContactEvent, MessageEvent)

PACKAGES = ("meshmsg", "matplotlib", "rich", "click", "cbor2", "pynacl", "noiseprotocol")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    out_dir: Path
    stats: MessageStats
    extras: dict[str, int]
    event_log_hash: str
    wall_s: float
    sim_s_per_wall_s: float
    peak_rss_mb: float
    violations: tuple[str, ...]
    failures: tuple[Failure, ...] = ()
    """Messages not created, violations, nodes never linked (:mod:`meshmsg.sim.failures`)."""
    groups: GroupSummary | None = None
    """With ``[group_traffic]``: what group traffic achieved and cost."""


def resolve(scenario: Scenario | Path | str, overrides: Sequence[str] = ()) -> Scenario:
    """A :class:`Scenario` from an object, a file path, with ``key=value`` overrides.

    Raises:
        ConfigError: see :func:`meshmsg.sim.scenario.load_scenario`.
    """
    if isinstance(scenario, Scenario):
        if not overrides:
            return scenario
        return scenario_from_dict(
            scenario_to_dict(scenario), base_dir=Path.cwd(), overrides=overrides
        )
    return load_scenario(Path(scenario), overrides)


def node_setups(s: Scenario) -> list[NodeSetup]:
    buffers = [s.nodes.buffer_bytes] * s.nodes.count
    for i, group in enumerate(s.nodes.groups):
        if group.buffer_bytes is not None:
            for a in parse_addresses(group.addresses, s.nodes.count, f"nodes.groups[{i}]"):
                buffers[a] = group.buffer_bytes
    routing = dataclasses.asdict(s.routing)
    return [
        NodeSetup(
            address=a,
            name=f"{s.nodes.name_prefix}{a}",
            buffer_bytes=buffers[a],
            ttl_s=s.nodes.ttl_s,
            one_mode=s.run.mode == "one",
            routing=routing,
            tag_window=s.nodes.tag_window,
            receipts=s.run.mode != "one" if s.nodes.receipts is None else s.nodes.receipts,
        )
        for a in range(s.nodes.count)
    ]


def external_sources(s: Scenario) -> list[Iterable[External]]:
    """The contact, traffic and fault streams of a scenario, each time-ordered."""
    n, dur, seed = s.nodes.count, s.run.duration_s, s.run.seed
    sources: list[Iterable[External]] = []
    match s.contacts.source:
        case "trace":
            sources.append(_checked(read_contacts(Path(s.contacts.trace)), n, "contacts.trace"))
        case "rwp":
            sources.append(random_waypoint_contacts(s.mobility, count=n, duration_s=dur, seed=seed))
        case "presence":
            sources.append(presence_contacts(s.presence, count=n, duration_s=dur, seed=seed))
    traffic = traffic_events(s)
    if traffic is not None:
        sources.append(traffic)
    faults = fault_events(s.faults, count=n, duration_s=dur, rng=SeededRng(seed, "faults"))
    if faults:
        sources.append(faults)
    return sources


def traffic_events(s: Scenario) -> Iterator[MessageEvent] | None:
    """The scenario's messages in time order (``None`` without traffic).

    A pure function of the scenario: generators draw from a fresh ``traffic`` stream of the run
    seed and traces are read from the start, so calling it twice yields the same events.
    """
    n, dur = s.nodes.count, s.run.duration_s
    rng = SeededRng(s.run.seed, "traffic")
    match s.traffic.source:
        case "trace":
            return _checked(read_messages(Path(s.traffic.trace)), n, "traffic.trace")
        case "generator":
            return generate_messages(s.traffic, count=n, duration_s=dur, rng=rng)
        case "one-to-each":
            return one_to_each(s.traffic, count=n, duration_s=dur, rng=rng)
    return None


def pre_pairing(s: Scenario) -> PrePairing:
    """Who is paired before t=0 (``nodes.pre_pair``).

    ``"traffic"`` pairs every sender with every recipient of a message created within the run
    (``created_at <= run.duration_s``, as the engine creates them): a person's address book
    holds the people they write to. Generated traffic is produced up front from the seed for
    this, then again for the run; the events are the same.

    Raises:
        ConfigError: a traffic trace names a node outside ``nodes.count``.
    """
    match s.nodes.pre_pair:
        case "all":
            return True
        case "none":
            return False
    pairs: set[tuple[int, int]] = set()
    for event in traffic_events(s) or ():
        if event.time > s.run.duration_s:
            break
        if event.source != event.destination:
            pairs.add((min(event.source, event.destination), max(event.source, event.destination)))
    if s.nodes.pre_pair == "codes":
        return CodesOnly(frozenset(pairs))
    return frozenset(pairs)


def restarts_possible(s: Scenario) -> bool:
    """Whether a node may be rebuilt from its committed records (a crash with a restart)."""
    f = s.faults
    return f.crash_rate_per_h > 0 or any(c.restart_after_s is not None for c in f.crashes)


def _checked(events: Iterable[_E], count: int, key: str) -> Iterator[_E]:
    for event in events:
        for address in _addresses(event):
            if not 0 <= address < count:
                raise ConfigError(
                    f"{key}: node {address} at t={event.time} but nodes.count={count}"
                )
        yield event


def _addresses(event: ContactEvent | MessageEvent) -> tuple[int, ...]:
    a = getattr(event, "a", None)
    if a is not None:
        return (a, getattr(event, "b", a))
    return (getattr(event, "source", 0), getattr(event, "destination", 0))


def run_scenario(
    scenario: Scenario | Path | str,
    out_dir: Path,
    *,
    overrides: Sequence[str] = (),
    agent: str | NodeFactory | None = None,
    progress: Callable[[float, float], None] | None = None,
) -> RunResult:
    """Run one scenario and write its folder (see the module docstring).

    Args:
        scenario: a :class:`Scenario` or the path of a TOML file.
        out_dir: the run folder (created; existing files are overwritten).
        overrides: ``key.sub=value`` settings applied on top of the file.
        agent: a factory or ``"module:Factory"``; default: the scenario's ``run.agent``.
        progress: called with (simulated time, duration) as the run advances, at most once per
            ``output.sample_interval_s`` of simulated time.

    Raises:
        ConfigError: bad scenario, trace or agent.
        LocalProtocolError: an invariant failed in a strict run.
    """
    s = resolve(scenario, overrides)
    factory = (
        agent
        if agent is not None and not isinstance(agent, str)
        else load_factory(agent or s.run.agent)
    )
    if agent is not None:  # scenario.toml and run.json name the agent the run used
        name = agent if isinstance(agent, str) else _factory_name(agent)
        s = dataclasses.replace(s, run=dataclasses.replace(s.run, agent=name))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scenario.toml").write_text(dump_toml(scenario_to_dict(s)), encoding="utf-8")
    with ExitStack() as stack:
        contact_log = None
        if s.output.contact_log:
            contact_log = stack.enter_context(
                (out_dir / "contacts.txt").open("w", encoding="utf-8")
            )
        event_log: TextIO | None = None
        if s.output.event_log:
            event_log = stack.enter_context(gzip.open(out_dir / "events.log.gz", "wt"))
        result, recorder, group = _execute(s, factory, contact_log, event_log, progress)
    stats = recorder.stats(s.run.duration_s)
    groups = group.write(out_dir / "group_traffic.json") if group is not None else None
    (out_dir / "MessageStatsReport.txt").write_text(stats.to_text(s.run.name), encoding="utf-8")
    recorder.write_messages(out_dir / "messages.jsonl")
    if recorder.relay_observer is not None:
        guesses = recorder.relay_observer.guesses(recorder.message_ends)
        (out_dir / "relay_privacy.txt").write_text(guesses.to_text(s.run.name), encoding="utf-8")
    if s.output.plots:
        from meshmsg.sim.plots import write_plots  # matplotlib is slow to load

        write_plots(
            out_dir,
            title=s.run.name,
            created=stats.created,
            duration_s=s.run.duration_s,
            delivery_times=recorder.delivery_times,
            latencies=recorder.latencies,
            copies=recorder.copies,
        )
    failures = find_failures(recorder, nodes=s.nodes.count, violations=result.violations)
    run = dataclasses.replace(result, out_dir=out_dir, stats=stats, extras=recorder.extras(),
                              failures=failures, groups=groups)  # fmt: skip
    _write_metadata(out_dir / "run.json", s, run)
    return run


def _factory_name(factory: NodeFactory) -> str:
    """``module:Class`` of a factory object passed to :func:`run_scenario` instead of a name."""
    kind = type(factory)
    return f"{kind.__module__}:{kind.__qualname__}"


def _execute(
    s: Scenario,
    factory: NodeFactory,
    contact_log: TextIO | None,
    event_log: TextIO | None,
    progress: Callable[[float, float], None] | None,
) -> tuple[RunResult, Recorder, GroupRecorder | None]:
    config = EngineConfig(
        mode=s.run.mode,
        duration_s=s.run.duration_s,
        seed=s.run.seed,
        step_s=s.run.step_s,
        interfaces={
            name: LinkParams(
                rate_bps=i.rate_bps,
                latency_s=i.latency_s,
                loss_prob=i.loss_prob,
                retransmit_s=i.retransmit_s,
                corrupt_prob=i.corrupt_prob,
            )
            for name, i in s.links.interfaces.items()
        },
        default_interface=s.links.default_interface,
        strict=s.run.strict,
    )
    curious = None
    if s.output.relay_privacy:
        curious = RelayObserver(ttl_s=s.nodes.ttl_s, copies=s.routing.copies)
    recorder = Recorder(
        sample_interval_s=s.output.sample_interval_s,
        contact_log=contact_log,
        contact_log_interfaces=s.output.contact_log_interfaces,
        relay_observer=curious,
    )
    sources = external_sources(s)
    observer: Recorder | GroupRecorder = recorder
    group: GroupRecorder | None = None
    if s.group_traffic.count:
        traffic = GroupTraffic(
            s.group_traffic, count=s.nodes.count, duration_s=s.run.duration_s,
            seed=s.run.seed, ttl_s=s.nodes.ttl_s, inner=recorder,
        )  # fmt: skip
        observer = group = traffic.recorder
        sources.append(traffic.events(factory.identity, s.nodes.count))
    engine = Engine(
        config, node_setups(s), factory, sources, observer,
        pre_pair=pre_pairing(s), keep_records=restarts_possible(s), event_log=event_log,
    )  # fmt: skip
    recorder.on_violation(engine.violation)  # report-level checks fail the run like others
    if progress is not None:
        duration = s.run.duration_s
        recorder.on_progress(lambda now: progress(now, duration))
    start = time.perf_counter()
    result = engine.run()
    wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    run = RunResult(
        out_dir=Path(),
        stats=recorder.stats(s.run.duration_s),
        extras={},
        event_log_hash=result.event_log_hash,
        wall_s=wall,
        sim_s_per_wall_s=s.run.duration_s / wall if wall > 0 else float("inf"),
        peak_rss_mb=peak_mb,
        violations=result.violations,
    )
    return run, recorder, group


def _write_metadata(path: Path, s: Scenario, run: RunResult) -> None:
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    data = {
        "scenario": s.run.name,
        "seed": s.run.seed,
        "mode": s.run.mode,
        "agent": s.run.agent,
        "stats": run.stats.as_dict(),
        "extras": run.extras,
        "event_log_hash": run.event_log_hash,
        "wall_s": run.wall_s,
        "sim_s_per_wall_s": run.sim_s_per_wall_s,
        "peak_rss_mb": run.peak_rss_mb,
        "violations": list(run.violations),
        "failures": [f.as_dict() for f in run.failures],
        "git_commit": git_commit(),
        "versions": versions,
        "argv": sys.argv,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def git_commit() -> str | None:
    """The checked-out commit of the source tree, read from ``.git`` (no git binary needed)."""
    for parent in Path(__file__).resolve().parents:
        git = parent / ".git"
        if git.is_dir():
            try:
                head = (git / "HEAD").read_text().strip()
                if not head.startswith("ref: "):
                    return head
                ref = head[5:]
                if (git / ref).is_file():
                    return (git / ref).read_text().strip()
                for line in (git / "packed-refs").read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
            except OSError:
                return None
            return None
    return None
