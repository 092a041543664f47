"""Turn the ONE's reports of a default-scenario run into replayable traces (see README.md).

    python simulations/one-default/convert.py CONNECTIVITY CREATED OUT_DIR

CONNECTIVITY is a ``ConnectivityONEReport`` (``time CONN a b up|down``, no interface);
CREATED is a ``CreatedMessagesReport`` (``time id size from to ttl isResponse``). Writes
``OUT_DIR/contacts.txt.gz`` (``time CONN a b up|down iface``) and ``OUT_DIR/messages.txt.gz``
(``time C id from to size``), both gzip with a fixed header time, so reruns are byte-identical.

Interfaces: in the default scenario only the trams 120 and 121 carry a second interface
(``highspeedInterface``, 1,000 m) next to ``btInterface`` (10 m). A Bluetooth contact between
them needs them within 10 m, so it lies inside a high-speed contact: for the pair 120-121 the
first link up is the high-speed one, a second link up while it lasts is Bluetooth, and a "down"
while both are up closes the Bluetooth link. Every other pair is ``btInterface``.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

BT, HIGH = "btInterface", "highspeedInterface"
TRAMS_WITH_HIGHSPEED = (120, 121)


def contacts(lines: list[str]) -> list[str]:
    out, open_links = [], []  # interfaces up between 120 and 121, in order of opening
    for line in lines:
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        time, action, a, b, state = fields[:5]
        if action != "CONN" or state not in ("up", "down"):
            raise ValueError(f"not a ConnectivityONEReport line: {line!r}")
        iface = BT
        if (int(a), int(b)) == TRAMS_WITH_HIGHSPEED:
            if state == "up":
                iface = HIGH if not open_links else BT
                open_links.append(iface)
            else:
                iface = BT if BT in open_links else HIGH
                open_links.remove(iface)
        out.append(f"{time} CONN {a} {b} {state} {iface}\n")
    return out


def messages(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        time, msg_id, size, source, destination = fields[:5]
        out.append(f"{float(time):.1f} C {msg_id} {source} {destination} {size}\n")
    return out


def write_gz(path: Path, lines: list[str]) -> None:
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
        handle.write("".join(lines).encode())


def main() -> None:
    conn, created, out = (Path(a) for a in sys.argv[1:4])
    out.mkdir(parents=True, exist_ok=True)
    write_gz(out / "contacts.txt.gz", contacts(conn.read_text().splitlines()))
    write_gz(out / "messages.txt.gz", messages(created.read_text().splitlines()))


if __name__ == "__main__":
    main()
