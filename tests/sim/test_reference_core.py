"""The real protocol core replays the ONE's reference trace and lands on the ONE's results.

These run the production Node (Noise handshakes, B+ envelopes, reconciliation, routing) for all
126 nodes over 12 simulated hours, so they take minutes; Epidemic and PRoPHET (hundreds of
thousands of transfers) are marked slow. The ONE's figures are in
simulations/reference/data/README.md.

``data/reference_stats.json`` holds every field of the Direct and Spray-and-Wait reports as the
core gave them before the core's architecture refactor (issue #10): a refactor must not change
behaviour, so those two replays must reproduce them field by field. The refactor reproduced
both exactly. One deliberate change since: the one-link-per-pair rule (issue #17.6) closes one
of two links that the trace's single overlapping contact (one pair "up" twice) opens, where the
old rule kept both; the Spray-and-Wait figures moved in the fourth digit (latency 2490.4 ->
2488.5 s, hop count 2.1723 -> 2.1738, every count unchanged) and were recorded again. Change
the file only for a deliberate behaviour change, and say which here.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from meshmsg.sim.api import run_scenario

# A whole 12 h replay with real crypto: 1.5-3 min on a quiet 2-core machine, up to 5 under load
# (the suite-wide 300 s timeout stopped one in a loaded run).
pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "simulations" / "reference" / "one-reference.toml"
GOLDEN = Path(__file__).resolve().parent / "data" / "reference_stats.json"


def run(tmp_path: Path, policy: str):  # type: ignore[no-untyped-def]
    overrides = ['run.agent="core"', f'routing.policy="{policy}"', "output.plots=false"]
    return run_scenario(SCENARIO, tmp_path, overrides=overrides).stats


def assert_same_report(stats: object, policy: str) -> None:
    """Every field of a MessageStatsReport equals the recorded one (floats to 1e-9)."""
    golden = json.loads(GOLDEN.read_text())[policy]
    got = dataclasses.asdict(stats)  # type: ignore[call-overload]
    assert set(got) == set(golden)
    for name, want in golden.items():
        value = got[name]
        if isinstance(want, float) and math.isnan(want):
            assert math.isnan(value), name
        elif isinstance(want, float):
            assert value == pytest.approx(want, rel=1e-9, abs=1e-9), name
        else:
            assert value == want, name


def test_core_direct_delivers_exactly_what_the_one_delivers(tmp_path: Path) -> None:
    s = run(tmp_path, "direct")
    assert (s.created, s.delivered, s.hopcount_avg, s.overhead_ratio) == (1463, 847, 1.0, 0.0)
    assert s.latency_avg == pytest.approx(6048.6, abs=0.5)
    assert_same_report(s, "direct")


def test_core_spray_and_wait_within_the_seed_band_of_the_one(tmp_path: Path) -> None:
    s = run(tmp_path, "spray-and-wait")
    assert s.delivery_prob == pytest.approx(0.9440, abs=0.02)
    assert s.overhead_ratio == pytest.approx(5.2107, rel=0.1)
    # Hop counts follow the copy split: receiver floor(n/2) gives the ONE's 2.17 (ceil: 2.51).
    assert s.hopcount_avg == pytest.approx(2.17, abs=0.05)
    assert_same_report(s, "spray-and-wait")


@pytest.mark.slow
@pytest.mark.parametrize(("policy", "one"), [("epidemic", 0.9829), ("prophet", 0.9733)])
def test_core_epidemic_and_prophet_within_the_seed_band(
    tmp_path: Path, policy: str, one: float
) -> None:
    s = run(tmp_path, policy)
    assert s.delivery_prob == pytest.approx(one, abs=0.02)
