"""The soak's short CI variant (#17 item 5): 5 real nodes, mixed traffic, kill -9, cut TCP
connections, blocked nodes and clock steps for ``SOAK_MINUTES`` (default 0.75), then 0
acknowledged messages lost, 0 duplicates, everything delivered (``tests/soak/driver.py``).

The long run is ``python -m tests.soak --minutes 60`` (docs/operations.md, "Verified behaviour").
Clocks are stepped back only across a restart here (``clock_back="restart"``): stepped back
under a running node, receipts are held for the size of the step, the bug of
``tests/soak/test_clock_step_receipts.py``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.soak.driver import SoakConfig, SoakStalled, run_soak

SOAK_MINUTES = float(os.environ.get("MESHMSG_SOAK_MINUTES", "0.75"))
# MESHMSG_SOAK_SEED replays a run's choices of faults and traffic (not its timing: real
# processes); unset, each run draws its own seed and prints it.
RETRY_MAX_S = 8.0  # redial backoff ceiling (default 300 s): pairs meet again within seconds
# Relayed receipts 1 s after the opening, no hold (default 30-300 s and 600 s): see driver.py.
RECEIPT_DELAY_S = 1.0
SETTLE_S = 60.0


# History of this variant (it was a non-strict xfail until 2026-12-08): seed 3407782030 lost
# three messages n2 -> n4 (QUEUED -> RELAYED -> DELIVERED at the sender within 0.15 s, absent
# from n4's database): n4 had taken custody of them as a relay, then opened them from its
# store; each stored copy's delete was a Persist of its own ahead of the opening's, a group
# commit ended between them and the kill came there; the purge token had left before the
# opening committed (tests/core/test_open_commit.py and test_purge_commit.py). Later misses
# were all of the settle bound, with nothing lost: a node left without links (a dialled link
# closed before it authenticated was never reported, so that peer was never dialled again;
# app/mesh.py now reports it and audits what it holds, tests/net/test_daemon.py), and mail
# sealed again after a heal whose earlier copy the recipient opened (marked delivered by the
# receipt alone, 30-300 s later: shortened here by RECEIPT_DELAY_S, and since 2026-12-08 the
# earlier copy's token marks it, tests/core/test_reseal_token.py). 6 of 6 runs clean after
# the first two fixes. So the safety property (nothing acknowledged lost, nothing duplicated
# or misplaced, databases intact) is asserted strictly; a miss of the settle bound alone, on
# a machine slower than this one, is reported as an expected failure with what was late
# (SoakStalled), and the hour-long run (python -m tests.soak) fails on it.
async def test_soak_loses_and_duplicates_nothing(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    seed = int(os.environ.get("MESHMSG_SOAK_SEED", "0")) or random.randrange(2**32)
    print(f"soak seed {seed}")
    cfg = SoakConfig(
        minutes=SOAK_MINUTES, seed=seed, settle_s=SETTLE_S, retry_max_s=RETRY_MAX_S,
        receipt_delay_s=RECEIPT_DELAY_S,
    )  # fmt: skip
    stalled: SoakStalled | None = None
    try:
        result = await run_soak(tmp_path, cfg)
    except SoakStalled as exc:  # safety held (checked before it is raised)
        stalled, result = exc, exc.result
    for name, value in vars(result).items():
        record_property(name, value)
    print(result)
    # The faults happened and traffic flowed through them, or the run proved little.
    assert result.kills >= 3
    assert result.connections_cut >= 1
    assert result.clock_steps >= 1
    assert result.acknowledged >= 100
    if stalled is not None:
        pytest.xfail(f"settle bound missed, safety held: {stalled}")
    assert result.stored == result.sent
