"""How fast the node can take custody: durable submits per second, against plain SQLite.

A relay acknowledges an envelope only after :meth:`Storage.apply` committed it with
``synchronous=FULL``, so the durable commit rate bounds how fast it can accept mail. This
measures, in one run and on one disk:

* ``durable_submits_per_s``: one ``Persist`` with one envelope-sized record per transaction,
  through :class:`~meshmsg.net.storage.Storage` (encryption, keyed row ids, FULL commit);
* ``plain_wal_commits_per_s``: a bare SQLite WAL ``INSERT`` + ``COMMIT`` loop with the same
  value size and ``synchronous=FULL``: the floor set by the disk's fsync;
* ``ratio``: the first over the second (1.0 would mean our layers cost nothing);
* ``batched_records_per_s``: ``batch`` puts per transaction, since the driver can group the
  writes that arrive together into one commit;
* ``nondurable_submits_per_s``: the single-record loop with ``synchronous=NORMAL``, to show how
  much of the cost is the fsync.

Run: ``python -m meshmsg.bench.storage --dir DIR -n 2000`` (DIR must be on the disk to measure;
the files are removed afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from meshmsg.core.effects import Persist, RecordKind, StoredRecord
from meshmsg.net.storage import Storage, new_db_key

ENVELOPE_BYTES = 1_024  # the second padding bucket: a short text message with its headers
BATCH = 64


def _records(n: int, value_bytes: int) -> list[StoredRecord]:
    return [
        StoredRecord(kind=RecordKind.ENVELOPE, key=os.urandom(16), value=os.urandom(value_bytes))
        for _ in range(n)
    ]


def _storage_rate(db: Path, persists: list[Persist], *, durable: bool) -> float:
    with Storage.open(db, new_db_key(), durable=durable) as storage:
        start = time.perf_counter()
        for persist in persists:
            storage.apply(persist)
        elapsed = time.perf_counter() - start
    return len(persists) / elapsed


def _plain_rate(db: Path, values: list[bytes]) -> float:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE t (id BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
        start = time.perf_counter()
        for value in values:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (?, ?)", (os.urandom(16), value))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    return len(values) / elapsed


def measure_durable_submits(
    path: str | os.PathLike[str],
    n: int,
    *,
    value_bytes: int = ENVELOPE_BYTES,
    batch: int = BATCH,
) -> dict[str, float]:
    """Measure commit rates in a temporary directory under ``path`` (see the module docstring).

    Returns:
        ``durable_submits_per_s``, ``plain_wal_commits_per_s``, ``ratio``,
        ``batched_records_per_s``, ``batched_commits_per_s``, ``nondurable_submits_per_s``,
        and the parameters ``n``, ``value_bytes``, ``batch``.
    """
    records = _records(n, value_bytes)
    singles = [Persist(token=i, puts=(r,)) for i, r in enumerate(records)]
    batches = [Persist(token=i, puts=tuple(records[i : i + batch])) for i in range(0, n, batch)]
    with tempfile.TemporaryDirectory(dir=path, prefix="bench-storage-") as tmp:
        root = Path(tmp)
        plain = _plain_rate(root / "plain.db", [r.value for r in records])
        durable = _storage_rate(root / "durable.db", singles, durable=True)
        batched = _storage_rate(root / "batched.db", batches, durable=True)
        nondurable = _storage_rate(root / "normal.db", singles, durable=False)
    return {
        "durable_submits_per_s": durable,
        "plain_wal_commits_per_s": plain,
        "ratio": durable / plain,
        "batched_records_per_s": batched * n / len(batches),
        "batched_commits_per_s": batched,
        "nondurable_submits_per_s": nondurable,
        "n": float(n),
        "value_bytes": float(value_bytes),
        "batch": float(batch),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Durable submit rate of the node's storage.")
    parser.add_argument("--dir", default=".", help="a directory on the disk to measure")
    parser.add_argument("-n", type=int, default=2_000, help="records per measurement")
    parser.add_argument("--value-bytes", type=int, default=ENVELOPE_BYTES)
    parser.add_argument("--batch", type=int, default=BATCH)
    args = parser.parse_args(argv)
    result = measure_durable_submits(
        args.dir, args.n, value_bytes=args.value_bytes, batch=args.batch
    )
    print(json.dumps({k: round(v, 3) for k, v in result.items()}, indent=2))


if __name__ == "__main__":
    main()
