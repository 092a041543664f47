"""Resumable chunks against whole transfers on the ONE's default scenario (issue #16 item 2).

    PYTHONPATH=$PWD nice -n 15 .venv/bin/python simulations/fragmentation/run.py
    PYTHONPATH=$PWD .venv/bin/python simulations/fragmentation/run.py --table-only

Cuts ``--windows`` disjoint windows out of the 12 h trace (``--window-s`` of contacts every
``--spacing-s``, messages created in the first ``--create-s`` of each), runs each window in
messenger mode with resumable chunks and with whole transfers, then in ONE mode with the core
for reference (``compare.py`` says why only the fragmentation differs), one run after the other.
Prints the Markdown table, writes ``results.csv`` (one line per run; runs already in it are not
rerun) and ``fragmentation.png`` beside this file, and each run's folder under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare import plot, read_csv, study, table, windows, write_csv  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--window-s", type=float, default=7_200.0)
    parser.add_argument("--create-s", type=float, default=3_600.0)
    parser.add_argument("--spacing-s", type=float, default=10_800.0)
    parser.add_argument(
        "--policy", action="append", default=[],
        help="Routing policy (repeatable; default: spray-and-wait, then direct).",
    )  # fmt: skip
    parser.add_argument("--no-one-mode", action="store_true", help="Skip the ONE-mode runs.")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("results/fragmentation"))
    parser.add_argument("--csv", type=Path, default=HERE / "results.csv")
    parser.add_argument("--png", type=Path, default=HERE / "fragmentation.png")
    parser.add_argument("--fresh", action="store_true", help="Ignore runs already in --csv.")
    parser.add_argument("--table-only", action="store_true", help="Table of --csv; run nothing.")
    args = parser.parse_args()
    policies = args.policy or ["spray-and-wait", "direct"]
    rows = [] if args.fresh else read_csv(args.csv)
    if not args.table_only:
        wins = windows(args.windows, args.window_s, args.create_s, args.spacing_s)

        def progress(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

        for policy in policies:
            rows = study(
                wins, policy, args.out, one_mode=not args.no_one_mode, overrides=args.param,
                progress=lambda line, p=policy: progress(f"{p}, {line}"), done=rows,
                checkpoint=lambda rows: write_csv(rows, args.csv),
            )  # fmt: skip
        write_csv(rows, args.csv)
    for policy in policies:
        print(f"\n{policy}\n")
        print(table([r for r in rows if r.policy == policy]), end="")
    if rows:
        plot(rows, args.png, "The ONE's default scenario (our trace): resumable chunks vs whole")


if __name__ == "__main__":
    main()
