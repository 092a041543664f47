"""Relay-store memory in a real daemon (issue #13): ``meshmsg run`` holding 100,000 carried
1 KiB envelopes, its VmRSS and VmHWM read from ``/proc/PID/status``.

How the envelopes get there: ``meshmsg init`` makes the data directory, then this process
opens its database with the real storage API (``Storage.apply``, the keystore unlocked with the
passphrase as ``meshmsg run`` does) and writes one ``ENVELOPE`` record per envelope, the record
the node itself writes when it takes custody of carried mail (``codec.envelope_record``). Each
envelope is a real sealed 1 KiB envelope (``seal_envelope``, 900 bytes inside, random key and
tag), and each item is first admitted into a ``RelayStore`` with the daemon's own store limits,
so the set fits every quota the daemon enforces (tiers, strangers, per source) and would have
been accepted over links; a third each are from verified contacts, contacts and strangers,
each copy handed over by one of 50 neighbours (as the in-process ``mem-store`` row has it).
Then ``meshmsg run`` starts on the directory, restores them as after any restart, and once its
API answers (and ``/status`` counts every envelope) its memory is read, after ``settle_s``.

Faster than a peer transferring 100,000 envelopes over a link, and the memory measured is the
same: a daemon that took them over links and restarted holds exactly these records. Not
measured: the transient state of the sync that brought them (bounded per link elsewhere).

Run: ``python -m tests.bench.daemonmem --dir DIR -n 100000``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from meshmsg.app.datadir import Settings, unlock
from meshmsg.bench.daemons import PASSPHRASE, make_node, running_daemon
from meshmsg.core.codec import envelope_record
from meshmsg.core.effects import Persist
from meshmsg.core.envelope import envelope_id, expiry_from, parse_envelope, seal_envelope
from meshmsg.core.store import RelayStore, StoreItem, Tier
from meshmsg.net.storage import DataDir, Storage
from meshmsg.sysrng import SystemRng

ENVELOPE_INNER_BYTES = 900  # a short text with its headers: the 1 KiB envelope bucket
_PER_COMMIT = 5_000  # records per transaction while filling (the fill is not measured)
_SOURCES = 50  # neighbours the copies came from


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of ``pid`` in bytes, from ``/proc/PID/status``."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) * 1024
    return found


def fill_relay_store(home: Path, count: int) -> int:
    """Write ``count`` carried 1 KiB envelopes into the data directory's database (see the
    module's docstring); returns the bytes of envelopes written."""
    data_dir = DataDir(home)
    settings = Settings.load(data_dir)
    unlocked = unlock(data_dir, settings, lambda: PASSPHRASE)
    config = settings.node_config()
    rng, now = SystemRng(), time.time()
    admitted = RelayStore(config.store)
    sources = [os.urandom(16) for _ in range(_SOURCES)]
    tiers = (Tier.VERIFIED, Tier.CONTACT, Tier.STRANGER)
    expiry = expiry_from(now, config.message.max_ttl_s / 2)
    total = 0
    with Storage.open(data_dir.db_path, unlocked.db_key, config=config.storage) as storage:
        for start in range(0, count, _PER_COMMIT):
            puts = []
            for k in range(start, min(count, start + _PER_COMMIT)):
                envelope = seal_envelope(
                    key=rng.randbytes(32), tag=rng.randbytes(16), expiry_at=expiry,
                    inner=rng.randbytes(ENVELOPE_INNER_BYTES), rng=rng, limits=config.message,
                )  # fmt: skip
                tier = tiers[k % 3]
                item = StoreItem(
                    envelope_id=envelope_id(envelope), envelope=envelope,
                    tag=parse_envelope(envelope).tag, expiry_at=float(expiry), copies=4,
                    hops=1 + k % 3, tier=tier,
                    source=sources[k % _SOURCES], received_at=now - 3_600 + k * 0.01,
                )  # fmt: skip
                if admitted.admit(item, now).evicted or item.envelope_id not in admitted:
                    raise RuntimeError("the daemon's store limits refuse this many envelopes")
                puts.append(envelope_record(item))
                admitted.body_durable(item.envelope_id)
                total += len(envelope)
            storage.apply(Persist(token=start, puts=tuple(puts), deletes=()))
    return total


def measure_daemon_store_memory(
    path: str | os.PathLike[str], count: int, *, settle_s: float = 2.0, keep: bool = False
) -> dict[str, float]:
    """VmRSS/VmHWM of ``meshmsg run`` holding ``count`` carried 1 KiB envelopes, next to the
    same daemon with an empty store, in bytes (``keep``: leave the data directories)."""
    root = tempfile.mkdtemp(prefix="meshmsg-bench-daemonmem-", dir=path)
    try:
        empty, full = make_node(Path(root), "empty"), make_node(Path(root), "relay")
        started = time.monotonic()
        envelope_bytes = fill_relay_store(full, count)
        fill_s = time.monotonic() - started
        figures: dict[str, float] = {"envelope_bytes": envelope_bytes, "fill_s": fill_s}
        for name, home in (("empty", empty), ("full", full)):
            started = time.monotonic()
            with running_daemon(home) as api:
                up_s = time.monotonic() - started
                held = api.request("GET", "/status")["relay"]
                time.sleep(settle_s)
                memory = proc_memory(api.pid)
            figures[f"{name}_rss_bytes"] = memory["VmRSS"]
            figures[f"{name}_hwm_bytes"] = memory["VmHWM"]
            figures[f"{name}_start_s"] = up_s
            figures[f"{name}_relay"] = float(_count_of(held))
        if figures["full_relay"] != count:
            raise RuntimeError(f"the daemon holds {figures['full_relay']:.0f} of {count} envelopes")
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return figures


def _count_of(relay_view: object) -> int:
    """The number of carried envelopes in ``/status``'s ``relay`` view."""
    value = relay_view.get("carried_for_others") if isinstance(relay_view, dict) else None
    if not isinstance(value, int):
        raise RuntimeError(f"no envelope count in /status's relay view: {relay_view!r}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.daemonmem")
    parser.add_argument("--dir", default=".", help="where the data directories go (a disk)")
    parser.add_argument("-n", type=int, default=100_000, help="carried envelopes")
    parser.add_argument("--keep", action="store_true", help="leave the data directories")
    args = parser.parse_args(argv)
    figures = measure_daemon_store_memory(args.dir, args.n, keep=args.keep)
    print(json.dumps(figures, indent=1))
    mib = 1 << 20
    print(
        f"{args.n:,} carried 1 KiB envelopes: VmRSS {figures['full_rss_bytes'] / mib:.1f} MiB, "
        f"VmHWM {figures['full_hwm_bytes'] / mib:.1f} MiB (empty daemon: VmRSS "
        f"{figures['empty_rss_bytes'] / mib:.1f} MiB, VmHWM {figures['empty_hwm_bytes'] / mib:.1f}"
        f" MiB); start {figures['full_start_s']:.1f} s vs {figures['empty_start_s']:.1f} s"
    )


if __name__ == "__main__":
    main()
