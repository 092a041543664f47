"""Group mail beside pairwise fan-out in the crisis scenario with one 100-member group.

    PYTHONPATH=$PWD .venv/bin/python simulations/crisis/groups.py            # seeds 1 2 3
    PYTHONPATH=$PWD .venv/bin/python simulations/crisis/groups.py 1 2 --param run.duration_s=7200
    PYTHONPATH=$PWD .venv/bin/python simulations/crisis/groups.py 1 2 3 --table-only  # no runs

Runs ``crisis-group100.toml`` once with group mail and once as pairwise fan-out per seed (the
same contacts, faults and messages), writes each run's folder under ``runs/crisis-groups/``
and prints the Markdown table of docs/simulator.md ("Group traffic"). Run from the project
root; every run is one process after the other (the 2-core machine is shared).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from meshmsg.sim.groupcompare import compare, load, table

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seeds", nargs="*", type=int, default=[1, 2, 3])
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("runs/crisis-groups"))
    parser.add_argument(
        "--table-only", action="store_true",
        help="Print the table of the runs already under --out; run nothing.",
    )  # fmt: skip
    args = parser.parse_args()
    if args.table_only:
        results = load(args.out, args.seeds)
    else:
        results = compare(
            HERE / "crisis-group100.toml", args.out, args.seeds,
            [*args.param, "output.plots=false"],
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )  # fmt: skip
    print(f"seeds {' '.join(map(str, args.seeds))}; params {args.param or 'none'}")
    print(table(results))


if __name__ == "__main__":
    main()
