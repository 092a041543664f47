"""Plots of one run (matplotlib, headless Agg backend): delivery over time, latency CDF, copies.

Imported lazily by :mod:`meshmsg.sim.api` so runs without plots never load matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use(): the backend must be chosen first
from matplotlib.figure import Figure


def write_plots(
    out_dir: Path,
    *,
    title: str,
    created: int,
    duration_s: float,
    delivery_times: list[float],
    latencies: list[float],
    copies: list[tuple[float, int]],
) -> list[Path]:
    """Write ``delivery.png``, ``latency_cdf.png`` and ``copies.png``; return their paths."""
    paths = [
        _delivery(out_dir / "delivery.png", title, created, duration_s, delivery_times),
        _latency(out_dir / "latency_cdf.png", title, created, latencies),
        _copies(out_dir / "copies.png", title, copies),
    ]
    return paths


def _delivery(path: Path, title: str, created: int, duration_s: float, times: list[float]) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    hours = [t / 3600.0 for t in sorted(times)]
    fraction = [(i + 1) / created for i in range(len(hours))] if created else []
    ax.step([0.0, *hours, duration_s / 3600.0], [0.0, *fraction, fraction[-1] if fraction else 0])
    ax.set(xlabel="simulated time (h)", ylabel="delivered / created", title=title, ylim=(0, 1))
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _latency(path: Path, title: str, created: int, latencies: list[float]) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    values = sorted(latencies)
    fraction = [(i + 1) / created for i in range(len(values))] if created else []
    ax.step([v / 60.0 for v in values], fraction, where="post")
    ax.set(xlabel="latency (min)", ylabel="P(delivered within)", title=title, ylim=(0, 1))
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _copies(path: Path, title: str, copies: list[tuple[float, int]]) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([t / 3600.0 for t, _ in copies], [c for _, c in copies])
    ax.set(xlabel="simulated time (h)", ylabel="message copies in buffers", title=title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
