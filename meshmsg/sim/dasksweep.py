"""Sweeps on a Dask distributed cluster: the same grid, folders and summary as a local sweep.

``meshmsg sim sweep ... --dask ADDRESS`` connects to a running scheduler
(``tcp://host:8786``); ``--dask local`` starts a ``LocalCluster`` on this machine. Only the
runs whose folder has no ``run.json`` are submitted, so a sweep resumes exactly as a local one.

Each run executes on a worker in a temporary folder; the worker sends the folder's files back
and this process writes them under ``OUT/<point>/seed-<n>/`` (``run.json`` last, atomically). So
the sweep folder needs to exist only where the sweep was started; the workers need the same
meshmsg and the scenario and its traces at the same absolute paths (docs/simulator.md).

``distributed`` is imported only inside :func:`run_on_dask`: ``meshmsg sim run`` and local
sweeps never load it, and it is an optional extra (``pip install 'meshmsg[dask]'``).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, cast

from meshmsg.errors import ConfigError
from meshmsg.sim.api import run_scenario
from meshmsg.sim.sweeptask import RUN_JSON, RunTask

if TYPE_CHECKING:
    from distributed import Client

LOCAL = "local"
CONNECT_TIMEOUT_S = 30.0


def run_remote(task: RunTask) -> dict[str, bytes]:
    """Worker side: run ``task`` in a temporary folder and return its files by relative path."""
    with tempfile.TemporaryDirectory(prefix="meshmsg-sim-") as tmp:
        folder = Path(tmp) / "run"
        run_scenario(Path(task.scenario), folder, overrides=task.overrides, agent=task.agent)
        return {
            str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        }


def store_run(out_dir: Path, files: Mapping[str, bytes]) -> None:
    """Write a run's files into ``out_dir``, ``run.json`` last so the folder reads as finished
    only when everything else is on disk (what resuming relies on)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if name != RUN_JSON:
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (out_dir / name).write_bytes(data)
    tmp = out_dir / (RUN_JSON + ".tmp")
    tmp.write_bytes(files[RUN_JSON])
    tmp.replace(out_dir / RUN_JSON)


def run_on_dask(
    tasks: Sequence[RunTask],
    address: str,
    *,
    workers: int | None = None,
    local_processes: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Run every unfinished task on the cluster at ``address`` (or a ``LocalCluster`` for
    ``"local"`` with ``workers`` single-threaded workers) and store the folders.

    Raises:
        ConfigError: Dask is not installed, or the scheduler cannot be reached.
    """
    todo = [_absolute(t) for t in tasks if not (Path(t.out_dir) / RUN_JSON).is_file()]
    done = len(tasks) - len(todo)
    if progress:
        progress(done, len(tasks))
    if not todo:
        return
    with ExitStack() as stack:
        client = _connect(stack, address, workers or os.cpu_count() or 1, local_processes)
        from distributed import as_completed  # loaded with the client, see the module docstring

        futures = client.map(run_remote, todo, pure=False)
        out_dirs = {f.key: Path(t.out_dir) for f, t in zip(futures, todo, strict=True)}
        for future in as_completed(futures):
            store_run(out_dirs[future.key], future.result())
            future.release()  # the cluster may forget the files now
            done += 1
            if progress:
                progress(done, len(tasks))


def _connect(stack: ExitStack, address: str, workers: int, processes: bool) -> Client:
    """A client of ``address``, or of a new LocalCluster; both close when ``stack`` does."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ConfigError(
            f"--dask needs Dask's distributed package ({exc}): pip install 'meshmsg[dask]'"
        ) from exc
    if address != LOCAL:
        try:
            return cast(Client, stack.enter_context(Client(address, timeout=CONNECT_TIMEOUT_S)))
        except OSError as exc:  # distributed raises OSError (TimeoutError) for no scheduler
            raise ConfigError(f"--dask {address}: no scheduler answers ({exc})") from exc
    # One thread per worker: a run is CPU-bound Python, and matplotlib's pyplot is not
    # thread-safe. No dashboard: it would need bokeh and a free port, and nobody looks at it.
    cluster = stack.enter_context(
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=processes,
            dashboard_address=None,
        )
    )
    return cast(Client, stack.enter_context(Client(cluster)))


def _absolute(task: RunTask) -> RunTask:
    """The task with absolute paths: a worker's working directory is not ours."""
    return dataclasses.replace(
        task,
        scenario=str(Path(task.scenario).resolve()),
        out_dir=str(Path(task.out_dir).resolve()),
    )
