"""Crash-harness writer: commits random ``Persist`` effects until it is killed.

Run as a subprocess by ``test_storage_crash.py``::

    python crash_writer.py DB --key HEX --seed N --first-token T [--durable | --no-durable]

It starts from what the database holds (as the driver does after a crash), then loops. For each
transaction it prints, flushing after each line:

* ``INTENT <token> <json>`` before ``apply``: the puts ``[kind, key hex, size]`` and deletes
  ``[kind, key hex]`` it is about to commit (values are derived from ``(token, kind, key,
  size)`` by :func:`value_for`, so the line stays short);
* ``ACK <token> <digest>`` after ``apply`` returned: the digest of the whole committed state,
  as :meth:`Model.digest` computes it.

The ACK plays the custody acknowledgement: it is sent only after the commit. A killed writer
has therefore committed every ACKed transaction, and maybe the one INTENT after the last ACK.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from collections.abc import Mapping

from meshmsg.core.driver import apply_persist
from meshmsg.core.effects import Persist, RecordKind, StoredRecord
from meshmsg.net.storage import Storage

State = dict[tuple[RecordKind, bytes], bytes]
# Sizes from a small META row to envelopes that span several overflow pages (4 KiB pages), so
# one transaction writes many pages and a kill can land between them.
SIZES = (16, 200, 1_000, 4_096, 17_000)
TARGET_ROWS = 200  # deletes speed up above this, so a long chain stays small and fast
MAX_RUN_S = 60.0  # a writer whose test died stops by itself


def value_for(token: int, kind: RecordKind, key: bytes, size: int) -> bytes:
    """The value a put writes: unique to its transaction, so a stale value is detected."""
    seed = token.to_bytes(8, "big") + bytes([kind]) + key
    return hashlib.shake_256(seed).digest(size)


def _entry_hash(kind: RecordKind, key: bytes, value: bytes) -> int:
    data = bytes([kind]) + len(key).to_bytes(4, "big") + key + value
    return int.from_bytes(hashlib.sha256(data).digest(), "big")


class Model:
    """The committed state as the writer believes it, with a digest updated per change.

    The digest is the sum of per-entry hashes mod 2**256, so it costs O(changes) per transaction:
    the writer must not spend its time hashing the whole state between commit and ACK, or most
    kills would land there instead of inside the commit.
    """

    def __init__(self, state: Mapping[tuple[RecordKind, bytes], bytes] | None = None) -> None:
        self.state: State = {}
        self._hashes: dict[tuple[RecordKind, bytes], int] = {}
        self._sum = 0
        for (kind, key), value in (state or {}).items():
            self.put(kind, key, value)

    def copy(self) -> Model:
        twin = Model()
        twin.state, twin._hashes, twin._sum = dict(self.state), dict(self._hashes), self._sum
        return twin

    def digest(self) -> str:
        return f"{self._sum:064x}"

    def apply(self, persist: Persist) -> None:
        """Puts in order, then deletes, as ``Storage.apply`` does (``core.driver``)."""
        apply_persist(persist, self)

    def put(self, kind: RecordKind, key: bytes, value: bytes) -> None:
        self.delete(kind, key)
        entry = _entry_hash(kind, key, value)
        self.state[(kind, key)], self._hashes[(kind, key)] = value, entry
        self._sum = (self._sum + entry) % (1 << 256)

    def delete(self, kind: RecordKind, key: bytes) -> None:
        if (kind, key) in self.state:
            del self.state[(kind, key)]
            self._sum = (self._sum - self._hashes.pop((kind, key))) % (1 << 256)


def random_intent(rng: random.Random, state: State) -> dict[str, list[list[int | str]]]:
    """A few puts (new keys or overwrites) and deletes of earlier keys, never the same key twice."""
    live = sorted(state)
    chosen: set[tuple[RecordKind, bytes]] = set()
    puts: list[list[int | str]] = []
    for _ in range(rng.randint(1, 6)):
        if live and rng.random() < 0.3:
            kind, key = rng.choice(live)
        else:
            kind, key = rng.choice(list(RecordKind)), rng.randbytes(rng.randint(1, 16))
        if (kind, key) not in chosen:
            chosen.add((kind, key))
            puts.append([int(kind), key.hex(), rng.choice(SIZES)])
    deletable = [k for k in live if k not in chosen]
    # Delete more once the state is large, so a long chain of runs stays about this size.
    wanted = rng.randint(0, 3) + (2 if len(live) > TARGET_ROWS else 0)
    deletes = rng.sample(deletable, min(len(deletable), wanted))
    return {"puts": puts, "deletes": [[int(kind), key.hex()] for kind, key in deletes]}


def _record(token: int, kind: int | str, key_hex: int | str, size: int | str) -> StoredRecord:
    record_kind, key = RecordKind(int(kind)), bytes.fromhex(str(key_hex))
    return StoredRecord(
        kind=record_kind, key=key, value=value_for(token, record_kind, key, int(size))
    )


def to_persist(token: int, intent: Mapping[str, list[list[int | str]]]) -> Persist:
    """The ``Persist`` an INTENT line stands for (the test rebuilds it the same way)."""
    puts = tuple(_record(token, *put) for put in intent["puts"])
    deletes = tuple(
        (RecordKind(int(kind)), bytes.fromhex(str(key_hex))) for kind, key_hex in intent["deletes"]
    )
    return Persist(token=token, puts=puts, deletes=deletes)


def run(path: str, key: bytes, seed: int, first_token: int, durable: bool) -> None:
    rng = random.Random(seed)
    with Storage.open(path, key, durable=durable) as storage:
        model = Model({(r.kind, r.key): r.value for r in storage.load_all()})
        print(f"READY {model.digest()}", flush=True)
        deadline = time.monotonic() + MAX_RUN_S
        token = first_token
        while time.monotonic() < deadline:
            intent = random_intent(rng, model.state)
            print(f"INTENT {token} {json.dumps(intent, separators=(',', ':'))}", flush=True)
            persist = to_persist(token, intent)
            storage.apply(persist)
            model.apply(persist)
            print(f"ACK {token} {model.digest()}", flush=True)
            token += 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("db")
    parser.add_argument("--key", required=True, help="database key, hex")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--first-token", type=int, default=1)
    parser.add_argument("--durable", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    run(args.db, bytes.fromhex(args.key), args.seed, args.first_token, args.durable)


if __name__ == "__main__":
    main()
