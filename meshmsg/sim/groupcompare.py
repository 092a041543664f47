"""Group mail beside pairwise fan-out: the same scenario and seeds run both ways, one table.

For each seed, the scenario runs with ``group_traffic.delivery = "group"`` and again with
``"fanout"``; the two runs share contacts, faults, members, senders, times and sizes (all drawn
from the seed, see :mod:`meshmsg.sim.grouptraffic`). The table gives each figure's mean over
the seeds with a 95 % confidence interval (Student's t) when there are several.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from meshmsg.sim.api import run_scenario
from meshmsg.sim.groupreport import GroupSummary

# Two-sided 95 % quantiles of Student's t for 1..9 degrees of freedom (normal beyond).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262)

ROWS: tuple[tuple[str, str, str], ...] = (
    ("delivery_ratio", "(message, member) pairs delivered", "{:.3f}"),
    ("member_ratio_min", "worst-served member's delivered fraction", "{:.3f}"),
    ("all_members_ratio", "messages that reached every member", "{:.3f}"),
    ("latency_median_s", "latency, median (s)", "{:.0f}"),
    ("latency_p90_s", "latency, 90th percentile (s)", "{:.0f}"),
    ("not_created", "messages not created (sender not yet in the group)", "{:.1f}"),
    ("copies", "traffic envelope copies taken (all nodes)", "{:.0f}"),
    ("relay_copies", "relay copies (taken by a non-recipient)", "{:.0f}"),
    ("relay_bytes", "relay bytes (MB)", "{:.2f}"),
    ("copy_bytes", "all traffic copies' bytes (MB)", "{:.2f}"),
    ("other_copies", "other envelopes (group operations and chains, receipts)", "{:.0f}"),
)
_MB = ("relay_bytes", "copy_bytes")


def compare(
    scenario: Path, out_dir: Path, seeds: Sequence[int], overrides: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[GroupSummary]]:  # fmt: skip
    """Run every seed both ways into ``out_dir/<delivery>-seed<n>``; the summaries by mode."""
    results: dict[str, list[GroupSummary]] = {"group": [], "fanout": []}
    for seed in seeds:
        for delivery in results:
            params = [*overrides, f"run.seed={seed}", f"group_traffic.delivery={delivery!r}"]
            params = [p.replace("'", '"') for p in params]
            run = run_scenario(scenario, out_dir / f"{delivery}-seed{seed}", overrides=params)
            if run.groups is None:
                raise ValueError(f"{scenario} has no [group_traffic] (group_traffic.count = 0)")
            results[delivery].append(run.groups)
            if progress is not None:
                g = run.groups
                progress(f"seed {seed} {delivery}: delivery {g.delivery_ratio:.3f}, "
                         f"relay bytes {g.relay_bytes}, wall {run.wall_s:.0f} s")  # fmt: skip
    return results


def load(out_dir: Path, seeds: Sequence[int]) -> dict[str, list[GroupSummary]]:
    """The summaries :func:`compare` wrote under ``out_dir`` (runs not there are left out)."""
    results: dict[str, list[GroupSummary]] = {"group": [], "fanout": []}
    for seed in seeds:
        for delivery, summaries in results.items():
            path = out_dir / f"{delivery}-seed{seed}" / "group_traffic.json"
            if path.is_file():
                summaries.append(GroupSummary(**json.loads(path.read_text("utf-8"))))
    return results


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % confidence interval (NaN for one value)."""
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return math.nan, math.nan
    mean = statistics.fmean(clean)
    if len(clean) < 2:
        return mean, math.nan
    t = _T95[len(clean) - 2] if len(clean) - 1 <= len(_T95) else 1.96
    return mean, t * statistics.stdev(clean) / math.sqrt(len(clean))


def table(results: dict[str, list[GroupSummary]]) -> str:
    """A Markdown table: one row per figure, group mail beside fan-out (mean ± CI)."""
    lines = ["| figure | group mail | pairwise fan-out |", "| --- | ---: | ---: |"]
    for key, label, fmt in ROWS:
        cells = []
        for delivery in ("group", "fanout"):
            values = [float(asdict(s)[key]) for s in results[delivery]]
            if key in _MB:
                values = [v / 1e6 for v in values]
            mean, half = mean_ci(values)
            cell = fmt.format(mean)
            cells.append(cell if math.isnan(half) else f"{cell} ± {fmt.format(half)}")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"
