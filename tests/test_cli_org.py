"""``meshmsg org``, ``directory`` and ``request`` with click's CliRunner, without a daemon."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from meshmsg.app.cli import cli
from tests.test_cli import init, mm, runner  # noqa: F401  (the fixture)


def test_admin_signs_publishes_and_a_member_joins_searches_and_adds(
    runner: CliRunner,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    admin = tmp_path / "admin"
    carol_code = init(runner, tmp_path / "carol", "carol")
    init(runner, tmp_path / "alice", "alice")
    made = mm(runner, tmp_path / "alice", "org", "init", "Crisis Staff", "--admin-dir", str(admin))
    assert made.exit_code == 0, made.output
    org_code = made.output.strip().splitlines()[-1]
    assert org_code.startswith("MMORG1:")
    signed = mm(
        runner,
        tmp_path / "alice",
        "org",
        "sign",
        carol_code,
        "--name",
        "Carol Duty",
        "--unit",
        "Logistics",
        "--role",
        "duty officer",
        "--admin-dir",
        str(admin),
    )
    assert signed.exit_code == 0, signed.output
    out = tmp_path / "dir.mmdir"
    published = mm(
        runner, tmp_path / "alice", "org", "publish", "--out", str(out), "--admin-dir", str(admin)
    )
    assert "version 1: 1 members" in published.output

    home = tmp_path / "alice"
    unknown = runner.invoke(cli, ["--data-dir", str(home), "org", "import", str(out)])
    assert unknown.exit_code != 0
    assert "join it first" in unknown.output
    assert mm(runner, home, "org", "join", org_code).exit_code == 0
    imported = mm(runner, home, "org", "import", str(out))
    assert "1 members" in imported.output, imported.output
    found = mm(runner, home, "directory", "search", "duty")
    assert "Carol Duty" in found.output
    peer_id = next(w for w in found.output.split() if len(w) == 32)
    added = mm(runner, home, "directory", "add", peer_id)
    assert "verified by Crisis Staff (not in person)" in added.output
    listed = mm(runner, home, "request", "list")
    assert "No message requests" in listed.output


def test_bad_codes_are_one_line_errors(runner: CliRunner, tmp_path: Path) -> None:  # noqa: F811
    init(runner, tmp_path / "a", "a")
    result = runner.invoke(cli, ["--data-dir", str(tmp_path / "a"), "org", "join", "MMORG1:ABC"])
    assert result.exit_code != 0
    assert result.output.count("\n") == 1
    assert "organisation code" in result.output
