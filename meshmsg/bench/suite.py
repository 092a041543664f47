"""``meshmsg bench``: the command. The runner is ``bench/runner.py``, the rows ``bench/rows.py``."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from meshmsg.bench.rows import MEASURES
from meshmsg.bench.runner import (
    DEFAULT_SIM_REFERENCE,
    SIM_WINDOW_S,
    Options,
    Row,
    Status,
    markdown,
    report,
    run_all,
    select,
    table,
)
from meshmsg.errors import ConfigError

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


__all__ = ["bench_command"]


if __name__ == "__main__":
    bench_command()
