"""Sweeps on a Dask LocalCluster: the same folders and the same summary.csv as a local sweep,
and resumable the same way (issue #16, item 4)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from meshmsg.errors import ConfigError
from meshmsg.sim import dasksweep
from meshmsg.sim.sweep import sweep
from meshmsg.sim.sweeptask import RunTask
from tests.sim.test_sweep import scenario

GRID = ["run.duration_s=600.0;1200.0"]


def runs(out: Path) -> list[str]:
    return sorted(str(p.parent.relative_to(out)) for p in out.rglob("run.json"))


def test_dask_local_cluster_sweep_equals_the_local_sweep_and_resumes(tmp_path: Path) -> None:
    path = scenario(tmp_path)
    local = sweep(path, tmp_path / "local", GRID, seeds=2, workers=1)
    calls: list[tuple[int, int]] = []
    out = tmp_path / "dask"
    on_dask = sweep(path, out, GRID, seeds=2, workers=2, dask="local",
                    progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    assert on_dask.read_text() == local.read_text()
    assert "run.duration_s,runs,delivery_prob_mean" in local.read_text()
    assert runs(out) == runs(tmp_path / "local") == [
        "run.duration_s-1200.0/seed-1", "run.duration_s-1200.0/seed-2",
        "run.duration_s-600.0/seed-1", "run.duration_s-600.0/seed-2",
    ]  # fmt: skip
    one_run = Path("run.duration_s-600.0") / "seed-1"
    files = sorted(p.name for p in (out / one_run).iterdir())
    assert files == sorted(p.name for p in (tmp_path / "local" / one_run).iterdir())
    assert "run.json" in files
    assert calls[0] == (0, 4)
    assert calls[-1] == (4, 4)

    # Resume: a finished folder is not run again; a removed one is.
    (out / "run.duration_s-600.0" / "seed-2" / "run.json").unlink()
    kept = out / "run.duration_s-1200.0" / "seed-1" / "run.json"
    stamp = kept.stat().st_mtime_ns
    calls.clear()
    again = sweep(path, out, GRID, seeds=2, workers=1, dask="local",
                  progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    assert calls == [(3, 4), (4, 4)]
    assert kept.stat().st_mtime_ns == stamp
    assert again.read_text() == local.read_text()


def test_an_address_without_a_scheduler_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dasksweep, "CONNECT_TIMEOUT_S", 1.0)
    task = RunTask(scenario=str(tmp_path / "s.toml"), overrides=(), out_dir=str(tmp_path / "r"),
                   agent=None, point="base", seed=1)  # fmt: skip
    with pytest.raises(ConfigError, match=r"--dask tcp://127\.0\.0\.1:9: no scheduler answers"):
        dasksweep.run_on_dask([task], "tcp://127.0.0.1:9")


def test_sim_commands_do_not_load_dask() -> None:
    code = (
        "import sys, meshmsg.sim.cli, meshmsg.sim.sweep\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
