"""Issue #13 with real daemons in network namespaces: a 50 MiB file from alice to carol through
the relay bobby while alice and carol are never online together arrives byte-identical, and
bobby's resident memory grows by less than 64 MiB while he carries it.

Needs root and ``ip netns`` (CI has both); skipped with the reason otherwise. Four hosts on one
bridge and trusted subnet (mDNS): alice and carol hold each other's code and have never met;
bobby and dave are relays who know nobody. The file goes up through the real ``meshmsg send --file``
and comes down through the real ``meshmsg save`` (first to ask for it: 50 MiB is over
``attach.auto_download_max_bytes``, so it waits, pending, until its user asks).
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshmsg.config import NodeConfig
from meshmsg.core.attach.format import CHUNK_CIPHERTEXT_BYTES
from meshmsg.net.chunkstore import ChunkStore
from tests.net.netns import netns_available
from tests.net.test_multihost_netns import Node, open_lab, wait_until

AVAILABLE, REASON = netns_available()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(not AVAILABLE, reason=REASON)]
FILE_BYTES = 50 << 20
RSS_GROWTH_MAX = 64 << 20  # the bound for the relay
TRANSFER_S = 120.0  # 50 MiB over one link on a loaded 2-core machine (measured: see docs)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    root = tmp_path_factory.mktemp("attach")
    with open_lab(("alice", "bobby", "carol", "dave"), root) as lab:
        # Codes exchanged by radio: never online together, never met.
        lab["alice"].cli("contact", "add", lab["carol"].code)
        lab["carol"].cli("contact", "add", lab["alice"].code)
        yield lab


def daemon_pid(node: Node) -> int:
    """The pid of the node's ``meshmsg run`` interpreter: ``ip netns exec`` execs its command,
    so it is the Popen's own pid; checked, since a wrapper that forks would make it a child."""
    pid = node.procs[-1].pid
    for _ in range(50):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"meshmsg" in argv and b"run" in argv:
            return pid
        time.sleep(0.1)  # between fork and exec
    raise AssertionError(f"{node.name}'s pid {pid} is not `meshmsg run`: {argv!r}")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class RssPeak:
    """Samples one process's VmRSS every 50 ms in a thread; ``peak`` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, rss_bytes(pid), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                return  # the daemon ended: the test reports it


def write_random_file(path: Path, size: int, seed: int) -> bytes:
    """``size`` seeded random bytes written 1 MiB at a time; returns their SHA-256."""
    rng, digest = random.Random(seed), hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(size >> 20):
            piece = rng.randbytes(1 << 20)
            digest.update(piece)
            out.write(piece)
    return digest.digest()


def sha256_of(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while piece := source.read(1 << 20):
            digest.update(piece)
    return digest.digest()


def chunks_held(node: Node, attachment_id: str) -> int:
    """Committed chunks in the node's slot file, read from its disk (a relay shows its carried
    attachments nowhere in its API). ``scan`` removes staging directories: only a sender has
    them, so this is for the relay only."""
    return len(ChunkStore(node.home / "chunks").scan().get(bytes.fromhex(attachment_id), []))


def attachment(node: Node, name: str) -> dict[str, Any]:
    [row] = [a for a in node.get("/attachments") if a["name"] == name]
    return dict(row)


def test_fifty_mebibytes_cross_a_relay_byte_identical_in_bounded_relay_memory(
    nodes: dict[str, Node], tmp_path: Path, record_property: Any
) -> None:
    alice, bobby, carol = nodes["alice"], nodes["bobby"], nodes["carol"]
    source = tmp_path / "survey.bin"
    expected = write_random_file(source, FILE_BYTES, seed=13)
    bobby.start()
    alice.start()
    wait_until("alice links to relay bobby", lambda: bobby.peer_id in alice.peers(), 30)
    before = rss_bytes(daemon_pid(bobby))

    with RssPeak(daemon_pid(bobby)) as rss:
        started = time.monotonic()
        alice.cli_inside("send", "carol", "--file", str(source), "the survey")
        sent = attachment(alice, "survey.bin")
        count, attachment_id = sent["chunks"], sent["attachment_id"]
        wait_until("every chunk reaches bobby's disk",
                   lambda: chunks_held(bobby, attachment_id) == count, TRANSFER_S)  # fmt: skip
        to_relay_s = time.monotonic() - started
        alice.stop()
        wait_until("bobby notices alice left", lambda: alice.peer_id not in bobby.peers())

        carol.start()  # alice is offline, and they never met: only bobby holds it
        pending = wait_until("carol learns of the file",
                             lambda: [a for a in carol.get("/attachments")
                                      if a["attachment_id"] == attachment_id])  # fmt: skip
        assert (pending[0]["role"], pending[0]["size"]) == ("pending", FILE_BYTES)
        started = time.monotonic()
        carol.cli_inside("save", attachment_id)  # pending: asks for it at this meeting
        wait_until("carol holds every chunk",
                   lambda: attachment(carol, "survey.bin")["complete"], TRANSFER_S)  # fmt: skip
        to_carol_s = time.monotonic() - started
    grown = rss.peak - before

    saved = tmp_path / "saved.bin"
    carol.cli_inside("save", attachment_id, "--out", str(saved))
    assert saved.stat().st_size == FILE_BYTES
    assert sha256_of(saved) == expected
    figures = {
        "chunks": count,
        "alice_to_bobby_s": round(to_relay_s, 1),
        "bobby_to_carol_s": round(to_carol_s, 1),
        "bobby_rss_before_mib": round(before / 2**20, 1),
        "bobby_rss_peak_mib": round(rss.peak / 2**20, 1),
    }
    for key, value in figures.items():
        record_property(key, value)
    print(f"50 MiB through a relay: {figures}")
    assert grown < RSS_GROWTH_MAX, f"bobby's RSS grew by {grown / 2**20:.1f} MiB"


def kill9(node: Node) -> None:
    """SIGKILL the node's daemon: no shutdown, no last commit."""
    proc = node.procs[-1]
    proc.kill()
    proc.wait(timeout=10)


def bytes_received(node: Node) -> int:
    return int(node.get("/status")["links"]["bytes_received"])


def test_a_relay_killed_mid_transfer_resumes_without_refetching_stored_chunks(
    nodes: dict[str, Node], tmp_path: Path, record_property: Any
) -> None:
    """The issue's second figure: kill -9 of the relay in the middle, restart; the chunks it had
    committed are not sent again (counted by the bytes the restarted relay receives)."""
    alice, bobby, carol = nodes["alice"], nodes["bobby"], nodes["carol"]
    for node in (carol, alice, bobby):  # a clean start, whatever the first test left running
        if node.running:
            node.stop()
    source = tmp_path / "map.bin"
    expected = write_random_file(source, FILE_BYTES, seed=14)
    bobby.start()
    alice.start()
    wait_until("alice links to relay bobby", lambda: bobby.peer_id in alice.peers(), 30)
    alice.cli_inside("send", "carol", "--file", str(source), "the map")
    sent = attachment(alice, "map.bin")
    count, attachment_id = sent["chunks"], sent["attachment_id"]
    third = count // 3
    wait_until("bobby is a third of the way",
               lambda: chunks_held(bobby, attachment_id) >= third, TRANSFER_S)  # fmt: skip
    kill9(bobby)
    stored = chunks_held(bobby, attachment_id)  # what survived the kill, on disk
    assert third <= stored < count, (stored, count)

    bobby.start()  # rebuilt from its database and its slot file
    wait_until("bobby completes the file after the restart",
               lambda: chunks_held(bobby, attachment_id) == count, TRANSFER_S)  # fmt: skip
    received = bytes_received(bobby)
    missing = count - stored
    # Each missing chunk once, with its proof (10 hashes here) and framing, under 512 bytes, plus
    # sync and the handshake (measured: ~180 KB in all); were the stored chunks fetched again,
    # this would be ``stored`` chunks more (20 MB and up). Slack: about 5 chunks, plus one
    # request window: when bobby restarts, he and alice may dial each other at once, and what
    # crosses the link then closed as a duplicate is counted but dropped (as in the next test;
    # 2026-12-07 this assertion failed 2 of 6 runs without it, with and without request
    # batching, by 0.94 and 0.99 MB over the ciphertext: one window of 16 chunks).
    window = NodeConfig().attach.requests_in_flight * (CHUNK_CIPHERTEXT_BYTES + 512)
    bound = missing * (CHUNK_CIPHERTEXT_BYTES + 512) + (256 << 10) + window
    assert missing * CHUNK_CIPHERTEXT_BYTES <= received, received
    assert received < bound, (received, missing)
    alice.stop()
    wait_until("bobby notices alice left", lambda: alice.peer_id not in bobby.peers())

    carol.start()
    wait_until("carol learns of the file",
               lambda: [a for a in carol.get("/attachments")
                        if a["attachment_id"] == attachment_id])  # fmt: skip
    carol.cli_inside("save", attachment_id)
    wait_until("carol holds every chunk",
               lambda: attachment(carol, "map.bin")["complete"], TRANSFER_S)  # fmt: skip
    saved = tmp_path / "saved.bin"
    carol.cli_inside("save", attachment_id, "--out", str(saved))
    assert sha256_of(saved) == expected
    for key, value in {
        "chunks": count,
        "stored_at_kill": stored,
        "received_after": received,
    }.items():
        record_property(key, value)
    print(f"kill -9 at {stored}/{count} chunks; {received} bytes received after the restart")


def test_a_second_relay_completes_what_the_first_could_not_hand_over(
    nodes: dict[str, Node], tmp_path: Path, record_property: Any
) -> None:
    """The rest of the issue's second figure: carol takes part of a file from bobby, bobby is
    killed, and dave, another relay, gives her the rest; no chunk crosses to her twice."""
    alice, bobby, carol, dave = (nodes[n] for n in ("alice", "bobby", "carol", "dave"))
    for node in (carol, alice, bobby, dave):
        if node.running:
            node.stop()
    source = tmp_path / "photos.bin"
    # Large enough, and the kill early enough, that chunks are still on their way when it
    # lands: between the poll that sees the mark and the kill, ~15 MiB cross (measured
    # 2026-12-07), and a 20 MiB file killed at a third crossed whole once the link got faster.
    size = 48 << 20
    expected = write_random_file(source, size, seed=15)
    for node in (bobby, dave, alice):
        node.start()
    wait_until("alice links to both relays",
               lambda: {bobby.peer_id, dave.peer_id} <= alice.peers(), 30)  # fmt: skip
    alice.cli_inside("send", "carol", "--file", str(source), "the photos")
    sent = attachment(alice, "photos.bin")
    count, attachment_id = sent["chunks"], sent["attachment_id"]
    for relay in (bobby, dave):
        wait_until(f"{relay.name} holds every chunk",
                   lambda r=relay: chunks_held(r, attachment_id) == count, TRANSFER_S)  # fmt: skip
    alice.stop()
    dave.stop()

    carol.start()  # only bobby is up
    wait_until("carol learns of the file",
               lambda: [a for a in carol.get("/attachments")
                        if a["attachment_id"] == attachment_id])  # fmt: skip
    carol.cli_inside("save", attachment_id)
    eighth = count // 8
    wait_until("carol is an eighth of the way",
               lambda: attachment(carol, "photos.bin")["held"] >= eighth, TRANSFER_S)  # fmt: skip
    kill9(bobby)
    from_bobby = attachment(carol, "photos.bin")["held"]
    assert from_bobby < count, "bobby handed over everything before the kill"
    dave.start()
    wait_until("dave completes the file for carol",
               lambda: attachment(carol, "photos.bin")["complete"], TRANSFER_S)  # fmt: skip
    received = bytes_received(carol)  # everything carol took since her start, both relays
    # As above: each chunk once (measured ~95 KB over the ciphertext), slack about 4 chunks,
    # plus one request window: carol and dave dial each other at once, and what crosses the
    # link then closed as a duplicate is counted but dropped (0.6 MB over the ciphertext with a
    # window of 8, 0.9-1.1 MB with 16, measured 2026-12-07); a chunk fetched twice would show.
    window = NodeConfig().attach.requests_in_flight * (CHUNK_CIPHERTEXT_BYTES + 512)
    bound = count * (CHUNK_CIPHERTEXT_BYTES + 512) + (256 << 10) + window
    assert received < bound, (received, count)
    saved = tmp_path / "saved.bin"
    carol.cli_inside("save", attachment_id, "--out", str(saved))
    assert sha256_of(saved) == expected
    record_property("from_bobby", from_bobby)
    record_property("carol_received", received)
    print(f"{from_bobby}/{count} chunks from bobby, the rest from dave; carol received {received}")
