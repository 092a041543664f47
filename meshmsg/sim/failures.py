"""What went wrong in a run, said out loud: grouped by reason, with counts and an example.

A run can "succeed" and still mean nothing: the core refused every message (too large, not a
contact), the engine recorded invariant violations in a non-strict run, or some nodes never met
anyone. The report's numbers alone (``delivery_prob 0.0000``) do not say why, so a run collects
these as :class:`Failure` s: ``meshmsg sim run`` prints them, ``--strict`` turns them into a
non-zero exit, and ``run.json`` lists them under ``failures``; ``meshmsg sim sweep`` counts the
runs that have any (:func:`failed_runs`).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from meshmsg.sim.report import Recorder

# Peer ids and other hex in a refusal differ per message; the reason does not.
_HEX = re.compile(r"\b[0-9a-f]{8,}\b")
_VIOLATION_TIME = re.compile(r"^t=[^:]*: ")
_NUMBER = re.compile(r"\d+(\.\d+)?")
_EXAMPLE_NODES = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """``count`` (``of`` a total, when there is one) ``what``, for one ``reason``."""

    what: str
    count: int
    of: int | None
    reason: str
    example: str

    def text(self) -> str:
        """One line, e.g. ``1,463 of 1,463 messages not created: message body over 32768 bytes
        (e.g. M1, node 3 to 17 at t=25.0 s, 618,834 bytes)``."""
        total = "" if self.of is None else f" of {self.of:,}"
        return f"{self.count:,}{total} {self.what}: {self.reason} (e.g. {self.example})"

    def as_dict(self) -> dict[str, object]:
        return {
            "what": self.what,
            "count": self.count,
            "of": self.of,
            "reason": self.reason,
            "example": self.example,
            "text": self.text(),
        }


def find_failures(
    recorder: Recorder, *, nodes: int, violations: Sequence[str]
) -> tuple[Failure, ...]:
    """Messages not created, invariant violations and nodes never in contact, largest first."""
    return (
        *_not_created(recorder),
        *_grouped(
            "invariant violations",
            None,
            ((_NUMBER.sub("#", _VIOLATION_TIME.sub("", v)), v) for v in violations),
        ),
        *_never_in_contact(recorder.in_contact, nodes),
    )


def _not_created(recorder: Recorder) -> tuple[Failure, ...]:
    created = len(recorder.records)
    items = (
        (
            _HEX.sub("…", r.not_created),
            f"{r.id}, node {r.source} to {r.destination} at t={r.created_at:,.1f} s, "
            f"{r.size:,} bytes",
        )
        for r in recorder.records.values()
        if r.not_created is not None
    )
    return _grouped("messages not created", created, items)


def _grouped(what: str, of: int | None, items: Iterable[tuple[str, str]]) -> tuple[Failure, ...]:
    """One :class:`Failure` per distinct reason (``items``: reason, example), largest first."""
    counts: dict[str, int] = {}
    examples: dict[str, str] = {}
    for reason, example in items:
        counts[reason] = counts.get(reason, 0) + 1
        examples.setdefault(reason, example)
    ranked = sorted(counts, key=lambda r: -counts[r])  # stable: first seen first among ties
    return tuple(
        Failure(what=what, count=counts[r], of=of, reason=r, example=examples[r]) for r in ranked
    )


def _never_in_contact(in_contact: set[int], nodes: int) -> tuple[Failure, ...]:
    missing = [a for a in range(nodes) if a not in in_contact]
    if not missing:
        return ()
    shown = ", ".join(str(a) for a in missing[:_EXAMPLE_NODES])
    more = ", ..." if len(missing) > _EXAMPLE_NODES else ""
    return (
        Failure(
            what="nodes never linked",
            count=len(missing),
            of=nodes,
            reason="no contact with any other node during the run",
            example=f"node{'s' if len(missing) > 1 else ''} {shown}{more}",
        ),
    )


def failed_runs(runs_csv: Path) -> tuple[int, list[tuple[str, list[str]]]]:
    """A sweep's run count (its ``runs.csv``) and the runs whose ``run.json`` lists failures,
    each as (folder, failure texts)."""
    with runs_csv.open(newline="", encoding="utf-8") as handle:
        folders = [row["folder"] for row in csv.DictReader(handle)]
    out = []
    for folder in folders:
        data = json.loads((Path(folder) / "run.json").read_text(encoding="utf-8"))
        texts = [str(f["text"]) for f in data.get("failures", [])]
        if texts:
            out.append((folder, texts))
    return len(folders), out
