"""``meshmsg bench``: the output is complete and well formed. Speed is never asserted.

One test runs the real command end to end (``--quick --json`` in a subprocess, every measure);
the others drive the runner through its Python API with small fake measures, to pin down the
parts a real run cannot force: failures, hangs and crashes that become rows, placeholders,
medians and goals.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from meshmsg.bench import runner as bench_runner
from meshmsg.bench import suite
from meshmsg.bench.rows import MEASURES
from meshmsg.bench.runner import (
    Blocked,
    Condition,
    Context,
    Figures,
    Measure,
    Options,
    Status,
    run_all,
    run_measure,
    select,
    summarise,
)
from meshmsg.errors import ConfigError, MeshError

ROOT = Path(__file__).resolve().parent.parent
MEASURED = {Status.MET.value, Status.MISSED.value, Status.NO_GOAL.value}
PLACEHOLDERS = {Status.SKIPPED.value, Status.PENDING.value}


def check_stat(stat: Any, what: str) -> None:
    assert set(stat) == {"median", "min", "max"}, what
    values = [stat["min"], stat["median"], stat["max"]]
    assert all(isinstance(v, int | float) and math.isfinite(v) for v in values), what
    assert stat["min"] <= stat["median"] <= stat["max"], what


def check_row(row: dict[str, Any], measure: Measure) -> None:
    """One JSON row is consistent with its measure's declaration and its own status."""
    assert row["name"] == measure.name
    assert row["title"] == measure.title
    assert row["goal"] == measure.goal_text
    assert row["status"] in MEASURED | PLACEHOLDERS, f"{measure.name}: {row['error']}"
    assert row["error"] is None
    for key, stat in row["figures"].items():
        check_stat(stat, f"{measure.name}.{key}")
    if row["status"] in MEASURED:
        assert row["repeats"] >= 1
        assert row["figure"] == row["figures"][measure.figure]
        assert row["figure"]["median"] > 0, measure.name
        if measure.limit is not None:
            assert row["limit"] == row["figures"][measure.limit]
            check_stat(row["ratio"], f"{measure.name}.ratio")
            ratio = row["figure"]["median"] / row["limit"]["median"]
            # The ratio is the median of per-sample ratios, so it lies inside their range.
            assert row["ratio"]["min"] <= row["ratio"]["median"] <= row["ratio"]["max"]
            if row["repeats"] == 1:
                assert row["ratio"]["median"] == pytest.approx(ratio)
        else:
            assert row["limit"] is None
            assert row["ratio"] is None
        # An optional clause whose figure was not measured (the ONE not installed) is not judged.
        judged = [c for c in measure.goal if not c.optional or c.key in row["figures"]]
        if judged:
            assert isinstance(row["goal_met"], bool)
            assert row["status"] == ("met" if row["goal_met"] else "missed")
        else:
            assert row["goal_met"] is None
            assert row["status"] == "no goal"
    else:
        assert row["reason"], f"{measure.name}: a placeholder row must say why"
        assert row["figure"] is None
        assert row["goal_met"] is None
        if row["status"] == Status.PENDING.value and measure.limit_when_blocked:
            # The code to measure has not landed, but the limit is measured all the same.
            assert row["limit"] is not None, measure.name
            assert row["limit"]["median"] > 0


@pytest.mark.slow  # 64 s; the command's path runs in test_command_runs_one_real_measure_in_process
def test_quick_bench_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    work = tmp_path / "disk"
    work.mkdir()
    env = {**os.environ, "COLUMNS": "240"}
    proc = subprocess.run(
        [sys.executable, "-m", "meshmsg.bench", "--quick", "--json", str(out), "--dir", str(work),
         "--markdown", str(tmp_path / "bench.md")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["format"] == bench_runner.JSON_FORMAT
    assert data["quick"] is True
    assert data["isolated"] is True
    assert {"nproc", "cpu", "python", "platform"} <= set(data["machine"])
    assert data["machine"]["nproc"] >= 1
    rows = data["rows"]
    assert [r["name"] for r in rows] == [m.name for m in MEASURES]
    for row, measure in zip(rows, MEASURES, strict=True):
        check_row(row, measure)
    # Rows always measured wherever the suite runs (no extra privileges, no pending code):
    always = {"durable-submits", "mem-link", "mem-store"}
    assert {r["name"] for r in rows if r["status"] in MEASURED} >= always
    text = (tmp_path / "bench.md").read_text()
    for measure in MEASURES:
        assert measure.name in proc.stdout  # the table lists every row
        assert f"| **{measure.name}**: " in text
    assert list(work.iterdir()) == []  # the durable-submit databases are removed


# ------------------------------------------------------------------------ fake measures
# Module-level functions: the runner pickles a Measure into a spawned process.


def fake_pair(ctx: Context) -> Figures:
    return {"fig": 30.0 if ctx.warmup else 10.0, "lim": 20.0}


def fake_raises(ctx: Context) -> Figures:
    raise MeshError("the measured thing broke [badly]")


def fake_hangs(ctx: Context) -> Figures:
    time.sleep(60)
    return {"fig": 1.0}


def fake_dies(ctx: Context) -> Figures:
    os._exit(3)


def fake_pid(ctx: Context) -> Figures:
    return {"pid": float(os.getpid())}


def fake_limit_only(ctx: Context) -> Figures:
    return {"lim": 5.0}


def fake_must_not_run(ctx: Context) -> Figures:
    raise AssertionError("a skipped measure was run")


def fake_infinite(ctx: Context) -> Figures:
    return {"fig": math.inf}


def pending(ctx: Context) -> Blocked | None:
    return Blocked(Status.PENDING, "waiting for meshmsg/thing.py")


def skipped(ctx: Context) -> Blocked | None:
    return Blocked(Status.SKIPPED, "no multicast here")


def broken_probe(ctx: Context) -> Blocked | None:
    raise MeshError("the probe failed")


def fake(run: Any, **kwargs: Any) -> Measure:
    defaults: dict[str, Any] = {"name": run.__name__, "title": "fake", "figure": "fig"}
    return Measure(run=run, **{**defaults, **kwargs})


def quiet() -> Console:
    return Console(file=io.StringIO())


def options(tmp_path: Path, *, isolate: bool = False) -> Options:
    return Options(quick=True, isolate=isolate, workdir=tmp_path)


# ------------------------------------------------------------------------------- summarise


def test_summary_reports_median_min_max_and_the_median_of_per_sample_ratios() -> None:
    m = fake(fake_pair, limit="lim")
    samples = [{"fig": 1.0, "lim": 2.0}, {"fig": 3.0, "lim": 3.0}, {"fig": 8.0, "lim": 2.0}]
    row = summarise(m, samples)
    assert row.status is Status.NO_GOAL
    assert row.figure == bench_runner.Stat(3.0, 1.0, 8.0)
    assert row.limit == bench_runner.Stat(2.0, 2.0, 3.0)
    assert row.ratio == bench_runner.Stat(1.0, 0.5, 4.0)  # not 3.0 / 2.0: samples are paired


@pytest.mark.parametrize(
    ("goal", "status"),
    [
        ((Condition("ratio", ">=", 0.5),), Status.MET),
        ((Condition("ratio", ">=", 0.6),), Status.MISSED),
        ((Condition("fig", "<=", 10.0), Condition("lim", "<=", 19.0)), Status.MISSED),
        ((Condition("fig", "<=", 10.0), Condition("lim", "<=", 20.0)), Status.MET),
    ],
)
def test_goal_is_checked_on_medians(goal: tuple[Condition, ...], status: Status) -> None:
    row = summarise(fake(fake_pair, limit="lim", goal=goal), [{"fig": 10.0, "lim": 20.0}])
    assert row.status is status
    assert row.goal_met is (status is Status.MET)


def test_missing_headline_or_goal_figure_is_an_error_row() -> None:
    row = summarise(fake(fake_pair, figure="nope"), [{"fig": 1.0}])
    assert row.status is Status.ERROR
    assert "nope" in row.error
    row = summarise(fake(fake_pair, goal=(Condition("round_trips", "<=", 4),)), [{"fig": 1.0}])
    assert row.status is Status.ERROR
    assert "round_trips" in row.error


def test_an_optional_goal_is_judged_only_when_its_figure_was_measured() -> None:
    goal = (Condition("vs_ref", ">=", 1.0, optional=True),)
    row = summarise(fake(fake_pair, goal=goal), [{"fig": 10.0}])
    assert row.status is Status.NO_GOAL
    assert row.goal_met is None
    assert row.reason == "goal not judged: vs_ref not measured"
    assert summarise(fake(fake_pair, goal=goal), [{"fig": 1.0, "vs_ref": 0.5}]).status is (
        Status.MISSED
    )
    row = summarise(fake(fake_pair, goal=goal), [{"fig": 1.0, "vs_ref": 1.5}])
    assert (row.status, row.goal_met) == (Status.MET, True)


# ------------------------------------------------------------------------------ the runner


def test_warm_up_is_discarded_and_repeats_are_counted(tmp_path: Path) -> None:
    m = fake(fake_pair, limit="lim", quick_repeats=4)
    row = run_measure(m, options(tmp_path))
    assert row.samples == 4
    assert row.figure == bench_runner.Stat(10.0, 10.0, 10.0)  # the warm-up returned 30


@pytest.mark.parametrize("isolate", [False, True])
def test_a_failing_measure_becomes_a_row_and_the_run_goes_on(tmp_path: Path, isolate: bool) -> None:
    measures = [fake(fake_raises), fake(fake_pair, limit="lim")]
    rows = run_all(measures, options(tmp_path, isolate=isolate), quiet())
    assert [r.status for r in rows] == [Status.ERROR, Status.NO_GOAL]
    assert rows[0].error == "MeshError: the measured thing broke [badly]"
    assert rows[1].ratio == bench_runner.Stat(0.5, 0.5, 0.5)


def test_a_hanging_measure_is_stopped_at_its_deadline(tmp_path: Path) -> None:
    m = fake(fake_hangs, quick_timeout_s=1.5, warmup=False)
    started = time.monotonic()
    row = run_measure(m, options(tmp_path, isolate=True))
    assert time.monotonic() - started < 20
    assert row.status is Status.ERROR
    assert "timed out" in row.error


def test_a_crashing_measure_process_becomes_a_row(tmp_path: Path) -> None:
    row = run_measure(fake(fake_dies, warmup=False), options(tmp_path, isolate=True))
    assert row.status is Status.ERROR
    assert "exit code 3" in row.error


def test_fresh_process_gives_each_repetition_its_own_process(tmp_path: Path) -> None:
    m = fake(fake_pid, figure="pid", quick_repeats=2, fresh_process=True, warmup=False)
    row = run_measure(m, options(tmp_path, isolate=True))
    assert row.samples == 2
    assert row.figure is not None
    assert row.figure.min != row.figure.max
    assert os.getpid() not in (row.figure.min, row.figure.max)


def test_pending_row_still_measures_its_limit(tmp_path: Path) -> None:
    m = fake(fake_limit_only, limit="lim", blocked=pending, limit_when_blocked=True,
             goal=(Condition("ratio", ">=", 0.5),))  # fmt: skip
    row = run_measure(m, options(tmp_path))
    assert row.status is Status.PENDING
    assert row.reason == "waiting for meshmsg/thing.py"
    assert row.figure is None
    assert row.goal_met is None
    assert row.limit == bench_runner.Stat(5.0, 5.0, 5.0)


def test_skipped_row_runs_nothing(tmp_path: Path) -> None:
    m = fake(fake_must_not_run, limit="lim", blocked=skipped, limit_when_blocked=True)
    row = run_measure(m, options(tmp_path))
    assert row.status is Status.SKIPPED
    assert row.reason == "no multicast here"
    assert row.figures == {}


def test_a_failing_availability_check_becomes_a_row(tmp_path: Path) -> None:
    row = run_measure(fake(fake_must_not_run, blocked=broken_probe), options(tmp_path))
    assert row.status is Status.ERROR
    assert row.error == "MeshError: the probe failed"


def test_select_by_name_keeps_registry_order_and_refuses_unknown_names() -> None:
    chosen = select(MEASURES, ["mem-store,sync", "link-setup"])
    assert [m.name for m in chosen] == ["link-setup", "sync", "mem-store"]
    assert select(MEASURES, []) == list(MEASURES)
    with pytest.raises(ConfigError, match="nope"):
        select(MEASURES, ["sync,nope"])


def test_registry_names_are_unique_and_goals_name_returned_figures() -> None:
    names = [m.name for m in MEASURES]
    assert len(set(names)) == len(names)
    for m in MEASURES:
        assert bool(m.goal) == bool(m.goal_text), m.name
        assert m.repeats >= 1
        assert m.quick_repeats >= 1


# ------------------------------------------------------------------------------ the output


def test_json_and_table_carry_every_row(tmp_path: Path) -> None:
    measures = [
        fake(fake_pair, name="row-alpha", limit="lim", goal=(Condition("ratio", ">=", 0.1),),
             goal_text="ratio ≥ 0.1"),
        fake(fake_limit_only, name="row-beta", limit="lim", blocked=pending,
             limit_when_blocked=True),
        fake(fake_raises, name="row-gamma"),
    ]  # fmt: skip
    rows = run_all(measures, options(tmp_path), quiet())
    data = json.loads(json.dumps(bench_runner.report(rows, options(tmp_path)), allow_nan=False))
    assert [r["name"] for r in data["rows"]] == ["row-alpha", "row-beta", "row-gamma"]
    assert [r["status"] for r in data["rows"]] == ["met", "not yet available", "error"]
    assert data["rows"][0]["ratio"] == {"median": 0.5, "min": 0.5, "max": 0.5}
    assert data["rows"][1]["limit"]["median"] == 5.0
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(bench_runner.table(rows, "t"))
    text = console.export_text()
    expected = [
        "row-alpha",
        "row-beta",
        "row-gamma",
        "met",
        "not yet available",
        "error",
        "ratio ≥ 0.1",
        "waiting for meshmsg/thing.py",
    ]
    for snippet in [*expected, "MeshError: the measured thing broke [badly]"]:
        assert snippet in text
    lines = bench_runner.markdown(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert all(line.count(" | ") == len(bench_runner.COLUMNS) - 1 for line in lines)
    assert lines[2].startswith("| **row-alpha**: fake | 10 |")


def test_non_finite_figures_become_an_error(tmp_path: Path) -> None:
    rows = [run_measure(fake(fake_infinite), options(tmp_path))]
    suite._finite(rows)
    assert rows[0].status is Status.ERROR
    assert "fig" in rows[0].error
    json.dumps(bench_runner.report(rows, options(tmp_path)), allow_nan=False)  # must not raise


def test_command_lists_measures_and_refuses_unknown_ones() -> None:
    runner = CliRunner()
    listed = runner.invoke(suite.bench_command, ["--list"])
    assert listed.exit_code == 0
    for m in MEASURES:
        assert m.name in listed.output
    refused = runner.invoke(suite.bench_command, ["--only", "nope"])
    assert refused.exit_code == 2
    assert "unknown measure" in refused.output


def test_command_runs_one_real_measure_in_process(tmp_path: Path) -> None:
    out = tmp_path / "one.json"
    result = CliRunner().invoke(
        suite.bench_command,
        ["--quick", "--no-isolate", "--only", "mem-link", "--json", str(out)],
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())["rows"]
    check_row(row, select(MEASURES, ["mem-link"])[0])
    assert row["status"] in {"met", "missed"}
