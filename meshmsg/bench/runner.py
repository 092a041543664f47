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
import multiprocessing
import multiprocessing.connection
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from meshmsg.bench.units import plain
from meshmsg.errors import ConfigError

Figures = dict[str, float]
"""One sample: named figures of one repetition (rates per second, bytes, seconds, ...)."""

PROJECT_ROOT: Final = Path(__file__).resolve().parents[2]
DEFAULT_SIM_REFERENCE: Final = PROJECT_ROOT / "simulations" / "reference" / "data"
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
    """One clause of a goal: ``figures[key] <op> threshold`` on the median. An ``optional``
    clause whose figure a run did not return (say, a reference not installed) leaves the row
    without a goal for that run instead of failing it."""

    key: str
    op: Literal["<=", ">="]
    threshold: float
    optional: bool = False

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Measure:
    """One row of the table. Every callable is a module-level function (it is pickled)."""

    name: str  # for --only and the JSON
    title: str
    figure: str  # key of the headline figure in a sample
    run: Callable[[Context], Figures]
    unit: str = ""
    fmt: Callable[[float], str] = plain
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
        goal = [c for c in measure.goal if c.key in values or not c.optional]
        missing = [c.key for c in goal if c.key not in values]
        if not goal:
            names = ", ".join(c.key for c in measure.goal)
            row.reason = f"goal not judged: {names} not measured"
        elif missing:
            row.status = Status.ERROR
            row.error = f"the goal needs figures the measure did not return: {missing}"
        else:
            row.goal_met = all(c.holds(values[c.key]) for c in goal)
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
