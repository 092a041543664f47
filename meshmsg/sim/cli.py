"""``meshmsg sim``: run a scenario or sweep it (also ``python -m meshmsg.sim``)."""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from meshmsg.errors import ConfigError, LocalProtocolError
from meshmsg.sim.api import run_scenario
from meshmsg.sim.failures import failed_runs
from meshmsg.sim.report import STATS_FIELDS
from meshmsg.sim.sweep import sweep as run_sweep

console = Console()
progress_console = Console(stderr=True)  # the bar never mixes with results on stdout
PROGRESS_AFTER_S = 3.0  # short runs finish before a bar would help


class RunProgress:
    """A progress bar of simulated time with an ETA, on stderr, only on a terminal and only
    once a run has taken ``PROGRESS_AFTER_S`` of wall time; a context manager that removes it."""

    def __init__(self, target: Console, delay_s: float = PROGRESS_AFTER_S) -> None:
        self._console = target
        self._delay_s = delay_s
        self._start = time.monotonic()
        self._bar: Progress | None = None
        self._task = TaskID(0)

    def __call__(self, now: float, duration: float) -> None:
        if self._bar is None:
            if not self._console.is_terminal or time.monotonic() - self._start < self._delay_s:
                return
            self._bar = Progress(
                TextColumn("simulated"), BarColumn(), TextColumn("{task.fields[sim]}"),
                TextColumn("ETA"), TimeRemainingColumn(), console=self._console, transient=True,
            )  # fmt: skip
            self._task = self._bar.add_task("run", total=duration, sim="")
            self._bar.start()
        self._bar.update(self._task, completed=now, sim=f"{now:,.0f} of {duration:,.0f} s")

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()


@click.group("sim")
def sim() -> None:
    """Discrete-event simulator running the real protocol core in virtual time."""


@sim.command("run")
@click.argument("scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: results/<scenario name>).")  # fmt: skip
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Override a setting, e.g. routing.policy=epidemic (repeatable).")  # fmt: skip
@click.option("--agent", default=None,
              help="'core' or module:Factory, e.g. meshmsg.sim.agents:DirectFactory.")  # fmt: skip
@click.option("--strict", is_flag=True,
              help="Exit non-zero if messages were not created, invariants were violated or "
                   "nodes never linked.")  # fmt: skip
@click.option("--relay-privacy", is_flag=True,
              help="Also score a curious relay's guesses of sender and recipient "
                   "(relay_privacy.txt; output.relay_privacy=true).")  # fmt: skip
def run_cmd(
    scenario: Path, out: Path | None, params: tuple[str, ...], agent: str | None, strict: bool,
    relay_privacy: bool,
) -> None:  # fmt: skip
    """Run SCENARIO (a TOML file) and write its report folder."""
    if relay_privacy:
        params = (*params, "output.relay_privacy=true")
    try:
        folder = out or Path("results") / scenario.stem
        with RunProgress(progress_console) as progress:
            result = run_scenario(scenario, folder, overrides=params, agent=agent,
                                  progress=progress)  # fmt: skip
    except (ConfigError, LocalProtocolError) as exc:
        raise click.ClickException(str(exc)) from exc
    table = Table(title=f"MessageStats: {scenario.stem}", show_header=False)
    stats = result.stats.as_dict()
    for name in STATS_FIELDS:
        table.add_row(name, f"{stats[name]:.4f}" if isinstance(stats[name], float) else
                      str(stats[name]))  # fmt: skip
    console.print(table)
    console.print(
        f"wall {result.wall_s:.1f} s, {result.sim_s_per_wall_s:,.0f} simulated s per wall s, "
        f"peak {result.peak_rss_mb:.0f} MB, event-log hash {result.event_log_hash[:16]}"
    )
    privacy = folder / "relay_privacy.txt"
    if relay_privacy and privacy.exists():
        console.print(privacy.read_text(encoding="utf-8"), markup=False, highlight=False)
    console.print(f"results in {folder}")
    for failure in result.failures:  # soft_wrap: one line per failure, whatever the width
        console.print(failure.text(), style="bold red", markup=False, highlight=False,
                      soft_wrap=True)  # fmt: skip
    if strict and result.failures:
        lines = "\n".join(f.text() for f in result.failures)
        raise click.ClickException(f"--strict: the run has failures (run.json: failures)\n{lines}")


@sim.command("sweep")
@click.argument("scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Sweep folder (default: results/<scenario name>-sweep).")  # fmt: skip
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=V1;V2;...",
    help="A swept setting with its values (repeatable: the grid is the product).",
)
@click.option("--set", "fixed", multiple=True, metavar="KEY=VALUE",
              help="A fixed override for every run.")  # fmt: skip
@click.option("--seeds", default=1, show_default=True, help="Runs per grid point.")
@click.option(
    "--workers", default=0, help="Processes (default: all cores); with --dask local, its workers."
)
@click.option(
    "--dask",
    default=None,
    metavar="ADDRESS",
    help="Run on a Dask scheduler (tcp://host:8786), or 'local' for a LocalCluster.",
)
@click.option("--strict", is_flag=True, help="Exit non-zero if any run has failures.")
@click.option("--agent", default=None,
              help="'core' or module:Factory, e.g. meshmsg.sim.agents:DirectFactory.")  # fmt: skip
def sweep_cmd(
    scenario: Path,
    out: Path | None,
    params: tuple[str, ...],
    fixed: tuple[str, ...],
    seeds: int,
    workers: int,
    agent: str | None,
    dask: str | None,
    strict: bool,
) -> None:
    """Run SCENARIO over a parameter grid and seeds; resumable; writes summary.csv."""
    folder = out or Path("results") / f"{scenario.stem}-sweep"
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("runs", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            summary = run_sweep(scenario, folder, params, seeds=seeds, workers=workers or None,
                                base_overrides=fixed, agent=agent, progress=advance,
                                dask=dask)  # fmt: skip
    except (ConfigError, LocalProtocolError) as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(f"summary: {summary}")
    runs, failed = failed_runs(summary.parent / "runs.csv")
    if failed:
        where, texts = failed[0]
        text = f"{len(failed):,} of {runs:,} runs have failures (run.json: failures); {where}: "
        console.print(text + texts[0], style="bold red", markup=False, highlight=False,
                      soft_wrap=True)  # fmt: skip
        if strict:
            raise click.ClickException(f"--strict: {text}{texts[0]}")
