"""``python -m tests.soak --minutes 60``: the long soak (see ``tests/soak/driver.py``).

Prints progress every minute and, at the end, the figures as JSON; exits 1 if the property
failed (the message names what is missing or doubled, and the seed). The data directories and
every node's output stay in ``--dir`` (default: a new temporary directory, printed) for a look
after a failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import tempfile
from pathlib import Path

import trio

from tests.soak.driver import SoakConfig, SoakFailure, run_soak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=60.0, help="of faults")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    parser.add_argument("--every", type=float, default=0.25, help="mean s between sends per node")
    parser.add_argument("--max-offset-h", type=float, default=12.0)
    parser.add_argument(
        "--clock-back",
        choices=["restart", "live"],
        default="restart",
        help="step clocks back only across a restart (default), or live",
    )
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    root = args.dir or Path(tempfile.mkdtemp(prefix="meshmsg-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"soak in {root}, seed {seed}", flush=True)
    cfg = SoakConfig(minutes=args.minutes, nodes=args.nodes, seed=seed,
                     send_every_s=args.every, max_offset_h=args.max_offset_h,
                     clock_back=args.clock_back)  # fmt: skip
    try:
        result = trio.run(run_soak, root, cfg, lambda s: print(s, flush=True))
    except SoakFailure as exc:
        print(f"FAILED: {exc}", flush=True)
        sys.exit(1)
    print(json.dumps(dataclasses.asdict(result), indent=1, default=str), flush=True)


if __name__ == "__main__":
    main()
