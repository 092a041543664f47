"""``meshmsg sim``: run a scenario or sweep it (also ``python -m meshmsg.sim``)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from meshmsg.errors import ConfigError, LocalProtocolError
from meshmsg.sim.api import run_scenario
from meshmsg.sim.report import STATS_FIELDS
from meshmsg.sim.sweep import sweep as run_sweep

console = Console()


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
def run_cmd(scenario: Path, out: Path | None, params: tuple[str, ...], agent: str | None) -> None:
    """Run SCENARIO (a TOML file) and write its report folder."""
    try:
        folder = out or Path("results") / scenario.stem
        result = run_scenario(scenario, folder, overrides=params, agent=agent)
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
    console.print(f"results in {folder}")


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
@click.option("--workers", default=0, help="Processes (default: all cores).")
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
                                base_overrides=fixed, agent=agent, progress=advance)  # fmt: skip
    except (ConfigError, LocalProtocolError) as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(f"summary: {summary}")
