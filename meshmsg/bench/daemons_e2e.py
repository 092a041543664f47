"""End-to-end messages/s between two real daemons, next to the durable-submit limit (#17 item 3).

The figure: ``tests/load/cluster.py`` run as a child process (the load harness of the load
tests; it lives with the tests because it drives the application, which the bench package must
not import): two nodes as ``meshmsg run`` runs them, with the local HTTP API, on loopback in
that process; ``count`` messages posted A -> B through ``POST /messages`` by 8 concurrent
posters, each answered only after its commit; messages/s from the first post to the last
message received, after checking that all arrived once, in order, and delivered.

The limit, in this process right after, on the same disk:
:func:`meshmsg.bench.storage.measure_durable_submits`, one commit (``synchronous=FULL``) per
submit, which is what an acknowledged send costs today. The ratio says how much of the disk's
acknowledged-submit rate reaches the other daemon end to end; it passes 1 when submits share
commits (group commit, #17 item 4).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

from meshmsg.bench.runner import Blocked, Context, Figures, Measure, Status
from meshmsg.bench.units import per_s, seconds

HARNESS: Final = Path("tests") / "load" / "cluster.py"
STREAMS: Final = 8


def blocked(ctx: Context) -> Blocked | None:
    if not (ctx.root / HARNESS).is_file():
        return Blocked(Status.SKIPPED, f"needs the checkout's {HARNESS}")
    return None


def run_harness(root: Path, workdir: Path, count: int, timeout_s: float) -> dict[str, float]:
    """One load run of ``count`` messages A -> B; its findings (``LoadResult.summary``)."""
    args = [sys.executable, str(root / HARNESS), "--senders", "1", "--recipients", "1",
            "-n", str(count), "--streams", str(STREAMS), "--settle", "60",
            "--dir", str(workdir)]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, cwd=root,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"load harness failed ({done.returncode}): {done.stderr[-2000:]}")
    found: dict[str, float] = json.loads(done.stdout)
    bad = {k: found[k] for k in ("lost", "duplicated", "out_of_order", "not_delivered")
           if found[k]}  # fmt: skip
    if bad:
        raise RuntimeError(f"the load run was not correct: {bad}")
    return found


def daemons_e2e(ctx: Context) -> Figures:
    from meshmsg.bench.storage import measure_durable_submits

    # At most 1,000: the per-contact daily cap (#17 item 1) stops a conversation beyond it.
    count = ctx.size(1_000, 300, 50)
    with tempfile.TemporaryDirectory(prefix="meshmsg-e2e-", dir=ctx.workdir) as tmp:
        found = run_harness(ctx.root, Path(tmp), count, timeout_s=110.0)
        limit = measure_durable_submits(tmp, ctx.size(300, 100, 30))
    return {
        "msgs_per_s": found["msgs_per_s"],
        "durable_submits_per_s": limit["durable_submits_per_s"],
        "posted_per_s": count / found["post_s"] if found["post_s"] else 0.0,
        "max_queued_s": found["max_queued_s"],
    }


MEASURE: Final = Measure(
    name="daemons-e2e",
    title="end-to-end messages/s A→B through the API of two daemons on loopback "
    "(posted, delivered, checked)",
    figure="msgs_per_s", unit="messages/s", fmt=per_s,
    run=daemons_e2e, limit="durable_submits_per_s",
    limit_title="durable submits/s, one commit each, same disk",
    details=(("posted_per_s", "posted (201s):", per_s),
             ("max_queued_s", "longest queued:", seconds)),
    repeats=3, quick_repeats=1, timeout_s=240.0, quick_timeout_s=60.0, blocked=blocked,
)  # fmt: skip
