"""Loud failures: what a run could not do is printed with counts, reasons and an example, and
``meshmsg sim run --strict`` turns it into a non-zero exit (issue #16, item 3)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from click.testing import CliRunner
from rich.console import Console

from meshmsg.sim.cli import RunProgress, sim
from meshmsg.sim.failures import find_failures
from tests.sim.fakes import ScriptFactory
from tests.sim.helpers import run_engine, up

TOO_LARGE = (
    "2 of 3 messages not created: attachments are at most … B "
    "(e.g. M1, node 0 to 1 at t=5.0 s, 200,000,000 bytes)"
)
NEVER_LINKED = (
    "1 of 3 nodes never linked: no contact with any other node during the run (e.g. node 2)"
)


def scenario(tmp_path: Path) -> Path:
    """Three real core nodes; two messages exceed the 128 MiB attachment cap (above 32 KiB a
    message travels as a file); node 2 never meets anyone."""
    (tmp_path / "contacts.txt").write_text("1.0 CONN 0 1 up bt\n50.0 CONN 0 1 down bt\n")
    (tmp_path / "messages.txt").write_text(
        "5.0 C M1 n0 n1 200000000\n6.0 C M2 n0 n1 100\n7.0 C M3 n1 n0 300000000\n"
    )
    path = tmp_path / "big.toml"
    path.write_text("""
[run]
name = "big"
duration_s = 60.0
agent = "core"
[nodes]
count = 3
[links]
default_interface = "bt"
[links.interfaces.bt]
rate_bps = 250000.0
[contacts]
source = "trace"
trace = "contacts.txt"
[traffic]
source = "trace"
trace = "messages.txt"
[output]
plots = false
""")
    return path


def test_failures_are_printed_and_recorded(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(sim, ["run", str(scenario(tmp_path)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert TOO_LARGE in result.output
    assert NEVER_LINKED in result.output
    failures = json.loads((out / "run.json").read_text())["failures"]
    assert [(f["what"], f["count"], f["of"]) for f in failures] == [
        ("messages not created", 2, 3),
        ("nodes never linked", 1, 3),
    ]
    records = [json.loads(line) for line in (out / "messages.jsonl").read_text().splitlines()]
    assert [r["not_created"] for r in records] == [
        "attachments are at most 134217728 B", None, "attachments are at most 134217728 B",
    ]  # fmt: skip


def test_strict_turns_failures_into_a_non_zero_exit(tmp_path: Path) -> None:
    args = ["run", str(scenario(tmp_path)), "--out", str(tmp_path / "out"), "--strict"]
    result = CliRunner().invoke(sim, args)
    assert result.exit_code == 1
    assert "--strict: the run has failures" in result.output
    assert result.output.count(TOO_LARGE) == 2  # once in the report, once in the error


def test_strict_passes_a_clean_run(tmp_path: Path) -> None:
    path = scenario(tmp_path)
    (tmp_path / "messages.txt").write_text("6.0 C M2 n0 n1 100\n")
    (tmp_path / "contacts.txt").write_text(
        "1.0 CONN 0 1 up bt\n2.0 CONN 1 2 up bt\n50.0 CONN 0 1 down bt\n"
    )
    result = CliRunner().invoke(sim, ["run", str(path), "--out", str(tmp_path / "o"), "--strict"])
    assert result.exit_code == 0, result.output
    assert "not created" not in result.output


def test_violations_are_grouped_by_reason_with_the_first_as_example() -> None:
    sources = [[up(1.0, 0, 1), up(1.0, 0, 1), up(2.0, 0, 1)]]
    result, recorder = run_engine(ScriptFactory(), sources, strict=False)
    texts = [f.text() for f in find_failures(recorder, nodes=3, violations=result.violations)]
    assert texts == [
        "2 invariant violations: contact (#, #, 'bt') up twice "
        "(e.g. t=1.0: contact (0, 1, 'bt') up twice)",
        NEVER_LINKED,
    ]


def test_the_progress_bar_shows_only_on_a_terminal() -> None:
    for terminal in (True, False):
        screen = io.StringIO()
        target = Console(file=screen, force_terminal=terminal, width=100)
        with RunProgress(target, delay_s=0.0) as progress:
            progress(1800.0, 3600.0)
        assert ("1,800 of 3,600 s" in screen.getvalue()) is terminal


def test_a_sweep_counts_the_runs_with_failures_and_strict_fails_it(tmp_path: Path) -> None:
    args = ["sweep", str(scenario(tmp_path)), "--param", "run.duration_s=4.0;60.0",
            "--workers", "1", "--out", str(tmp_path / "sweep")]  # fmt: skip
    result = CliRunner().invoke(sim, args)
    assert result.exit_code == 0, result.output
    # Node 2 meets nobody in either run (the 60 s run also refuses two messages); the first
    # run listed (4 s, no message due yet) shows its only failure.
    assert "2 of 2 runs have failures (run.json: failures); " in result.output
    assert NEVER_LINKED in result.output
    strict = CliRunner().invoke(sim, [*args, "--strict"])  # resumed: nothing runs again
    assert strict.exit_code == 1
    assert "--strict: 2 of 2 runs have failures" in strict.output


def test_run_json_names_the_agent_given_on_the_command_line(tmp_path: Path) -> None:
    """``--agent`` overrides the scenario's ``run.agent``; run.json and scenario.toml used to
    say ``"core"`` whatever ran."""
    agent = "meshmsg.sim.agents:DirectFactory"
    out = tmp_path / "out"
    args = ["run", str(scenario(tmp_path)), "--out", str(out), "--agent", agent]
    result = CliRunner().invoke(sim, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["agent"] == agent
    assert f'agent = "{agent}"' in (out / "scenario.toml").read_text()
    default = tmp_path / "default"
    result = CliRunner().invoke(sim, ["run", str(scenario(tmp_path)), "--out", str(default)])
    assert json.loads((default / "run.json").read_text())["agent"] == "core"
