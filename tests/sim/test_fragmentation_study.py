"""Issue #16 item 2: resumable chunks against whole transfers (simulations/fragmentation/).

The study's comparison runs on a tiny window of the default-scenario trace in seconds, and on a
scripted trace where every contact ends mid-file the resumable variant delivers the file while
the whole-transfer variant (``attach.resume_cut_transfers = false``) never does.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from meshmsg.sim.api import run_scenario
from meshmsg.sim.scenario import Scenario, scenario_from_dict

ROOT = Path(__file__).resolve().parents[2]


def _compare() -> ModuleType:
    path = ROOT / "simulations" / "fragmentation" / "compare.py"
    spec = importlib.util.spec_from_file_location("fragmentation_compare", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


compare = _compare()


def scripted(tmp_path: Path, contacts: str, size: int, policy: str = "direct") -> Scenario:
    (tmp_path / "c.txt").write_text(contacts)
    (tmp_path / "m.txt").write_text(f"1.0 C M1 n0 n2 {size}\n")
    table: dict[str, object] = {
        "run": {"name": "cut", "duration_s": 200.0, "mode": "messenger", "agent": "core"},
        "nodes": {"count": 3, "ttl_s": 3600.0, "buffer_bytes": 5_000_000},
        "routing": {"policy": policy, "copies": 6, "binary": True},
        "links": {"interfaces": {"default": {"rate_bps": 1e5, "latency_s": 0.001}}},
        "contacts": {"source": "trace", "trace": "c.txt"},
        "traffic": {"source": "trace", "trace": "m.txt"},
        "output": {"plots": False},
    }
    return scenario_from_dict(table, base_dir=tmp_path)


# At 100 kB/s a 10 s contact moves about 1 MB: a 1.5 MB file (25 chunks) needs two contacts.
CUT_TWICE = "10.0 CONN 0 2 up\n20.0 CONN 0 2 down\n30.0 CONN 0 2 up\n40.0 CONN 0 2 down\n"
# Through a relay: each hop needs two contacts, and the relay's second one comes late.
RELAYED = (
    "10.0 CONN 0 1 up\n20.0 CONN 0 1 down\n30.0 CONN 0 1 up\n40.0 CONN 0 1 down\n"
    "50.0 CONN 1 2 up\n60.0 CONN 1 2 down\n70.0 CONN 1 2 up\n80.0 CONN 1 2 down\n"
)


@pytest.mark.parametrize(
    ("contacts", "policy"), [(CUT_TWICE, "direct"), (RELAYED, "spray-and-wait")]
)
def test_resumable_delivers_what_whole_transfers_lose(
    tmp_path: Path, contacts: str, policy: str
) -> None:
    delivered = {}
    chunks = {}
    for resume in (True, False):
        scenario = scripted(tmp_path, contacts, 1_500_000, policy)
        factory = compare.ChunkedFactory(resume=resume)
        result = run_scenario(scenario, tmp_path / f"out-{resume}", agent=factory)
        assert result.extras["attachments_created"] == 1
        assert result.violations == ()
        delivered[resume] = result.extras["attachments_delivered"]
        chunks[resume] = result.extras["chunk_deliveries"]
    assert delivered == {True: 1, False: 0}
    assert delivered[True] >= delivered[False]
    # Whole transfers move chunks they then lose: at least as many chunk deliveries.
    assert chunks[False] >= chunks[True] - 25


def test_whole_transfers_deliver_when_one_contact_is_long_enough(tmp_path: Path) -> None:
    contacts = "10.0 CONN 0 2 up\n40.0 CONN 0 2 down\n"
    for resume in (True, False):
        scenario = scripted(tmp_path, contacts, 1_500_000)
        factory = compare.ChunkedFactory(resume=resume)
        result = run_scenario(scenario, tmp_path / f"out-{resume}", agent=factory)
        assert result.extras["attachments_delivered"] == 1
        assert result.extras["chunk_deliveries"] == 25  # the recipient, each chunk once


def test_the_study_runs_on_a_tiny_window(tmp_path: Path) -> None:
    """A 5-minute window of the default-scenario trace, messages of its first 2 minutes, both
    variants and ONE mode: the table, the CSV and the plot. Only the pairs that write to each
    other are paired here (pairing all 126 nodes takes most of a minute per run)."""
    wins = compare.windows(1, 300.0, 120.0, 3_600.0)
    rows = compare.study(
        wins, "spray-and-wait", tmp_path / "runs", overrides=['nodes.pre_pair="traffic"']
    )
    by = {r.variant: r for r in rows}
    assert sorted(by) == ["one-mode", "resumable", "whole"]
    assert by["resumable"].created == by["whole"].created == by["one-mode"].created > 0
    assert by["resumable"].delivered >= by["whole"].delivered
    compare.write_csv(rows, tmp_path / "r.csv")
    again = compare.read_csv(tmp_path / "r.csv")
    assert [(r.variant, r.created, r.delivered) for r in again] == [
        (r.variant, r.created, r.delivered) for r in rows
    ]
    text = compare.table(rows)
    assert "resumable − whole (paired)" in text
    assert "ONE mode" in text
    compare.plot(rows, tmp_path / "p.png", "tiny")
    assert (tmp_path / "p.png").stat().st_size > 0
