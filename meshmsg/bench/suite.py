"""``meshmsg bench``: every performance figure next to its physical limit, measured in the same run.

Theory of operation
-------------------
A :class:`Measure` names one row of the table: a function that returns one *sample* (a dict of
named figures) per call, which figure is the headline, which one is the limit it is compared
with, and the goal. The figure and its limit come out of the same call, so the ratio of each
sample compares two numbers taken seconds apart on the same machine under the same load; the
ratio reported is the median of those per-sample ratios.

Running a measure: one warm-up call (smaller sizes, discarded: imports, caches, the allocator
and the CPU's frequency settle), then ``repeats`` calls; each figure is reported as its median
with the minimum and maximum. ``--quick`` uses fewer repeats and smaller sizes (a CI smoke run:
the numbers are then indicative only).

Isolation. Each measure runs in its own process (``multiprocessing`` with *spawn*, so nothing
is inherited from the parent but the arguments), with a deadline. An exception, a crash or a
hang becomes a row with the error; the run goes on. Measures whose figure is memory get a fresh
process per repetition, because freed memory is kept by the allocator and would hide the next
repetition's growth. ``--no-isolate`` runs everything in this process (for profilers).

Rows that cannot be measured here say why instead of failing: *skipped* (the machine lacks
something, e.g. root and network namespaces for multicast) or *not yet available* (the code
that the figure measures has not landed; the limit is still measured when it can be).

Run ``meshmsg bench --help``; figures and their meaning are in docs/performance.md.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import gc
import hashlib
import importlib
import importlib.util
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from meshmsg.bench.daemons import measures as daemon_measures
from meshmsg.errors import ConfigError, MeshError

Figures = dict[str, float]
"""One sample: named figures of one repetition (rates per second, bytes, seconds, ...)."""

KIB: Final = 1024
MIB: Final = 1024 * 1024
PROJECT_ROOT: Final = Path(__file__).resolve().parents[1]
DEFAULT_SIM_REFERENCE: Final = PROJECT_ROOT.parent / "shared" / "sim-reference"
REFERENCE_SCENARIO: Final = PROJECT_ROOT / "simulations" / "reference" / "one-reference.toml"
JSON_FORMAT: Final = 1  # bump when a key of the JSON output changes meaning
SIM_WINDOW_S: Final = 1_800.0
"""Simulated seconds of the 12 h reference trace a full run replays (the first 30 minutes):
every node run starts by pre-pairing 126 nodes (7,875 pairs), which alone takes tens of
seconds, so the whole trace does not fit the bench's time budget. ``--sim-duration 43200``."""


# ============================================================================ the registry


class Status(enum.Enum):
    MET = "met"
    MISSED = "missed"
    NO_GOAL = "no goal"
    SKIPPED = "skipped"  # this machine cannot run it (no multicast, no root, ...)
    PENDING = "not yet available"  # the code it measures has not landed yet
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Condition:
    """One clause of a goal: ``figures[key] <op> threshold`` on the median."""

    key: str
    op: Literal["<=", ">="]
    threshold: float

    def holds(self, value: float) -> bool:
        return value <= self.threshold if self.op == "<=" else value >= self.threshold


@dataclass(frozen=True, slots=True)
class Blocked:
    """Why a row's headline cannot be measured on this run."""

    status: Literal[Status.SKIPPED, Status.PENDING]
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What a measure function may depend on. Picklable: it crosses into the child process."""

    quick: bool
    warmup: bool  # the discarded first call: use the smallest sizes
    workdir: Path  # a directory on the disk to measure (durable submits)
    root: Path  # the project checkout (for tests/ helpers and the simulator scenarios)
    sim_reference: Path
    sim_duration_s: float  # how much of the reference trace a full run replays

    def size(self, full: int, quick: int, warmup: int) -> int:
        return warmup if self.warmup else quick if self.quick else full


def _never_blocked(ctx: Context) -> Blocked | None:
    return None


def _plain(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Measure:
    """One row of the table. Every callable is a module-level function (it is pickled)."""

    name: str  # for --only and the JSON
    title: str
    figure: str  # key of the headline figure in a sample
    run: Callable[[Context], Figures]
    unit: str = ""
    fmt: Callable[[float], str] = _plain
    limit: str | None = None  # key of the limit figure, measured by the same call
    limit_title: str = ""
    goal: tuple[Condition, ...] = ()
    goal_text: str = ""
    # Secondary figures shown in the table's notes: (key, label, format).
    details: tuple[tuple[str, str, Callable[[float], str]], ...] = ()
    repeats: int = 5
    quick_repeats: int = 3
    warmup: bool = True
    fresh_process: bool = False  # one process per repetition (memory figures)
    timeout_s: float = 120.0
    quick_timeout_s: float = 40.0
    blocked: Callable[[Context], Blocked | None] = _never_blocked
    limit_when_blocked: bool = False  # still call ``run`` for the limit when blocked

    def repetitions(self, quick: bool) -> int:
        return self.quick_repeats if quick else self.repeats

    def deadline_s(self, quick: bool) -> float:
        return self.quick_timeout_s if quick else self.timeout_s


# ============================================================================== the rows


@dataclass(frozen=True, slots=True)
class Stat:
    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        return cls(statistics.median(values), min(values), max(values))

    def as_json(self) -> dict[str, float]:
        return {"median": self.median, "min": self.min, "max": self.max}


@dataclass(slots=True, kw_only=True)
class Row:
    measure: Measure
    status: Status
    figures: dict[str, Stat] = field(default_factory=dict)
    ratio: Stat | None = None
    goal_met: bool | None = None
    samples: int = 0
    reason: str = ""
    error: str = ""
    elapsed_s: float = 0.0

    @property
    def figure(self) -> Stat | None:
        return self.figures.get(self.measure.figure)

    @property
    def limit(self) -> Stat | None:
        return self.figures.get(self.measure.limit) if self.measure.limit else None

    def as_json(self) -> dict[str, Any]:
        m = self.measure
        figure, limit = self.figure, self.limit
        return {
            "name": m.name,
            "title": m.title,
            "unit": m.unit,
            "status": self.status.value,
            "figure": figure.as_json() if figure else None,
            "limit": limit.as_json() if limit else None,
            "limit_title": m.limit_title,
            "ratio": self.ratio.as_json() if self.ratio else None,
            "goal": m.goal_text,
            "goal_met": self.goal_met,
            "repeats": self.samples,
            "figures": {k: v.as_json() for k, v in sorted(self.figures.items())},
            "reason": self.reason or None,
            "error": self.error or None,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def summarise(
    measure: Measure,
    samples: Sequence[Figures],
    *,
    error: str = "",
    blocked: Blocked | None = None,
    elapsed_s: float = 0.0,
) -> Row:
    """Turn the samples of one measure into its row (medians, ratio, goal, status)."""
    keys = set(samples[0]) if samples else set()
    for sample in samples[1:]:
        keys &= set(sample)
    figures = {k: Stat.of([s[k] for s in samples]) for k in sorted(keys)}
    ratio = None
    if measure.limit is not None and measure.figure in keys and measure.limit in keys:
        ratios = [s[measure.figure] / s[measure.limit] for s in samples if s[measure.limit]]
        ratio = Stat.of(ratios) if len(ratios) == len(samples) else None
    row = Row(
        measure=measure,
        status=Status.NO_GOAL,
        figures=figures,
        ratio=ratio,
        samples=len(samples),
        error=error,
        elapsed_s=elapsed_s,
    )
    if error:
        row.status = Status.ERROR
    elif blocked is not None:
        row.status, row.reason = blocked.status, blocked.reason
    elif measure.figure not in figures:
        row.status = Status.ERROR
        row.error = f"the measure returned no {measure.figure!r} figure"
    elif measure.goal:
        values = {**{k: s.median for k, s in figures.items()}}
        if ratio is not None:
            values["ratio"] = ratio.median
        missing = [c.key for c in measure.goal if c.key not in values]
        if missing:
            row.status = Status.ERROR
            row.error = f"the goal needs figures the measure did not return: {missing}"
        else:
            row.goal_met = all(c.holds(values[c.key]) for c in measure.goal)
            row.status = Status.MET if row.goal_met else Status.MISSED
    return row


# =========================================================================== the runner


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    quick: bool = False
    isolate: bool = True
    workdir: Path = field(default_factory=Path.cwd)
    root: Path = PROJECT_ROOT
    sim_reference: Path = DEFAULT_SIM_REFERENCE
    sim_duration_s: float = SIM_WINDOW_S

    def context(self, *, warmup: bool) -> Context:
        return Context(
            quick=self.quick,
            warmup=warmup,
            workdir=self.workdir,
            root=self.root,
            sim_reference=self.sim_reference,
            sim_duration_s=self.sim_duration_s,
        )


Progress_ = Callable[[str], None]  # called with a short text after each sample


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 500 else text[:497] + "..."


def _samples_in_process(
    measure: Measure, options: Options, count: int, warmup: bool, tick: Progress_
) -> tuple[list[Figures], str]:
    samples: list[Figures] = []
    try:
        if warmup:
            measure.run(options.context(warmup=True))
        for i in range(count):
            samples.append(measure.run(options.context(warmup=False)))
            tick(f"{i + 1}/{count}")
    # The per-measure boundary: whatever a measure raises becomes its row's error and the other
    # measures still run. Exception (not BaseException): Ctrl-C and SystemExit still stop the run.
    except Exception as exc:
        return samples, _describe(exc)
    return samples, ""


def _child(
    measure: Measure, options: Options, count: int, warmup: bool, conn: Any
) -> None:  # pragma: no cover - runs in the spawned process (its results are tested)
    def tick(_: str) -> None:
        conn.send(("sample", samples[-1]))

    samples: list[Figures] = []
    try:
        if warmup:
            measure.run(options.context(warmup=True))
        for _ in range(count):
            samples.append(measure.run(options.context(warmup=False)))
            tick("")
    # Same boundary as in-process: the error travels to the parent and becomes the row's.
    except Exception as exc:
        conn.send(("error", _describe(exc)))
    else:
        conn.send(("done", None))
    finally:
        conn.close()


def _samples_in_child(
    measure: Measure,
    options: Options,
    count: int,
    warmup: bool,
    deadline: float,
    tick: Progress_,
    done_before: int,
    total: int,
) -> tuple[list[Figures], str]:
    spawn = multiprocessing.get_context("spawn")
    receiver, sender = spawn.Pipe(duplex=False)
    process = spawn.Process(
        target=_child, args=(measure, options, count, warmup, sender), daemon=True
    )
    samples: list[Figures] = []
    error = ""
    process.start()
    sender.close()  # the child holds the only writer: EOF here means the child is gone
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                error = f"timed out after {measure.deadline_s(options.quick):.0f} s"
                break
            if not receiver.poll(min(left, 0.2)):
                if not process.is_alive() and not receiver.poll(0):
                    error = f"the measure process died (exit code {process.exitcode})"
                    break
                continue
            try:
                kind, payload = receiver.recv()
            except EOFError:
                process.join(5)
                error = f"the measure process died (exit code {process.exitcode})"
                break
            if kind == "sample":
                samples.append(payload)
                tick(f"{done_before + len(samples)}/{total}")
            elif kind == "error":
                error = payload
                break
            else:
                break
    finally:
        receiver.close()
        process.join(0.1 if error else 5)  # a timed-out or broken child is not waited for
        if process.is_alive():
            process.kill()
            process.join(5)
    return samples, error


def run_measure(measure: Measure, options: Options, tick: Progress_ | None = None) -> Row:
    """Run one measure (warm-up, repeats) and return its row; never raises for the measure's
    own failures (they become the row's error)."""
    started = time.monotonic()
    tick = tick or (lambda _: None)
    try:
        blocked = measure.blocked(options.context(warmup=False))
    # The same per-measure boundary as around the samples: a check that cannot run (a module
    # under development that fails to import, a probe that times out) is this row's error.
    except Exception as exc:
        return summarise(measure, [], error=_describe(exc), elapsed_s=time.monotonic() - started)
    # A skipped row has nothing to measure here; a pending one may still measure its limit.
    if blocked is not None and (blocked.status is Status.SKIPPED or not measure.limit_when_blocked):
        return summarise(measure, [], blocked=blocked)
    count = measure.repetitions(options.quick)
    if not options.isolate:
        samples, error = _samples_in_process(measure, options, count, measure.warmup, tick)
    else:
        deadline = started + measure.deadline_s(options.quick)
        if measure.fresh_process:
            samples, error = [], ""
            for i in range(count):
                got, error = _samples_in_child(
                    measure, options, 1, measure.warmup, deadline, tick, i, count
                )
                samples += got
                if error:
                    break
        else:
            samples, error = _samples_in_child(
                measure, options, count, measure.warmup, deadline, tick, 0, count
            )
    return summarise(
        measure, samples, error=error, blocked=blocked, elapsed_s=time.monotonic() - started
    )


def select(measures: Sequence[Measure], only: Sequence[str]) -> list[Measure]:
    """The measures named in ``only`` (all when empty), in registry order.

    Raises:
        ConfigError: a name that is not a measure.
    """
    names = {m.name for m in measures}
    wanted = {n.strip() for item in only for n in item.split(",") if n.strip()}
    unknown = sorted(wanted - names)
    if unknown:
        raise ConfigError(f"unknown measure(s) {unknown}; choose from {sorted(names)}")
    return [m for m in measures if not wanted or m.name in wanted]


def run_all(
    measures: Sequence[Measure], options: Options, console: Console | None = None
) -> list[Row]:
    """Run ``measures`` one after the other with a progress display on ``console`` (stderr)."""
    console = console or Console(stderr=True)
    rows: list[Row] = []
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} measures"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("bench", total=len(measures))
        for measure in measures:
            progress.update(task, description=f"{measure.name}: warm-up")

            def tick(text: str, name: str = measure.name) -> None:
                progress.update(task, description=f"{name}: sample {text}")

            row = run_measure(measure, options, tick)
            rows.append(row)
            progress.advance(task)
            note = row.error or row.reason
            console.log(
                escape(
                    f"{measure.name}: {row.status.value} ({row.elapsed_s:.1f} s)"
                    + (f" - {note}" if note else "")
                )
            )
    return rows


# ============================================================================ the output


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def report(rows: Sequence[Row], options: Options) -> dict[str, Any]:
    from meshmsg.sim.api import git_commit  # reads .git without the git binary

    return {
        "format": JSON_FORMAT,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": options.quick,
        "isolated": options.isolate,
        "machine": machine(),
        "git_commit": git_commit(),
        "rows": [r.as_json() for r in rows],
    }


def _ratio(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:,.0f}"


def _range(stat: Stat, fmt: Callable[[float], str]) -> str:
    return f"{fmt(stat.min)}–{fmt(stat.max)}"


_STATUS_STYLE: Final = {
    Status.MET: "green",
    Status.MISSED: "red",
    Status.NO_GOAL: "",
    Status.SKIPPED: "yellow",
    Status.PENDING: "yellow",
    Status.ERROR: "bold red",
}


COLUMNS: Final = ("measure", "median", "min–max", "limit (same run)", "ratio", "goal", "status",
                  "notes")  # fmt: skip


def cells(row: Row) -> list[str]:
    """The row's table cells as plain text, in :data:`COLUMNS` order (name and title joined
    by a newline in the first)."""
    m = row.measure
    figure, limit = row.figure, row.limit
    limit_text = m.limit_title or "—"
    if limit is not None:
        limit_text = f"{m.fmt(limit.median)}: {m.limit_title}"
    notes = [f"{label} {fmt(row.figures[k].median)}" for k, label, fmt in m.details
             if k in row.figures]  # fmt: skip
    notes += [text for text in (row.reason, row.error) if text]
    return [
        f"{m.name}\n{m.title}",
        m.fmt(figure.median) if figure else "—",
        _range(figure, m.fmt) if figure else "—",
        limit_text,
        _ratio(row.ratio.median) if row.ratio else "—",
        m.goal_text or "—",
        row.status.value,
        "; ".join(notes),
    ]


def table(rows: Sequence[Row], title: str) -> Table:
    t = Table(title=title, title_justify="left", show_lines=True)
    for name in COLUMNS:
        right = name in ("median", "min–max", "ratio")
        t.add_column(name, justify="right" if right else "left", overflow="fold")
    for row in rows:
        texts = [escape(text) for text in cells(row)]
        name, title_text = texts[0].split("\n", 1)
        texts[0] = f"[bold]{name}[/bold]\n{title_text}"
        style = _STATUS_STYLE[row.status]
        if style:
            texts[6] = f"[{style}]{texts[6]}[/{style}]"
        t.add_row(*texts)
    return t


def markdown(rows: Sequence[Row]) -> str:
    """The table in GitHub Markdown (for docs/performance.md)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for row in rows:
        texts = [t.replace("|", "\\|") for t in cells(row)]
        name, title_text = texts[0].split("\n", 1)
        texts[0] = f"**{name}**: {title_text}"
        lines.append("| " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


# ====================================================================== the measurements
#
# Each function below returns one sample. Figures and limits come from the modules that own
# them (net/measure, bench_storage, bench_sync, bench_e2e, the discovery test harness); the
# limits nobody else measures (the bare simulator loop, memory) are measured here.


def _optional(module: str, attr: str) -> Callable[..., Any] | None:
    """``module.attr`` if that module exists (import errors inside it propagate)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        found = False
    if not found:
        return None
    fn = getattr(importlib.import_module(module), attr, None)
    return fn if callable(fn) else None


def _pending_unless(module: str, attrs: Sequence[str], path: str) -> Blocked | None:
    """PENDING until ``module`` exists and defines every one of ``attrs``."""
    if importlib.util.find_spec(module) is None:
        return Blocked(Status.PENDING, f"{path} has not landed yet")
    missing = [a for a in attrs if _optional(module, a) is None]
    if missing:
        return Blocked(Status.PENDING, f"{path} does not define {', '.join(missing)} yet")
    return None


# ---------------------------------------------------------------------- one link, two processes


def net_blocked(ctx: Context) -> Blocked | None:
    return _pending_unless(
        "meshmsg.bench.measure", ["measure_messages", "measure_links"], "meshmsg/bench/measure.py"
    )


def link_messages(ctx: Context) -> Figures:
    """1 KiB payloads/s over one Noise link through the trio runner, this process to a child
    process on loopback, next to in-process encrypt + frame + decrypt of 32-frame batches;
    both from :func:`meshmsg.bench.measure.measure_messages` (one repeat per sample)."""
    from meshmsg.bench.measure import measure_messages

    result = measure_messages(count=ctx.size(20_000, 4_096, 1_024), repeats=1, layer="link")
    return {"msgs_per_s": result["median_per_s"], "limit_msgs_per_s": result["limit_per_s"]}


def link_setup(ctx: Context) -> Figures:
    """New authenticated links/s (TCP connect, Noise XX, one record, close) to a child process
    from 4 dialers at once (clients arriving together), and from one dialing one link after
    another, next to in-process XX handshakes/s; from
    :func:`meshmsg.bench.measure.measure_links` (one repeat per sample)."""
    from meshmsg.bench.measure import measure_links

    result = measure_links(count=ctx.size(600, 100, 20), repeats=1, parallel=4)
    one = measure_links(count=ctx.size(300, 50, 20), repeats=1)
    return {"links_per_s": result["median_per_s"], "limit_handshakes_per_s": result["limit_per_s"],
            "one_at_a_time_per_s": one["median_per_s"]}  # fmt: skip


# ------------------------------------------------------------------------ durable submits


def durable_submits(ctx: Context) -> Figures:
    from meshmsg.bench.storage import measure_durable_submits

    return measure_durable_submits(ctx.workdir, ctx.size(500, 100, 50))


# ------------------------------------------------------------------------------------ sync

SYNC_ITEMS: Final = 100_000
SYNC_DIFFERENCES: Final = 100
ID_BYTES: Final = 16


def sync_blocked(ctx: Context) -> Blocked | None:
    return _pending_unless("meshmsg.bench.sync", ["measure_sync"], "meshmsg/bench/sync.py")


def sync_overhead(ctx: Context) -> Figures:
    """One reconciliation of two stores of ``n`` ids that differ by 100 (50 on each side, and
    all 100 on one side as a detail), from :func:`meshmsg.bench.sync.measure_sync`; a fresh
    random seed per sample, so min–max shows the spread over store contents."""
    items = ctx.size(SYNC_ITEMS, 10_000, 1_000)
    # The naive protocol sends one side's whole id list: 16 bytes per id. A byte count, not a
    # timing: it does not vary between runs.
    figures = {"naive_bytes": float(items * ID_BYTES)}
    fn = _optional("meshmsg.bench.sync", "measure_sync")
    if fn is None:
        return figures
    result = fn(items, SYNC_DIFFERENCES, int.from_bytes(os.urandom(4), "big"))
    half, one_side = result["half_each_side"], result["all_on_one_side"]
    if not (half["exact"] and one_side["exact"]):
        raise MeshError(f"reconciliation found the wrong difference: {result}")
    figures.update(
        bytes=float(half["bytes_total"]),
        round_trips=float(half["round_trips"]),
        one_side_bytes=float(one_side["bytes_total"]),
        one_side_round_trips=float(one_side["round_trips"]),
        session_s=float(half["wall_s"]),
        naive_bytes=float(result["naive_id_list_bytes"]),
    )
    return figures


# ------------------------------------------------------------------------------- discovery

DISCOVERY_TRIAL_TIMEOUT_S: Final = 60.0
_DISCOVERY_LINE: Final = re.compile(r"median of \d+ trial medians: ([0-9.]+) s")


def discovery_blocked(ctx: Context) -> Blocked | None:
    if not (ctx.root / "tests" / "net" / "discovery_node.py").is_file():
        return Blocked(Status.SKIPPED, "needs a source checkout (tests/net/discovery_node.py)")
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return Blocked(
            Status.SKIPPED, "multicast test hosts need Linux network namespaces and root"
        )
    probe = subprocess.run(
        [sys.executable, "-c", "from tests.net.netns import netns_available as a; "
         "ok, why = a(); print('' if ok else why)"],
        cwd=ctx.root, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    reason = probe.stdout.strip() or probe.stderr.strip()[-200:]
    if probe.returncode != 0 or reason:
        return Blocked(Status.SKIPPED, f"multicast unavailable: {reason}")
    return None


def _median_of_trials(ctx: Context, module: str) -> float:
    proc = subprocess.run(
        [sys.executable, "-m", module, "measure", "--trials", "1"],
        cwd=ctx.root, capture_output=True, text=True, timeout=DISCOVERY_TRIAL_TIMEOUT_S,
        check=False,
    )  # fmt: skip
    found = _DISCOVERY_LINE.search(proc.stdout)
    if proc.returncode != 0 or found is None:
        tail = (proc.stdout + proc.stderr).strip()[-300:]
        raise MeshError(f"{module} measure failed (exit {proc.returncode}): {tail}")
    return float(found.group(1))


def discovery(ctx: Context) -> Figures:
    """One trial each of plain zeroconf and of meshmsg discovery, on three fresh hosts in
    network namespaces (tests/bench/zeroconf_alone.py, tests/net/discovery_node.py)."""
    figures: Figures = {}
    if (ctx.root / "tests" / "bench" / "zeroconf_alone.py").is_file():
        figures["zeroconf_s"] = _median_of_trials(ctx, "tests.bench.zeroconf_alone")
    figures["discovery_s"] = _median_of_trials(ctx, "tests.net.discovery_node")
    return figures


# ------------------------------------------------------------------------------- simulator

SIM_QUICK_NODES: Final = 20


def _quick_scenario(policy: str) -> Any:
    """The ``--quick`` stand-in for the reference trace: 20 random-waypoint walkers for half an
    hour, same link model, buffers, TTL and routing settings (pre-pairing 190 pairs is fast)."""
    from meshmsg.sim.scenario import scenario_from_dict

    table = {
        "run": {"name": "bench-quick", "seed": 1, "duration_s": SIM_WINDOW_S, "mode": "one"},
        "nodes": {"count": SIM_QUICK_NODES, "buffer_bytes": 5_000_000, "ttl_s": 18_000.0,
                  "pre_pair": True},
        "routing": {"policy": policy, "copies": 6, "binary": True,
                    "drop_after_delivery": False},
        "links": {"default_interface": "bt", "interfaces": {"bt": {"rate_bps": 250_000.0}}},
        "contacts": {"source": "rwp"},
        "mobility": {"world_m": [400.0, 300.0], "speed_mps": [0.5, 1.5],
                     "pause_s": [0.0, 120.0], "range_m": 10.0, "interface": "bt",
                     "scan_interval_s": 1.0},
        "traffic": {"source": "generator", "interval_s": [5.0, 15.0],
                    "size_bytes": [1_000, 2_000]},
        "output": {"plots": False, "contact_log": False},
    }  # fmt: skip
    return scenario_from_dict(table, base_dir=Path.cwd())


class NullNode:
    """A node that does nothing: the engine replays the trace with no protocol attached."""

    def link_opened(self, link: int, *, initiator: bool, now: float) -> None:
        return None

    def receive_data(self, link: int, data: bytes, *, now: float) -> None:
        return None

    def link_lost(self, link: int, *, now: float) -> None:
        return None

    def handle_timer(self, *, now: float) -> None:
        return None

    def storage_committed(self, token: int, *, now: float) -> None:
        return None

    def send_message(
        self, peer_id: bytes, body: str, *, now: float, ttl_s: float | None = None
    ) -> bytes:
        return hashlib.blake2b(body.encode(), digest_size=16).digest()

    def next_effect(self) -> None:
        return None

    def next_event(self) -> None:
        return None

    def next_deadline(self) -> None:
        return None


class NullFactory:
    """Builds :class:`NullNode` (implements ``meshmsg.sim.host.NodeFactory``)."""

    def prepare(self, setups: Sequence[Any], *, seed: int, pre_pair: bool) -> None:
        return None

    def identity(self, address: int) -> bytes:
        return address.to_bytes(16, "big")

    def build(self, setup: Any, *, rng: Any, now: float, records: Mapping[Any, bytes]) -> NullNode:
        return NullNode()


def sim_blocked(ctx: Context) -> Blocked | None:
    if not ctx.quick:
        if not REFERENCE_SCENARIO.is_file():
            return Blocked(Status.SKIPPED, f"needs a source checkout ({REFERENCE_SCENARIO.name})")
        if not (ctx.sim_reference / "small_contacts.txt.gz").is_file():
            return Blocked(Status.SKIPPED, f"reference trace not found in {ctx.sim_reference}")
    if importlib.util.find_spec("meshmsg.sim.corehost") is None:
        return Blocked(
            Status.PENDING,
            "the real Node is not wired into the simulator yet (meshmsg/sim/corehost.py); "
            "the limit is measured",
        )
    return None


def _sim_run(ctx: Context, policy: str, agent: Any) -> tuple[float, float]:
    """Simulated s per wall s of the engine (``run_scenario``'s own timing, which leaves out
    building the nodes), and the seconds spent outside the engine (node setup, output)."""
    from meshmsg.sim.api import run_scenario

    with tempfile.TemporaryDirectory(prefix="meshmsg-bench-sim-") as out:
        started = time.perf_counter()
        if ctx.quick:
            result = run_scenario(_quick_scenario(policy), Path(out), agent=agent)
        else:
            trace = ctx.sim_reference
            overrides = [
                f'routing.policy="{policy}"',
                "output.plots=false",
                "output.contact_log=false",
                f"run.duration_s={ctx.sim_duration_s}",
                f'contacts.trace="{trace / "small_contacts.txt.gz"}"',
                f'traffic.trace="{trace / "small_messages.txt"}"',
            ]
            result = run_scenario(REFERENCE_SCENARIO, Path(out), overrides=overrides, agent=agent)
        elapsed = time.perf_counter() - started
    return result.sim_s_per_wall_s, elapsed - result.wall_s


def _sim(ctx: Context, policy: str) -> Figures:
    bare, _ = _sim_run(ctx, policy, NullFactory())
    figures = {
        "bare_sim_s_per_wall_s": bare,
        "sim_window_s": SIM_WINDOW_S if ctx.quick else ctx.sim_duration_s,
        "nodes": float(SIM_QUICK_NODES if ctx.quick else 126),
    }
    if sim_blocked(ctx) is None:
        figures["sim_s_per_wall_s"], figures["setup_s"] = _sim_run(ctx, policy, "core")
    return figures


def sim_spray_and_wait(ctx: Context) -> Figures:
    return _sim(ctx, "spray-and-wait")


def sim_epidemic(ctx: Context) -> Figures:
    return _sim(ctx, "epidemic")


# ---------------------------------------------------------------------------------- memory


def _rss_bytes() -> int:
    """Resident set size now (Linux ``/proc/self/statm``; elsewhere the peak, a weaker proxy)."""
    statm = Path("/proc/self/statm")
    if statm.is_file():
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextlib.contextmanager
def _traced() -> Iterator[list[int]]:
    """Python heap growth inside the block (tracemalloc), as ``[bytes]`` once it ends."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    grown: list[int] = []
    try:
        yield grown
        gc.collect()
        grown.append(tracemalloc.get_traced_memory()[0] - before)
    finally:
        tracemalloc.stop()


def _link_pairs(count: int) -> list[tuple[Any, Any]]:
    """``count`` established, idle :class:`~meshmsg.core.link.Link` pairs built like a node
    builds them (identity proof in the handshake, the session record registry)."""
    from meshmsg.config import NodeConfig
    from meshmsg.core.identity import Identity
    from meshmsg.core.link import Link, LinkState, PeerHandshake, PeerVerdict
    from meshmsg.core.records import SESSION_RECORDS, Hello, IdentityProof
    from meshmsg.core.wire import Record
    from meshmsg.sysrng import SystemRng

    config, rng = NodeConfig(), SystemRng()

    def accept(peer: PeerHandshake) -> PeerVerdict:
        return PeerVerdict.CONTACT

    def side(initiator: bool) -> Link:
        identity = Identity.generate(rng)
        records: list[Record] = [
            Hello(version=1, capabilities=(1,), agent="meshmsg"),
            IdentityProof(public=identity.public.to_bytes()),
        ]
        return Link(
            initiator=initiator, static_private=identity.noise_private, config=config,
            rng=rng, now=0.0, handshake_records=records, decide=accept,
            registry=SESSION_RECORDS,
        )  # fmt: skip

    pairs = []
    for _ in range(count):
        a, b = side(True), side(False)
        for _ in range(3):  # three handshake messages
            for src, dst in ((a, b), (b, a)):
                data = src.data_to_send(0.0)
                if data:
                    dst.receive_data(data, 0.0)
        if a.state is not LinkState.ESTABLISHED or b.state is not LinkState.ESTABLISHED:
            raise MeshError("a benchmark link pair did not establish")
        pairs.append((a, b))
    return pairs


def idle_link_memory(ctx: Context) -> Figures:
    """Bytes per idle established link (one side), from the Python heap and from RSS."""
    count = ctx.size(600, 200, 20)
    _link_pairs(2)  # imports and first-use caches are not per-link costs
    # RSS first, in this fresh process: memory freed later stays in the allocator's pools.
    gc.collect()
    rss_before = _rss_bytes()
    pairs = _link_pairs(count)
    gc.collect()
    rss = (_rss_bytes() - rss_before) / (2 * count)
    del pairs
    with _traced() as grown:
        pairs = _link_pairs(count)
    del pairs
    return {"traced_bytes_per_link": grown[0] / (2 * count), "rss_bytes_per_link": rss}


STORE_ITEMS: Final = 100_000
ENVELOPE_BYTES: Final = 1024  # the 1 KiB padding bucket: a short text with its headers


def relay_store_memory(ctx: Context) -> Figures:
    """Python heap of a relay store and its sync index holding 100,000 envelopes, as a node
    holds them (``RelayStore`` + ``ItemSet``); the quick run measures 10,000 and scales."""
    from meshmsg.config import StoreConfig
    from meshmsg.core.itemset import ItemSet
    from meshmsg.core.store import RelayStore, StoreItem, Tier

    count = ctx.size(STORE_ITEMS, 10_000, 1_000)
    now = 1_800_000_000.0
    neighbours = [os.urandom(16) for _ in range(50)]
    tiers = (Tier.VERIFIED, Tier.CONTACT, Tier.OWN)
    config = StoreConfig(max_store_bytes=4 * count * ENVELOPE_BYTES, max_store_envelopes=2 * count)
    with _traced() as grown:
        store, index = RelayStore(config), ItemSet()
        for k in range(count):
            envelope = os.urandom(ENVELOPE_BYTES)
            envelope_id = hashlib.blake2b(envelope, digest_size=16).digest()
            tier = tiers[k % 3]
            item = StoreItem(
                envelope_id=envelope_id, envelope=envelope, tag=os.urandom(16),
                expiry_at=now + 86_400.0 + k, copies=6, hops=k % 4, tier=tier,
                source=None if tier is Tier.OWN else neighbours[k % len(neighbours)],
                received_at=now,
            )  # fmt: skip
            if store.admit(item, now).evicted or envelope_id not in store:
                raise MeshError("the benchmark store refused or evicted an item")
            index.add(envelope_id, int(item.expiry_at))
    scale = STORE_ITEMS / count
    payload = count * ENVELOPE_BYTES
    return {
        "store_bytes_100k": grown[0] * scale,
        "envelope_bytes_100k": payload * scale,
        "overhead_bytes_per_item": (grown[0] - payload) / count,
    }


# --------------------------------------------------------------------------- e2e envelopes


E2E_INNER_BYTES: Final = 900  # a short text with its headers: the 1 KiB envelope bucket


def e2e_blocked(ctx: Context) -> Blocked | None:
    return _pending_unless("meshmsg.bench.e2e", ["measure_seal_open"], "meshmsg/bench/e2e.py")


def e2e_envelopes(ctx: Context) -> Figures:
    fn = _optional("meshmsg.bench.e2e", "measure_seal_open")
    if fn is None:
        return {}
    # One repeat per call: this runner repeats, and wants every call to be one sample.
    result = fn(ctx.size(2_000, 500, 100), E2E_INNER_BYTES, repeats=1)
    return {k: float(v) for k, v in dict(result).items()}


# ================================================================================== table


def _per_s(value: float) -> str:
    return f"{value:,.0f}/s"


def _bytes(value: float) -> str:
    if value >= MIB:
        return f"{value / MIB:,.1f} MiB"
    if value >= KIB:
        return f"{value / KIB:,.1f} KiB"
    return f"{value:,.0f} B"


def _seconds(value: float) -> str:
    return f"{value:.3f} s"


def _whole_seconds(value: float) -> str:
    return f"{value:,.0f} s"


def _speedup(value: float) -> str:
    return f"{value:,.0f}×"


# fmt: off
MEASURES: Final[tuple[Measure, ...]] = (
    Measure(
        name="link-messages",
        title="1 KiB messages/s over one Noise link, two processes on loopback",
        figure="msgs_per_s", unit="messages/s", fmt=_per_s,
        run=link_messages, limit="limit_msgs_per_s",
        limit_title="in-process Noise encrypt+frame+decrypt, 32 frames batched",
        goal=(Condition("ratio", ">=", 0.5),), goal_text="ratio ≥ 0.5",
        repeats=5, quick_repeats=1, blocked=net_blocked,
    ),
    Measure(
        name="link-setup",
        title="new authenticated links/s between two processes, 4 dialers at once",
        figure="links_per_s", unit="links/s", fmt=_per_s,
        run=link_setup, limit="limit_handshakes_per_s",
        limit_title="in-process Noise XX handshakes/s",
        goal=(Condition("ratio", ">=", 0.5),), goal_text="ratio ≥ 0.5",
        details=(("one_at_a_time_per_s", "one dialer, one link at a time:", _per_s),),
        repeats=3, quick_repeats=1, blocked=net_blocked,
    ),
    Measure(
        name="durable-submits",
        title="durable submits/s, one commit each (accepted and committed, synchronous=FULL)",
        figure="durable_submits_per_s", unit="submits/s", fmt=_per_s,
        run=durable_submits, limit="plain_wal_commits_per_s",
        limit_title="SQLite WAL insert+commit loop, same disk",
        goal=(Condition("durable_submits_per_s", ">=", 20_000),), goal_text="≥ 20,000/s",
        details=(("batched_records_per_s", "group commit of 64:", _per_s),
                 ("nondurable_submits_per_s", "synchronous=NORMAL (no fsync):", _per_s)),
        repeats=3, quick_repeats=1,
    ),
    *daemon_measures(),
    Measure(
        name="sync",
        title="sync overhead, 100k vs 100k stores differing by 100 (bytes both ways)",
        figure="bytes", unit="bytes", fmt=_bytes,
        run=sync_overhead, limit="naive_bytes", limit_title="naive id list (16 B per id)",
        goal=(Condition("bytes", "<=", 16 * KIB), Condition("round_trips", "<=", 4)),
        goal_text="≤ 16 KiB, ≤ 4 round trips",
        details=(("round_trips", "round trips:", _plain),
                 ("one_side_bytes", "all 100 on one side:", _bytes),
                 ("one_side_round_trips", "round trips:", _plain)),
        repeats=3, quick_repeats=1,
        blocked=sync_blocked, limit_when_blocked=True,
    ),
    Measure(
        name="discovery",
        title="mDNS discovery to a TCP connection, 3 hosts in network namespaces",
        figure="discovery_s", unit="s", fmt=_seconds,
        run=discovery, limit="zeroconf_s",
        limit_title="python-zeroconf alone (browse, register, resolve), same hosts",
        goal=(Condition("discovery_s", "<=", 1.5),), goal_text="≤ 1.5 s median",
        repeats=3, quick_repeats=1, warmup=False, timeout_s=240.0, quick_timeout_s=90.0,
        blocked=discovery_blocked,
    ),
    Measure(
        name="sim-snw",
        title="simulator, reference trace, Spray-and-Wait: simulated s per wall s",
        figure="sim_s_per_wall_s", unit="sim s/wall s", fmt=_speedup,
        run=sim_spray_and_wait, limit="bare_sim_s_per_wall_s",
        limit_title="engine replaying the same trace, no protocol attached",
        goal=(Condition("sim_s_per_wall_s", ">=", 2_000),), goal_text="≥ 2,000",
        details=(("sim_window_s", "simulated:", _whole_seconds), ("nodes", "nodes:", _plain),
                 ("setup_s", "node setup (pre-pairing):", _seconds)),
        repeats=1, quick_repeats=1, warmup=False, timeout_s=300.0,
        blocked=sim_blocked, limit_when_blocked=True,
    ),
    Measure(
        name="sim-epidemic",
        title="simulator, reference trace, Epidemic: simulated s per wall s",
        figure="sim_s_per_wall_s", unit="sim s/wall s", fmt=_speedup,
        run=sim_epidemic, limit="bare_sim_s_per_wall_s",
        limit_title="engine replaying the same trace, no protocol attached",
        details=(("sim_window_s", "simulated:", _whole_seconds), ("nodes", "nodes:", _plain),
                 ("setup_s", "node setup (pre-pairing):", _seconds)),
        repeats=1, quick_repeats=1, warmup=False, timeout_s=300.0,
        blocked=sim_blocked, limit_when_blocked=True,
    ),
    Measure(
        name="mem-link",
        title="memory per idle established link (one side; Python heap, RSS cross-check)",
        figure="traced_bytes_per_link", unit="bytes", fmt=_bytes,
        run=idle_link_memory,
        goal=(Condition("traced_bytes_per_link", "<=", 64 * KIB),
              Condition("rss_bytes_per_link", "<=", 64 * KIB)),
        goal_text="≤ 64 KiB", details=(("rss_bytes_per_link", "RSS:", _bytes),),
        repeats=2, quick_repeats=1, warmup=False, fresh_process=True,
    ),
    Measure(
        name="mem-store",
        title="memory of 100,000 1 KiB envelopes in a relay store + sync index",
        figure="store_bytes_100k", unit="bytes", fmt=_bytes,
        run=relay_store_memory,
        goal=(Condition("store_bytes_100k", "<=", 100 * MIB),), goal_text="≤ 100 MiB",
        details=(("envelope_bytes_100k", "of which envelopes:", _bytes),
                 ("overhead_bytes_per_item", "overhead per item:", _bytes)),
        repeats=1, quick_repeats=1, warmup=False, fresh_process=True,
    ),
    Measure(
        name="e2e-envelopes",
        title="end-to-end messages sealed+opened/s (900 B inner, 1 KiB envelope)",
        figure="seal_open_per_s", unit="messages/s", fmt=_per_s,
        run=e2e_envelopes, limit="raw_aead_per_s",
        limit_title="raw XChaCha20-Poly1305 encrypt+decrypt, 900 B",
        details=(("raw_aead_padded_per_s", "raw AEAD at the padded size:", _per_s),),
        blocked=e2e_blocked,
    ),
)
# fmt: on


# ==================================================================================== CLI


def _write_json(path: str, data: Mapping[str, Any]) -> None:
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    if path == "-":
        sys.stdout.write(text)
        return
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)


def _finite(rows: Sequence[Row]) -> None:
    """JSON has no NaN or infinity: a figure that is not finite is the measure's error."""
    for row in rows:
        bad = [k for k, s in row.figures.items()
               if not all(math.isfinite(v) for v in (s.median, s.min, s.max))]  # fmt: skip
        if row.ratio is not None and not math.isfinite(row.ratio.median):
            bad.append("ratio")
        if bad:
            row.status = Status.ERROR
            row.error = f"non-finite figures {bad}"
            row.figures = {k: v for k, v in row.figures.items() if k not in bad}
            row.ratio = None if "ratio" in bad else row.ratio
            row.goal_met = None


@click.command("bench")
@click.option("--quick", is_flag=True, help="Fewer repeats and smaller sizes (CI smoke run).")
@click.option("--json", "json_path", metavar="FILE", help="Also write the results as JSON.")
@click.option("--markdown", "markdown_path", metavar="FILE",
              help="Also write the table as Markdown.")  # fmt: skip
@click.option("--only", multiple=True, metavar="NAME",
              help="Run only these measures (repeatable, or comma-separated).")  # fmt: skip
@click.option("--list", "list_only", is_flag=True, help="List the measures and exit.")
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True,
              help="A directory on the disk to measure (durable submits).")  # fmt: skip
@click.option("--sim-reference", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_SIM_REFERENCE, show_default=True,
              help="Directory of the simulator's reference trace.")  # fmt: skip
@click.option("--sim-duration", type=click.FloatRange(min=1.0), default=SIM_WINDOW_S,
              show_default=True, metavar="SECONDS",
              help="Simulated seconds of the reference trace (43200: all).")  # fmt: skip
@click.option("--no-isolate", is_flag=True,
              help="Run every measure in this process (for profilers; no timeouts).")  # fmt: skip
def bench_command(
    quick: bool,
    json_path: str | None,
    markdown_path: str | None,
    only: tuple[str, ...],
    list_only: bool,
    workdir: Path,
    sim_reference: Path,
    sim_duration: float,
    no_isolate: bool,
) -> None:
    """Measure meshmsg's performance, each figure next to its limit measured in the same run.

    Exit status: 0, or 1 when a measure failed with an error (a missed goal is not an error).
    """
    console = Console()
    try:
        measures = select(MEASURES, only)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    if list_only:
        for m in measures:
            console.print(f"[bold]{m.name}[/bold]  {m.title}", highlight=False)
        return
    if not workdir.is_dir():
        raise click.UsageError(f"--dir {workdir} is not a directory")
    options = Options(
        quick=quick,
        isolate=not no_isolate,
        workdir=workdir.resolve(),
        sim_reference=sim_reference.resolve(),
        sim_duration_s=sim_duration,
    )
    rows = run_all(measures, options)
    _finite(rows)
    data = report(rows, options)
    info = data["machine"]
    title = (
        f"meshmsg bench{' --quick' if quick else ''} · {data['date']} · {info['nproc']} CPU "
        f"{info['cpu']} · Python {info['python']}"
    )
    console.print(table(rows, title))
    if json_path:
        _write_json(json_path, data)
    if markdown_path:
        Path(markdown_path).write_text(f"{title}\n\n{markdown(rows)}", encoding="utf-8")
    if any(r.status is Status.ERROR for r in rows):
        sys.exit(1)


__all__ = [
    "MEASURES",
    "Blocked",
    "Condition",
    "Context",
    "Figures",
    "Measure",
    "Options",
    "Row",
    "Stat",
    "Status",
    "bench_command",
    "cells",
    "markdown",
    "report",
    "run_all",
    "run_measure",
    "select",
    "summarise",
    "table",
]


if __name__ == "__main__":
    bench_command()
