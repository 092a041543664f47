"""A relay node in its own process, for the attachment kill -9 test (test_attach_kill9.py).

    python attach_relay_node.py DATA_DIR --port P

``open_mesh_node`` on the data directory, as ``meshmsg run`` has it (keystore unlocked with
``MESHMSG_PASSPHRASE``, SQLite with ``synchronous=FULL``, chunks in ``DATA_DIR/chunks``). Each
line is printed, and flushed, only after the fact it reports:

* ``READY <port>``: listening;
* ``WROTE <attachment id> <index>``: a chunk is durably in the chunk store (printed after the
  write returned, so a chunk written just before a kill may have no line: never the reverse).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import trio

from meshmsg.app import mesh
from meshmsg.app.datadir import PASSPHRASE_ENV, Settings, unlock
from meshmsg.net import chunkstore
from meshmsg.net.storage import DataDir

MAX_RUN_S = 120.0  # a relay whose test died stops by itself


class ReportingStore(chunkstore.ChunkStore):
    def write_slots(
        self,
        chunks: Sequence[tuple[bytes, int, tuple[bytes, ...], bytes]],
        commit: Sequence[tuple[bytes, int]],
    ) -> None:
        super().write_slots(chunks, commit)
        for attachment_id, index in commit:  # durable and committed: what a restart finds
            print(f"WROTE {attachment_id.hex()} {index}", flush=True)


async def run(args: argparse.Namespace) -> None:
    data_dir = DataDir(Path(args.data_dir))
    settings = Settings(listen_host="127.0.0.1", listen_port=args.port, api_port=0)
    passphrase = os.environ[PASSPHRASE_ENV]
    unlocked = unlock(data_dir, settings, lambda: passphrase)
    with trio.move_on_after(MAX_RUN_S):
        async with mesh.open_mesh_node(data_dir, settings, unlocked, mdns=False) as handle:
            print(f"READY {handle.runner.port}", flush=True)
            await trio.sleep_forever()


def main() -> None:
    mesh.ChunkStore = ReportingStore  # type: ignore[misc]  # the store open_mesh_node builds
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("--port", type=int, required=True)
    trio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()
