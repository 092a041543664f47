"""Attachments in the simulator: a large message crosses a chain of contacts as a file."""

from __future__ import annotations

from pathlib import Path

from meshmsg.sim.api import run_scenario
from meshmsg.sim.scenario import Scenario, scenario_from_dict

# Three contacts of 10 s each along a chain (link rates are in bytes per second).
CONTACTS = """\
10.0 CONN 0 1 up
20.0 CONN 0 1 down
30.0 CONN 1 2 up
40.0 CONN 1 2 down
50.0 CONN 2 3 up
60.0 CONN 2 3 down
"""


def chain(tmp_path: Path, size: int, rate_bps: float = 8e6, contacts: str = CONTACTS) -> Scenario:
    (tmp_path / "c.txt").write_text(contacts)
    (tmp_path / "m.txt").write_text(f"1.0 C M1 n0 n3 {size}\n2.0 C M2 n0 n3 300\n")
    table: dict[str, object] = {
        "run": {"name": "files", "duration_s": 120.0, "mode": "messenger", "agent": "core"},
        "nodes": {"count": 4, "ttl_s": 3600.0},
        "routing": {"policy": "epidemic"},
        "links": {"interfaces": {"default": {"rate_bps": rate_bps, "latency_s": 0.001}}},
        "contacts": {"source": "trace", "trace": "c.txt"},
        "traffic": {"source": "trace", "trace": "m.txt"},
        "output": {"plots": False},
    }
    return scenario_from_dict(table, base_dir=tmp_path)


def test_a_large_message_travels_as_an_attachment(tmp_path: Path) -> None:
    result = run_scenario(chain(tmp_path, 700_000), tmp_path / "out")  # 12 chunks
    s, extras = result.stats, result.extras
    assert (s.created, s.delivered) == (2, 2)  # the file's message and a short text
    assert (extras["attachments_created"], extras["attachments_delivered"]) == (1, 1)
    assert extras["chunk_deliveries"] == 3 * 12  # every relay and the recipient, once each
    assert 49 <= extras["attachment_latency_median_s"] <= 59  # the last chunk, at the last hop
    assert result.violations == ()


def test_a_transfer_cut_by_a_contact_end_resumes_at_the_next(tmp_path: Path) -> None:
    """At 100 kB/s a 10 s contact moves about 1 MB: a 1.5 MB file needs two contacts between
    0 and 1 (the ONE would start it over), then crosses 1-3 in one longer contact. Every chunk
    moves once per hop: nothing is sent again after the cut."""
    contacts = (
        "10.0 CONN 0 1 up\n20.0 CONN 0 1 down\n30.0 CONN 0 1 up\n40.0 CONN 0 1 down\n"
        "50.0 CONN 1 3 up\n80.0 CONN 1 3 down\n"
    )
    scenario = chain(tmp_path, 1_500_000, rate_bps=1e5, contacts=contacts)
    result = run_scenario(scenario, tmp_path / "out")
    extras = result.extras
    assert (extras["attachments_created"], extras["attachments_delivered"]) == (1, 1)
    assert extras["chunk_deliveries"] == 2 * 25
    assert 60 <= extras["attachment_latency_median_s"] <= 79
