"""Parameter sweeps: a grid of settings times a number of seeds, on all cores, resumable.

Each run gets its own folder ``OUT/<point>/seed-<n>/``; a folder holding ``run.json`` is finished
and is skipped when the sweep is started again, so an interrupted sweep resumes where it was.
Runs go to a ``ProcessPoolExecutor`` with the *spawn* start method (no state leaks from the
parent; the same on every platform). ``runs.csv`` lists every run and ``summary.csv`` gives, per
grid point, the mean and the half-width of a 95 % Student-t confidence interval of each metric.

Values of one parameter are separated by ``;`` (the ONE's ``[a; b; c]`` syntax is accepted).
"""

from __future__ import annotations

import csv
import itertools
import math
import multiprocessing
import os
import re
import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path

from meshmsg.errors import ConfigError
from meshmsg.sim.api import resolve
from meshmsg.sim.sweeptask import RunTask, run_task

METRICS = (
    "delivery_prob", "overhead_ratio", "latency_avg", "latency_med", "hopcount_avg",
    "buffertime_avg", "created", "delivered", "started", "relayed", "aborted", "dropped",
    "removed",
)  # fmt: skip
# Two-sided 95 % Student-t quantiles for 1..30 degrees of freedom.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def parse_param(item: str) -> tuple[str, list[str]]:
    """``"routing.copies=2;4;6"`` or ``"routing.copies=[2; 4; 6]"`` -> key and raw values.

    Raises:
        ConfigError: not ``key=values``.
    """
    key, sep, raw = item.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key or not raw:
        raise ConfigError(f"--param {item!r} is not key=value[;value...]")
    if raw.startswith("[") and raw.endswith("]") and ";" in raw:
        raw = raw[1:-1]
    return key, [v.strip() for v in raw.split(";") if v.strip()] if ";" in raw else [raw]


def t95(df: int) -> float:
    """Two-sided 95 % Student-t quantile (table to 30 degrees of freedom, then Cornish-Fisher)."""
    if df <= 0:
        return math.nan
    if df <= len(_T95):
        return _T95[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df)


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95 % confidence half-width (NaN half-width for a single value)."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    mean = math.fsum(finite) / len(finite)
    if len(finite) < 2:
        return mean, math.nan
    return mean, t95(len(finite) - 1) * statistics.stdev(finite) / math.sqrt(len(finite))


def plan(
    scenario: Path,
    out_dir: Path,
    params: Sequence[str],
    *,
    seeds: int,
    base_overrides: Sequence[str] = (),
    agent: str | None = None,
) -> list[RunTask]:
    """All runs of the grid, seeds innermost. Checks every point's scenario before any runs.

    Raises:
        ConfigError: bad parameter syntax or a point whose scenario is invalid.
    """
    if seeds < 1:
        raise ConfigError("--seeds must be at least 1")
    parsed = [parse_param(p) for p in params]
    base_seed = resolve(scenario, base_overrides).run.seed
    tasks: list[RunTask] = []
    for combo in itertools.product(*[[(k, v) for v in vs] for k, vs in parsed]):
        overrides = (*base_overrides, *(f"{k}={v}" for k, v in combo))
        resolve(scenario, overrides)  # fail fast, before hours of runs
        point = _point_name(combo)
        for i in range(seeds):
            seed = base_seed + i
            tasks.append(
                RunTask(
                    scenario=str(scenario),
                    overrides=(*overrides, f"run.seed={seed}"),
                    out_dir=str(out_dir / point / f"seed-{seed}"),
                    agent=agent,
                    point=point,
                    seed=seed,
                )
            )
    return tasks


def _point_name(combo: Sequence[tuple[str, str]]) -> str:
    if not combo:
        return "base"
    text = "__".join(f"{k}-{v}" for k, v in combo)
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text)


def sweep(
    scenario: Path,
    out_dir: Path,
    params: Sequence[str],
    *,
    seeds: int = 1,
    workers: int | None = None,
    base_overrides: Sequence[str] = (),
    agent: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    dask: str | None = None,
) -> Path:
    """Run the grid and write ``runs.csv`` and ``summary.csv``; return the summary's path.

    Args:
        workers: processes (default: all cores); 1 runs in this process. With ``dask="local"``:
            the LocalCluster's workers.
        progress: called with (finished, total) after each run.
        dask: run on the Dask scheduler at this address, or ``"local"`` for a LocalCluster
            (:mod:`meshmsg.sim.dasksweep`); the folders and CSVs are the same.

    Raises:
        ConfigError: bad parameters or scenario.
    """
    tasks = plan(scenario, out_dir, params, seeds=seeds, base_overrides=base_overrides,
                 agent=agent)  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = [parse_param(p)[0] for p in params]
    if dask is not None:
        from meshmsg.sim.dasksweep import run_on_dask  # distributed loads only for Dask sweeps

        run_on_dask(tasks, dask, workers=workers, progress=progress)
        return _write_csvs(out_dir, tasks, [run_task(t) for t in tasks], keys)
    results: dict[int, dict[str, float]] = {}
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        for i, task in enumerate(tasks):
            results[i] = run_task(task)
            if progress:
                progress(len(results), len(tasks))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures: dict[Future[dict[str, float]], int] = {
                pool.submit(run_task, t): i for i, t in enumerate(tasks)
            }
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if progress:
                    progress(len(results), len(tasks))
    return _write_csvs(out_dir, tasks, [results[i] for i in range(len(tasks))], keys)


def _write_csvs(
    out_dir: Path, tasks: list[RunTask], stats: list[dict[str, float]], keys: list[str]
) -> Path:
    def values_of(task: RunTask) -> list[str]:
        given = dict(o.split("=", 1) for o in task.overrides)
        return [given[k] for k in keys]

    with (out_dir / "runs.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*keys, "seed", *METRICS, "folder"])
        for task, st in zip(tasks, stats, strict=True):
            writer.writerow([*values_of(task), task.seed, *(st[m] for m in METRICS), task.out_dir])
    points: dict[str, list[int]] = {}
    for i, task in enumerate(tasks):
        points.setdefault(task.point, []).append(i)
    summary = out_dir / "summary.csv"
    with summary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        header = [*keys, "runs"]
        for m in METRICS:
            header += [f"{m}_mean", f"{m}_ci95"]
        writer.writerow(header)
        for indices in points.values():
            row: list[object] = [*values_of(tasks[indices[0]]), len(indices)]
            for m in METRICS:
                mean, half = mean_ci([float(stats[i][m]) for i in indices])
                row += [_num(mean), _num(half)]
            writer.writerow(row)
    return summary


def _num(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6g}"
