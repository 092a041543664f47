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
SETTLE_S = 60.0


# Not strict: the failure is intermittent (some runs, not most). Seed 3407782030: three
# messages n2 -> n4 went QUEUED -> RELAYED -> DELIVERED within 0.15 s at the sender (custody
# acknowledged, then delivery) while n4, killed and restarted four times in the run, never
# reported them and its database holds neither the messages, nor a tombstone, nor the envelopes.
# Something that acknowledges (the custody ack, the receipt or the purge token) left before the
# commit it stands for, or a committed write was lost across a kill -9. Seed 7 of the long run
# (docs/operations.md) left 16 messages RELAYED for good. Remove the mark once both are fixed.
@pytest.mark.xfail(
    strict=False,
    reason="intermittent: acknowledged messages missing at a recipient killed during "
    "traffic (seed 3407782030), or relayed and never delivered (seed 7); see the comment",
)
async def test_soak_loses_and_duplicates_nothing(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    seed = int(os.environ.get("MESHMSG_SOAK_SEED", "0")) or random.randrange(2**32)
    print(f"soak seed {seed}")
    cfg = SoakConfig(minutes=SOAK_MINUTES, seed=seed, settle_s=SETTLE_S, retry_max_s=RETRY_MAX_S)
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
