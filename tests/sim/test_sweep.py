"""Sweeps: parameter syntax, confidence intervals, CSV output, resuming a finished sweep."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from meshmsg.errors import ConfigError
from meshmsg.sim.sweep import mean_ci, parse_param, plan, sweep, t95

DATA = Path(__file__).parent / "data"


def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(f"""
[run]
name = "tiny"
duration_s = 1800.0
mode = "one"
agent = "meshmsg.sim.agents:DirectFactory"
[nodes]
count = 126
[links]
default_interface = "btInterface"
[links.interfaces.btInterface]
rate_bps = 250000.0
[links.interfaces.highspeedInterface]
rate_bps = 10000000.0
[contacts]
source = "trace"
trace = "{DATA / "ref_contacts_1h.txt"}"
[traffic]
source = "trace"
trace = "{DATA / "ref_messages_1h.txt"}"
[output]
plots = false
""")
    return path


def test_parameter_syntax() -> None:
    assert parse_param("routing.copies=2;4;6") == ("routing.copies", ["2", "4", "6"])
    assert parse_param("routing.copies=[2; 4]") == ("routing.copies", ["2", "4"])
    assert parse_param("mobility.world_m=[10, 20]") == ("mobility.world_m", ["[10, 20]"])
    with pytest.raises(ConfigError, match="not key=value"):
        parse_param("routing.copies")


def test_confidence_interval_by_hand() -> None:
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    assert math.isnan(mean_ci([5.0])[1])
    assert t95(1000) == pytest.approx(1.962, abs=1e-3)


def test_plan_rejects_a_bad_point_before_running(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"routing\.policy"):
        plan(scenario(tmp_path), tmp_path / "out", ["routing.policy=direct;flood"], seeds=1)


def test_sweep_writes_csvs_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    calls: list[tuple[int, int]] = []
    params = ["run.duration_s=1200.0;1800.0"]
    summary = sweep(scenario(tmp_path), out, params, seeds=2, workers=1,
                    progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    assert calls[-1] == (4, 4)
    rows = list(csv.DictReader(summary.read_text().splitlines()))
    assert [r["run.duration_s"] for r in rows] == ["1200.0", "1800.0"]
    assert [r["runs"] for r in rows] == ["2", "2"]
    assert float(rows[1]["delivered_mean"]) >= float(rows[0]["delivered_mean"]) > 0
    assert rows[0]["delivery_prob_ci95"] == "0"  # a trace replay does not depend on the seed
    folders = sorted(p.parent for p in out.rglob("run.json"))
    assert len(folders) == 4
    stamps = {f: (f / "run.json").stat().st_mtime_ns for f in folders}
    sweep(scenario(tmp_path), out, params, seeds=2, workers=1)
    assert {f: (f / "run.json").stat().st_mtime_ns for f in folders} == stamps
    assert len(list(csv.DictReader((out / "runs.csv").read_text().splitlines()))) == 4


def test_sweep_in_spawned_workers(tmp_path: Path) -> None:
    summary = sweep(scenario(tmp_path), tmp_path / "out", ["routing.copies=2;4"], seeds=1,
                    workers=2)  # fmt: skip
    rows = list(csv.DictReader(summary.read_text().splitlines()))
    assert [r["routing.copies"] for r in rows] == ["2", "4"]
