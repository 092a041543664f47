"""Resumable chunks against whole transfers (issue #16 item 2): the runs, the table, the plot.

The ONE's default scenario (our trace, ``simulations/one-default/``) in messenger mode, where
each 500 kB-1 MB message is a file of 60 KiB chunks. Each replication runs it twice, and the two
runs differ in one setting only, ``attach.resume_cut_transfers``:

- ``resumable`` (the protocol): chunks that arrived before a contact ended are kept; the next
  contact, with anyone holding the rest, fetches only what is missing;
- ``whole``: a hop that is cut before the file is complete loses every chunk it brought (the
  ONE's whole-message transfer); the node keeps its entry and fetches the file again from zero.

Everything else is the same code path: messenger mode, the same routing policy and copies, the
same buffers (the scenario's 5 MB, 50 MB on the trams, for the chunk store as for envelopes),
the same contacts, messages and seed. A replication is a disjoint time window of the trace
(contacts of the window, messages created in its first part, times shifted to start at 0).
For reference the same windows run in ONE mode with the core (declared sizes, the ONE's
whole-message semantics; docs/simulator.md, "Large messages in ONE mode").
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from meshmsg.core.effects import StoredRecord
from meshmsg.core.node import Node
from meshmsg.sim.api import run_scenario
from meshmsg.sim.corehost import CoreFactory
from meshmsg.sim.groupcompare import mean_ci
from meshmsg.sim.host import NodeSetup
from meshmsg.sim.rng import SeededRng

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "fragmentation.toml"
ONE_SCENARIO = HERE.parent / "one-default" / "one-default.toml"
DATA = HERE.parent / "one-default" / "data"
VARIANTS = ("resumable", "whole")


class ChunkedFactory(CoreFactory):
    """The real core; attachments resume cut transfers (``resume``) or lose them whole, and the
    chunk store is capped at the node's buffer (the scenario's 5 MB / 50 MB)."""

    def __init__(self, *, resume: bool) -> None:
        super().__init__()
        self.resume = resume

    def _new(
        self, setup: NodeSetup, rng: SeededRng, now: float, records: Sequence[StoredRecord]
    ) -> Node:
        base = self._configs[setup.address]
        attach = dataclasses.replace(
            base.attach, resume_cut_transfers=self.resume, max_store_bytes=setup.buffer_bytes
        )
        self._configs[setup.address] = base.replace(attach=attach)
        return super()._new(setup, rng, now, records)


@dataclass(frozen=True, slots=True)
class Window:
    """Replication ``index``: contacts in ``[start, start + length)``, messages created in
    ``[start, start + create)``, shifted to start at 0."""

    index: int
    start: float
    length: float
    create: float


def windows(count: int, length: float, create: float, spacing: float) -> list[Window]:
    return [Window(i + 1, i * spacing, length, create) for i in range(count)]


def _open(path: Path) -> list[str]:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return handle.read().splitlines()
    return path.read_text("utf-8").splitlines()


def cut_window(contacts: Path, messages: Path, window: Window, out: Path) -> tuple[Path, Path]:
    """Write the window's contact and message traces under ``out``; links up at its start come
    up at 0, links still up at its end go down with the run."""
    out.mkdir(parents=True, exist_ok=True)
    end = window.start + window.length
    up: dict[tuple[str, str], str] = {}
    lines: list[str] = []
    opened = False
    for line in _open(contacts):
        fields = line.split()
        if len(fields) < 5 or fields[1] != "CONN":
            continue
        time, a, b, state = float(fields[0]), fields[2], fields[3], fields[4]
        iface = fields[5] if len(fields) > 5 else ""
        if time >= end:
            break
        if time >= window.start and not opened:
            opened = True
            lines += [f"0.00 CONN {x} {y} up {i}".rstrip() for (x, y), i in sorted(up.items())]
        if opened:
            lines.append(f"{time - window.start:.2f} CONN {a} {b} {state} {iface}".rstrip())
        elif state == "up":
            up[(a, b)] = iface
        else:
            up.pop((a, b), None)
    contact_path = out / "contacts.txt"
    contact_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    created = []
    for line in _open(messages):
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "C":
            time = float(fields[0])
            if window.start <= time < window.start + window.create:
                created.append(" ".join([f"{time - window.start:.2f}", *fields[1:]]))
    message_path = out / "messages.txt"
    message_path.write_text("\n".join(created) + "\n", encoding="utf-8")
    return contact_path, message_path


@dataclass(frozen=True, slots=True)
class Row:
    """One run's figures (one line of the CSV)."""

    window: int
    variant: str  # resumable | whole | one-mode
    policy: str
    seed: int
    created: int
    delivered: int
    delivery_prob: float
    latency_median_s: float  # over the files delivered (those delivered early are favoured)
    within_1h: float  # files delivered within 1 h of creation / created (no such bias)
    latency_mean_s: float
    chunk_deliveries: int
    wall_s: float


FIELDS = [f.name for f in dataclasses.fields(Row)]


def _latencies(run_dir: Path, *, attachment: bool) -> list[float]:
    """Creation to delivery of every message delivered (to its last chunk for a file)."""
    out = []
    with (run_dir / "messages.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            rec = json.loads(line)
            at = rec.get("attachment_at") if attachment else rec["delivered_at"]
            if at is not None:
                out.append(float(at) - float(rec["created_at"]))
    return out


def _timing(lat: Sequence[float], created: int) -> tuple[float, float, float]:
    """Median and mean latency of the delivered, fraction of created delivered within 1 h."""
    if not lat:
        return math.nan, math.nan, 0.0
    within = sum(1 for v in lat if v <= 3_600.0) / created if created else math.nan
    return statistics.median(lat), statistics.fmean(lat), within


def run_one(
    window: Window, variant: str, policy: str, traces: tuple[Path, Path], out: Path,
    overrides: Sequence[str] = (), scenario: Path = SCENARIO, one_scenario: Path = ONE_SCENARIO,
) -> Row:  # fmt: skip
    """Run one variant on one window; the seed is the window's index."""
    contacts, messages = traces
    params = [
        f'contacts.trace="{contacts}"', f'traffic.trace="{messages}"',
        f"run.duration_s={window.length}", f"run.seed={window.index}",
        f'routing.policy="{policy}"', "output.plots=false", "output.contact_log=false",
        *overrides,
    ]  # fmt: skip
    if variant == "one-mode":
        run = run_scenario(one_scenario, out, overrides=params, agent="core")
        stats = run.stats
        median, mean, within = _timing(_latencies(out, attachment=False), stats.created)
        return Row(
            window.index, variant, policy, window.index, stats.created, stats.delivered,
            stats.delivery_prob, median, within, mean, 0, round(run.wall_s, 1),
        )  # fmt: skip
    factory = ChunkedFactory(resume=variant == "resumable")
    run = run_scenario(scenario, out, overrides=params, agent=factory)
    extras: Mapping[str, object] = run.extras
    created = int(str(extras["attachments_created"]))
    delivered = int(str(extras["attachments_delivered"]))
    median, mean, within = _timing(_latencies(out, attachment=True), created)
    return Row(
        window.index, variant, policy, window.index, created, delivered,
        delivered / created if created else math.nan, median, within, mean,
        int(str(extras["chunk_deliveries"])), round(run.wall_s, 1),
    )  # fmt: skip


def study(
    wins: Sequence[Window], policy: str, out: Path, *, one_mode: bool = True,
    overrides: Sequence[str] = (), progress: Callable[[str], None] | None = None,
    data: Path = DATA, done: Sequence[Row] = (),
    checkpoint: Callable[[list[Row]], None] | None = None,
) -> list[Row]:  # fmt: skip
    """Every window both ways (then in ONE mode); rows already in ``done`` are not rerun."""
    rows = list(done)
    have = {(r.window, r.variant, r.policy) for r in rows}
    variants = [*VARIANTS, "one-mode"] if one_mode else list(VARIANTS)
    for window in wins:
        for variant in variants:
            if (window.index, variant, policy) in have:
                continue
            traces = cut_window(
                data / "contacts.txt.gz", data / "messages.txt.gz", window,
                out / f"window{window.index}",
            )  # fmt: skip
            run_dir = out / f"{policy}-{variant}-w{window.index}"
            row = run_one(window, variant, policy, traces, run_dir, overrides)
            rows.append(row)
            if checkpoint is not None:
                checkpoint(rows)
            if progress is not None:
                progress(
                    f"window {window.index} {variant}: {row.delivered}/{row.created} "
                    f"({row.delivery_prob:.3f}), median {row.latency_median_s:.0f} s, "
                    f"wall {row.wall_s:.0f} s"
                )
    return rows


def write_csv(rows: Sequence[Row], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        for row in rows:
            writer.writerow([getattr(row, f) for f in FIELDS])


def read_csv(path: Path) -> list[Row]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as handle:
        return [
            Row(
                int(rec["window"]),
                rec["variant"],
                rec["policy"],
                int(rec["seed"]),
                int(rec["created"]),
                int(rec["delivered"]),
                float(rec["delivery_prob"]),
                float(rec["latency_median_s"]),
                float(rec["within_1h"]),
                float(rec["latency_mean_s"]),
                int(rec["chunk_deliveries"]),
                float(rec["wall_s"]),
            )
            for rec in csv.DictReader(handle)
        ]


def _cell(values: Sequence[float], fmt: str) -> str:
    mean, half = mean_ci(values)
    if math.isnan(mean):
        return "–"
    text = fmt.format(mean)
    return text if math.isnan(half) else f"{text} ± {fmt.replace('+', '').format(half)}"


def paired(rows: Sequence[Row], key: str) -> list[float]:
    """Per window, resumable minus whole (windows where both ran)."""
    by = {(r.window, r.variant): float(getattr(r, key)) for r in rows}
    return [
        by[(w, "resumable")] - by[(w, "whole")]
        for w in sorted({r.window for r in rows})
        if (w, "resumable") in by and (w, "whole") in by
    ]


def table(rows: Sequence[Row]) -> str:
    """Markdown: per variant the mean over windows ± 95 % CI (Student's t), then the paired
    difference (resumable minus whole)."""
    lines = [
        "| variant | windows | created | delivered | delivery ratio | within 1 h "
        "| latency median / mean (s) | chunks stored |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    labels = {
        "resumable": "messenger, resumable chunks",
        "whole": "messenger, whole transfers",
        "one-mode": "ONE mode, core (reference)",
    }
    for variant, label in labels.items():
        mine = [r for r in rows if r.variant == variant]
        if not mine:
            continue
        chunked = [r.chunk_deliveries for r in mine]
        chunks = "–" if variant == "one-mode" else _cell(chunked, "{:.0f}")
        lines.append(
            f"| {label} | {len(mine)} | {_cell([r.created for r in mine], '{:.1f}')} "
            f"| {_cell([r.delivered for r in mine], '{:.1f}')} "
            f"| {_cell([r.delivery_prob for r in mine], '{:.3f}')} "
            f"| {_cell([r.within_1h for r in mine], '{:.3f}')} "
            f"| {_cell([r.latency_median_s for r in mine], '{:.0f}')} / "
            f"{_cell([r.latency_mean_s for r in mine], '{:.0f}')} | {chunks} |"
        )
    diff = paired(rows, "delivery_prob")
    if diff:
        med = [v for v in paired(rows, "latency_median_s") if not math.isnan(v)]
        mean = [v for v in paired(rows, "latency_mean_s") if not math.isnan(v)]
        lines.append(
            f"| **resumable − whole (paired)** | {len(diff)} | – "
            f"| {_cell(paired(rows, 'delivered'), '{:+.1f}')} | **{_cell(diff, '{:+.3f}')}** "
            f"| **{_cell(paired(rows, 'within_1h'), '{:+.3f}')}** "
            f"| {_cell(med, '{:+.0f}')} / {_cell(mean, '{:+.0f}')} "
            f"| {_cell(paired(rows, 'chunk_deliveries'), '{:+.0f}')} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[Row], path: Path, title: str) -> None:
    """Per policy (one row of panels): delivery ratio and median latency per window, one line
    per variant (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = sorted({r.policy for r in rows}, key=lambda p: (p != "spray-and-wait", p))
    fig, axes = plt.subplots(len(policies), 2, figsize=(10, 3.6 * len(policies)), squeeze=False)
    styles = {"resumable": "o-", "whole": "s--", "one-mode": "^:"}
    for line, policy in zip(axes, policies, strict=True):
        for variant, style in styles.items():
            mine = sorted(
                (r for r in rows if r.variant == variant and r.policy == policy),
                key=lambda r: r.window,
            )
            if not mine:
                continue
            xs = [r.window for r in mine]
            line[0].plot(xs, [r.delivery_prob for r in mine], style, label=variant)
            line[1].plot(xs, [r.latency_median_s for r in mine], style, label=variant)
        line[0].set_ylabel(f"{policy}\ndelivered / created")
        line[1].set_ylabel("median latency (s)")
        for ax in line:
            ax.set_xlabel("window (replication)")
            ax.set_xticks(sorted({r.window for r in rows}))
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
