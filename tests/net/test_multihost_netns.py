"""Real daemons on five hosts of a bridged lab: discovery, links, relay custody, and outsiders.

Needs root and ``ip netns`` (CI has both); skipped with the reason otherwise. The lab
(``tests/net/netns.py``) is one bridge with four hosts on the trusted subnet and one outsider on
another subnet of the same bridge (same link, so it hears the multicast):

=========  ====  ==============================================================================
node       host  role
=========  ====  ==============================================================================
alice      h1    sender
bobby      h2    relay
carol      h3    recipient
mallory    h4    on the trusted subnet, alice's contact, but with the **wrong site key**
oscar      o1    outsider: the right site key, another subnet (its trusted network is its own)
=========  ====  ==============================================================================

Each node is what a user runs: ``meshmsg init`` (fast Argon2id, test only), ``config.toml``
(listen ``0.0.0.0:7447``, ``trusted_networks`` = its subnet, the site key, API port 7448),
contact codes from ``meshmsg id``, ``meshmsg contact add`` (these offline commands through
click's runner in this process, as tests/test_cli.py does: 18 interpreter start-ups would cost
more than the rest of the file), then ``meshmsg run`` as a process inside its namespace. Each
daemon's local API listens on *its namespace's* 127.0.0.1; the test calls it from a worker
thread that has joined that namespace (``setns``), through the CLI's own ``DaemonClient``; one
send goes through a real ``meshmsg send`` process inside the namespace.

Scenarios: (a) mDNS discovery → Noise XXpsk0 links → pairing → a message and its receipt;
(b) carol offline, alice's message goes to bobby (RELAYED), alice goes offline, carol comes back
and gets it from bobby, carol's receipt goes to bobby, carol goes offline, alice comes back and
gets the receipt from bobby (DELIVERED): alice and carol are never online together;
(c) mallory and oscar never link with anyone and learn no identity. A packet capture on
mallory's and oscar's ``eth0`` shows it on the wire: on every TCP connection between mallory and
an insider the responder sent **zero bytes** (the handshake stops at message 1, before message
2 carries the responder's static key), the initiator sent at most message 1 (50 bytes); oscar
exchanged no TCP at all; and no name, peer id, fingerprint or public key of an insider (nor the
machine's host name) appears in any byte either of them received.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner

from meshmsg.app.cli import cli
from meshmsg.app.client import DaemonClient
from meshmsg.core.identity import decode_contact_code, fingerprint
from meshmsg.errors import MeshError
from meshmsg.net.storage import DataDir
from tests.net.netns import Host, netns_available, netns_hosts, netns_hosts_with_outsider

AVAILABLE, REASON = netns_available()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(not AVAILABLE, reason=REASON)]

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "multi-host test passphrase"
PEER_PORT, API_PORT = 7447, 7448
CLI_TIMEOUT_S = 60.0  # one CLI process on a loaded 2-core machine
START_S = 30.0  # a daemon is up and answering its API
STEP_S = 20.0  # any other wait: discovery, pairing, a message, a receipt (batched for 2 s)
MESSAGE1_BYTES = 2 + 48  # frame header + Noise XXpsk0 message 1 (psk, e: 32-byte key + tag)
CLONE_NEWNET = 0x4000_0000
ETH_P_ALL = 0x0003
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def enter_netns(name: str) -> None:
    """Move the calling thread (only it) into network namespace ``name``."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def cli_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200", MESHMSG_KDF_FAST="1")
    env["MESHMSG_PASSPHRASE"] = PASSPHRASE
    env.pop("MESHMSG_HOME", None)
    return env


def lab_nodes(
    names: Sequence[str],
    hosts: Sequence[Host],
    root: Path,
    site_key: str,
    *,
    prompt_receipts: bool = False,
) -> dict[str, Node]:
    """One Node per host on the first host's trusted subnet, each set up through the CLI
    (``init``, its ``config.toml``), with its contact code and peer id read back from ``id``."""
    net = hosts[0].cidr
    nodes = {name: Node(name, host, root / name, site_key, net)
             for name, host in zip(names, hosts, strict=True)}  # fmt: skip
    for node in nodes.values():
        node.cli("init", "--name", node.name)
        node.write_config(prompt_receipts=prompt_receipts)
        out = node.cli("id", "--no-qr")
        node.code = next(line for line in out.splitlines() if line.startswith("MM1:"))
        match = re.search(r"Peer id:\s+([0-9a-f]{32})", out)
        assert match is not None, out
        node.peer_id = match.group(1)
    return nodes


@contextlib.contextmanager
def open_lab(
    names: Sequence[str], root: Path, *, prompt_receipts: bool = False
) -> Iterator[dict[str, Node]]:
    """Hosts in network namespaces with one set-up Node each (:func:`lab_nodes`, one fresh
    site key); every daemon is stopped and the namespaces removed on the way out."""
    with netns_hosts(len(names)) as hosts:
        lab = lab_nodes(names, hosts, root, secrets.token_hex(32), prompt_receipts=prompt_receipts)
        try:
            yield lab
        finally:
            for node in lab.values():
                node.close()


def wait_until(what: str, check: Callable[[], T | None], timeout: float = STEP_S) -> T:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except (MeshError, OSError) as exc:  # the daemon is (re)starting: try again
            last = exc
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last!r})")
        time.sleep(0.1)


# --- a node: data dir, daemon processes, API from inside its namespace ---------------------------


@dataclass(eq=False)
class Node:
    name: str
    host: Host
    home: Path
    site_key: str
    trusted: str
    code: str = ""
    peer_id: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    pool: ThreadPoolExecutor | None = None

    @property
    def address(self) -> str:
        return f"{self.host.ip}:{PEER_PORT}"

    @property
    def short(self) -> str:
        return self.peer_id[:8]

    def cli(self, *args: str) -> str:
        """``meshmsg --data-dir HOME ARGS`` through the CLI's own code (click's runner, in this
        process: no interpreter start-up), for the offline set-up commands."""
        result = CliRunner().invoke(cli, ["--data-dir", str(self.home), *args], env=cli_env(),
                                    catch_exceptions=False)  # fmt: skip
        assert result.exit_code == 0, f"{self.name}: meshmsg {' '.join(args)}:\n{result.output}"
        return result.output

    def cli_inside(self, *args: str) -> str:
        """Run ``meshmsg`` as a process inside the node's host, where its daemon's API is."""
        cmd = self.host.command(sys.executable, "-m", "meshmsg", "--data-dir", str(self.home),
                                *args)  # fmt: skip
        done = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True,
                              timeout=CLI_TIMEOUT_S, check=False)  # fmt: skip
        assert done.returncode == 0, f"{self.name}: meshmsg {' '.join(args)}:\n{done.stderr}"
        return done.stdout

    def write_config(self, *, prompt_receipts: bool = False) -> None:
        """``prompt_receipts``: a relayed message's receipt leaves after 2 s, even to its
        relay (the default waits 30-300 s and avoids that relay 10 min, issue #11), for tests
        that follow a receipt back through the relay within seconds."""
        (self.home / "config.toml").write_text(
            f'name = "{self.name}"\n'
            "[network]\n"
            f'listen = "0.0.0.0:{PEER_PORT}"\n'
            f'trusted_networks = ["{self.trusted}"]\n'
            f'site_key = "{self.site_key}"\n'
            "[api]\n"
            f"port = {API_PORT}\n"
            "[privacy]\n"
            f"prompt_receipts = {'true' if prompt_receipts else 'false'}\n"
        )

    @property
    def running(self) -> bool:
        return bool(self.procs) and self.procs[-1].poll() is None

    def launch(self) -> None:
        """Start ``meshmsg run`` inside the host (wait for it with :meth:`wait_up`)."""
        assert not self.running
        log = self.home.parent / f"{self.name}-{len(self.logs)}.log"
        cmd = self.host.command(sys.executable, "-m", "meshmsg", "--data-dir", str(self.home),
                                "run")  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, env=cli_env(), stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        self.logs.append(log)

    def wait_up(self) -> None:
        proc = self.procs[-1]

        def up() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"{self.name}'s daemon exited {proc.returncode}:\n{self.log(-1)}")
            return bool(self.get("/status"))

        wait_until(f"{self.name}'s daemon answers", up, START_S)

    def start(self) -> None:
        self.launch()
        self.wait_up()

    def stop(self) -> None:
        proc = self.procs[-1]
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STEP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"{self.name}'s daemon did not stop on SIGTERM:\n{self.log(-1)}")
        assert code == 0, f"{self.name}'s daemon exited {code}:\n{self.log(-1)}"

    def log(self, incarnation: int | None = None) -> str:
        logs = self.logs if incarnation is None else [self.logs[incarnation]]
        return "".join(p.read_text(errors="replace") for p in logs)

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One call to the daemon's API, made from inside the node's namespace."""
        if self.pool is None:
            self.pool = ThreadPoolExecutor(1, initializer=enter_netns, initargs=(self.host.name,))
        return self.pool.submit(_call, self.home, method, path, body).result(timeout=STEP_S)

    def get(self, path: str) -> Any:
        return self.api("GET", path)

    def peers(self) -> set[str]:
        """Peer ids of the authenticated links the daemon has now."""
        return {p["peer_id"] for p in self.get("/status")["peers"] if p["peer_id"]}

    def messages(self, other: Node) -> list[dict[str, Any]]:
        return list(self.get(f"/conversations/{other.peer_id}/messages"))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=STEP_S)
        if self.pool is not None:
            self.pool.shutdown(wait=True)  # its thread leaves the namespace before teardown


def _call(home: Path, method: str, path: str, body: dict[str, Any] | None) -> Any:
    client = DaemonClient.connect(DataDir(home))
    if client is None:
        raise MeshError("daemon not running")
    return client.request(method, path, body)


# --- packet capture on a host's eth0 --------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    payload: bytes


@dataclass
class Capture:
    """Every IPv4 packet on one host's ``eth0`` (both directions), parsed enough to judge."""

    segments: list[Segment] = field(default_factory=list)  # TCP
    datagrams: list[tuple[str, int, str, int, bytes]] = field(default_factory=list)  # UDP
    payloads: bytearray = field(default_factory=bytearray)  # every payload byte, for searching
    _stop: threading.Event = field(default_factory=threading.Event)

    @classmethod
    @contextlib.contextmanager
    def on(cls, host: Host) -> Iterator[Capture]:
        capture = cls()
        with ThreadPoolExecutor(1, initializer=enter_netns, initargs=(host.name,)) as pool:
            sock = pool.submit(_packet_socket).result(timeout=10)
        thread = threading.Thread(target=capture._read, args=(sock,), daemon=True)
        thread.start()
        try:
            yield capture
        finally:
            capture._stop.set()
            thread.join(timeout=5)
            sock.close()

    def _read(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                frame = sock.recv(65_536)
            except TimeoutError:
                continue
            self._parse(frame)

    def _parse(self, frame: bytes) -> None:
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            return
        ihl = (frame[14] & 0x0F) * 4
        end = 14 + struct.unpack("!H", frame[16:18])[0]
        proto, src, dst = frame[23], socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34])
        at = 14 + ihl
        if proto == socket.IPPROTO_TCP and len(frame) >= at + 20:
            sport, dport, seq = struct.unpack("!HHI", frame[at : at + 8])
            payload = frame[at + (frame[at + 12] >> 4) * 4 : end]
            self.segments.append(Segment(src, sport, dst, dport, seq, payload))
        elif proto == socket.IPPROTO_UDP and len(frame) >= at + 8:
            sport, dport = struct.unpack("!HH", frame[at : at + 4])
            payload = frame[at + 8 : end]
            self.datagrams.append((src, sport, dst, dport, payload))
        else:
            return
        self.payloads += payload

    def connections(self, port: int) -> dict[tuple[str, int, str], dict[str, int]]:
        """TCP connections to ``port``: (initiator, its port, responder) -> payload bytes each way
        (retransmissions counted once)."""
        seen: dict[tuple[str, int, str], dict[str, set[tuple[int, int]]]] = {}
        for s in self.segments:
            if s.dport == port:
                key, way = (s.src, s.sport, s.dst), "from_initiator"
            elif s.sport == port:
                key, way = (s.dst, s.dport, s.src), "from_responder"
            else:
                continue
            ways = seen.setdefault(key, {"from_initiator": set(), "from_responder": set()})
            if s.payload:
                ways[way].add((s.seq, len(s.payload)))
        return {k: {w: sum(n for _, n in v) for w, v in ways.items()} for k, ways in seen.items()}


def _packet_socket() -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind(("eth0", ETH_P_ALL))  # the lab link only: not the API traffic on lo
    sock.settimeout(0.2)
    return sock


# --- the lab ----------------------------------------------------------------------------------


@dataclass
class Lab:
    nodes: dict[str, Node]
    mallory_capture: Capture
    oscar_capture: Capture
    timings: dict[str, float]

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    @property
    def insiders(self) -> list[Node]:
        return [self.nodes[n] for n in ("alice", "bobby", "carol")]


def set_up(hosts: list[Host], outsider: Host, root: Path) -> dict[str, Node]:
    """init, config.toml, `meshmsg id`, `meshmsg contact add`: as users would."""
    site_key, wrong_key = secrets.token_hex(32), secrets.token_hex(32)
    lab_net = hosts[0].cidr
    nodes = {
        "alice": Node("alice", hosts[0], root / "alice", site_key, lab_net),
        "bobby": Node("bobby", hosts[1], root / "bobby", site_key, lab_net),
        "carol": Node("carol", hosts[2], root / "carol", site_key, lab_net),
        "mallory": Node("mallory", hosts[3], root / "mallory", wrong_key, lab_net),
        "oscar": Node("oscar", outsider, root / "oscar", site_key, outsider.cidr),
    }
    for node in nodes.values():
        node.cli("init", "--name", node.name)
        # The relay test follows carol's receipt back through bobby within seconds.
        node.write_config(prompt_receipts=True)

    def identify(node: Node) -> None:
        out = node.cli("id", "--no-qr")
        node.code = next(line for line in out.splitlines() if line.startswith("MM1:"))
        match = re.search(r"Peer id:\s+([0-9a-f]{32})", out)
        assert match is not None, out
        node.peer_id = match.group(1)

    for node in nodes.values():
        identify(node)
    wanted = {  # mallory is alice's contact both ways: only the site key keeps them apart
        "alice": ["bobby", "carol", "mallory"],
        "bobby": ["alice", "carol"],
        "carol": ["alice", "bobby"],
        "mallory": ["alice"],
    }

    for name, others in wanted.items():
        for other in others:
            assert "Added" in nodes[name].cli("contact", "add", nodes[other].code, "--verified")
    return nodes


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("multihost")
    started = time.monotonic()
    with netns_hosts_with_outsider(4) as (hosts, outsider):
        nodes = set_up(hosts, outsider, root)
        timings = {"setup_s": time.monotonic() - started}
        try:
            with Capture.on(hosts[3]) as mallory_capture, Capture.on(outsider) as oscar_capture:
                launched = time.monotonic()
                for node in nodes.values():
                    node.launch()
                for node in nodes.values():
                    node.wait_up()
                timings["daemons_up_s"] = time.monotonic() - launched
                lab = Lab(nodes, mallory_capture, oscar_capture, timings)
                wait_paired(lab)
                timings["discovered_and_paired_s"] = time.monotonic() - launched
                yield lab
        finally:
            for node in nodes.values():
                node.close()


def wait_paired(lab: Lab) -> None:
    """Every insider is linked to and paired with the two others."""

    def paired(node: Node) -> bool:
        others = {n.peer_id for n in lab.insiders if n is not node}
        contacts = {c["peer_id"]: c for c in node.get("/contacts")}
        return all(contacts[p]["paired"] for p in others) and others <= node.peers()

    for node in lab.insiders:
        wait_until(f"{node.name} is linked to and paired with the others", partial(paired, node))


def ensure_insiders_up(lab: Lab) -> None:
    for node in lab.insiders:
        if not node.running:
            node.start()
    wait_paired(lab)


def linked_lines(node: Node, other: Node, incarnation: int | None = None) -> list[str]:
    """The daemon's log lines saying it linked to ``other`` (``meshmsg run`` names contacts)."""
    said = re.compile(rf"linked to contact {re.escape(other.name)}\b")
    return [line for line in node.log(incarnation).splitlines() if said.search(line)]


def message_of(node: Node, to: Node, message_id: str) -> dict[str, Any] | None:
    found = [m for m in node.messages(to) if m["message_id"] == message_id]
    return found[0] if found else None


def status(node: Node, to: Node, message_id: str) -> str | None:
    message = message_of(node, to, message_id)
    return str(message["status"]) if message is not None else None


# --- (a) discovery, link, message ----------------------------------------------------------


def test_discovery_link_and_a_message_with_its_receipt(
    lab: Lab, record_property: Callable[[str, object], None]
) -> None:
    ensure_insiders_up(lab)
    alice, _, carol = lab.insiders
    oscar = lab["oscar"]
    for node in lab.insiders:
        others_found = {o.address: "mDNS" for o in lab.insiders if o is not node}

        def found_the_others(node: Node = node, wanted: dict[str, str] = others_found) -> bool:
            return bool(wanted.items() <= node.get("/status")["found_by"].items())

        # Every other insider was handed out by mDNS (and dialled, unless already linked).
        wait_until(f"{node.name} found the others by mDNS", found_the_others)
        view = node.get("/status")
        assert view["discovery"]["enabled"] is True
        assert view["discovery"]["interfaces"] == [node.host.ip]
        assert oscar.address not in view["found_by"]  # outside the trusted network
        # Authenticated links to contacts, and nothing else.
        others = {n.peer_id for n in lab.insiders if n is not node}
        linked = [p for p in view["peers"] if p["peer_id"]]
        assert {p["peer_id"] for p in linked} == others
        assert all(p["contact"] and p["verified"] for p in linked)

    started = time.monotonic()
    out = alice.cli_inside("send", "carol", "hello carol, over the bridge")  # the real CLI
    assert "carol" in out.lower()
    sent = wait_until("alice's message in her conversation", lambda: alice.messages(carol))[-1]
    got = wait_until("carol receives alice's message",
                     lambda: message_of(carol, alice, sent["message_id"]))  # fmt: skip
    assert (got["body"], got["direction"]) == ("hello carol, over the bridge", "in")
    received_s = time.monotonic() - started
    wait_until("alice sees DELIVERED",
               lambda: status(alice, carol, sent["message_id"]) == "delivered")  # fmt: skip
    record_property("direct_received_s", round(received_s, 2))
    record_property("direct_delivered_s", round(time.monotonic() - started, 2))
    for name, seconds in lab.timings.items():
        record_property(name, round(seconds, 2))
    print(f"lab {lab.timings}; direct message received {received_s:.2f} s after `meshmsg send`")


# --- (b) the offline recipient, through a relay --------------------------------------------------


def test_offline_recipient_gets_mail_through_a_relay_and_the_receipt_comes_back(
    lab: Lab, record_property: Callable[[str, object], None]
) -> None:
    ensure_insiders_up(lab)
    alice, bobby, carol = lab.insiders
    started = time.monotonic()

    def carried(node: Node) -> int:
        return int(node.get("/status")["relay"]["carried_for_others"])

    # Copies sprayed during (a) are purged once delivered: start from an empty relay store.
    wait_until("bobby's relay store is empty", lambda: carried(bobby) == 0 or None)

    carol.stop()
    wait_until("alice and bobby notice carol left",
               lambda: carol.peer_id not in alice.peers() | bobby.peers())  # fmt: skip
    sent = alice.api("POST", "/messages", {"to": carol.peer_id, "body": "carol, bobby has it"})
    mid = sent["message_id"]
    assert sent["status"] == "queued"
    wait_until("alice sees RELAYED (bobby took custody)",
               lambda: status(alice, carol, mid) == "relayed")  # fmt: skip
    assert carried(bobby) == 1
    alice.stop()
    wait_until("bobby notices alice left", lambda: alice.peer_id not in bobby.peers())

    carol.start()  # alice is offline: only bobby can hand it over
    got = wait_until("carol receives it from bobby", lambda: message_of(carol, alice, mid))
    assert (got["body"], got["direction"]) == ("carol, bobby has it", "in")
    # Bobby hands the message over (his copy goes) and then takes carol's delivered receipt,
    # sealed after the 2 s batching delay: his store goes 1 -> 0 -> 1.
    wait_until("bobby dropped the delivered message", lambda: carried(bobby) == 0 or None)
    wait_until("bobby took custody of carol's receipt", lambda: carried(bobby) == 1 or None)
    carol.stop()
    wait_until("bobby notices carol left", lambda: carol.peer_id not in bobby.peers())

    alice.start()  # carol is offline: the receipt can only come from bobby
    delivered = wait_until(
        "alice sees DELIVERED through bobby",
        lambda: (m := message_of(alice, carol, mid)) and m["status"] == "delivered" and m,
    )
    assert [s["status"] for s in delivered["timeline"]] == ["queued", "relayed", "delivered"]
    # Alice and carol were never online together: neither incarnation linked to the other.
    assert not linked_lines(alice, carol, -1), alice.log(-1)
    assert not linked_lines(carol, alice, -1), carol.log(-1)
    assert linked_lines(alice, bobby, -1)
    assert linked_lines(carol, bobby, -1)
    record_property("relay_scenario_s", round(time.monotonic() - started, 2))
    carol.start()  # leave the lab as we found it


# --- (c) outsider and wrong site key -------------------------------------------------------------


def identifying(lab: Lab) -> dict[str, bytes]:
    """Byte strings that would identify an insider (or this machine) if seen on the wire."""
    found: dict[str, bytes] = {}
    hostname = socket.gethostname()
    if len(hostname) >= 8 and hostname != "localhost":  # too short could match by chance
        found["hostname"] = hostname.encode()
    for node in lab.insiders:
        public = decode_contact_code(node.code).public
        found[f"{node.name} name"] = node.name.encode()
        found[f"{node.name} peer id"] = public.peer_id
        found[f"{node.name} peer id hex"] = node.peer_id.encode()
        found[f"{node.name} fingerprint"] = fingerprint(public).encode()
        for key in ("identity_key", "noise_key", "e2e_key"):
            found[f"{node.name} {key}"] = getattr(public, key)
    return found


def test_outsider_and_wrong_site_key_neither_connect_nor_learn_an_identity(lab: Lab) -> None:
    ensure_insiders_up(lab)
    mallory, oscar = lab["mallory"], lab["oscar"]
    capture = lab.mallory_capture

    def refused_both_ways() -> dict[tuple[str, int, str], dict[str, int]] | None:
        conns = capture.connections(PEER_PORT)
        dialled_by_mallory = any(k[0] == mallory.host.ip for k in conns)
        dialled_mallory = any(k[2] == mallory.host.ip for k in conns)
        return conns if dialled_by_mallory and dialled_mallory else None

    def found_mallory(node: Node) -> bool:
        return bool(node.get("/status")["found_by"].get(mallory.address) == "mDNS")

    for node in lab.insiders:  # mallory is on the trusted subnet: found by mDNS and dialled
        wait_until(f"{node.name} found mallory by mDNS", partial(found_mallory, node))
    conns = wait_until("mallory dialled insiders and insiders dialled mallory", refused_both_ways)
    print(f"connections between mallory and insiders (payload bytes): {conns}")
    insiders = {n.host.ip for n in lab.insiders}
    for (initiator, _, responder), sent in conns.items():
        assert {initiator, responder} - {mallory.host.ip} <= insiders
        # Message 1 at most from the initiator; nothing at all from the responder: the
        # handshake failed on message 1, and message 2 (the responder's static key) never left.
        assert sent["from_responder"] == 0, (initiator, responder, sent)
        assert sent["from_initiator"] <= MESSAGE1_BYTES, (initiator, responder, sent)
    assert any(sent["from_initiator"] == MESSAGE1_BYTES for sent in conns.values())

    # No link, no pairing, anywhere; mallory's own view agrees.
    for node in (mallory, oscar):
        assert "linked to" not in node.log(), node.log()
        assert not node.peers()
    contacts = {c["name"]: c for c in mallory.get("/contacts")}
    assert contacts["alice"]["paired"] is False
    alice_view = {c["name"]: c for c in lab["alice"].get("/contacts")}
    assert alice_view["mallory"]["paired"] is False
    for node in lab.insiders:
        assert mallory.peer_id not in node.peers()
        assert "linked to stranger" not in node.log()
        assert not linked_lines(node, mallory)

    # Oscar: filtered by discovery on both sides, and not one TCP packet to or from him.
    oscar_status = oscar.get("/status")["discovery"]
    assert oscar_status["enabled"] is True
    assert oscar_status["peers"] == 0
    assert oscar_status["ignored_untrusted"] >= 1  # he heard the insiders' adverts
    for node in lab.insiders:
        discovery = node.get("/status")["discovery"]
        assert discovery["ignored_untrusted"] >= 1  # and they heard his
        assert oscar.address not in node.get("/status")["found_by"]
    assert not lab.oscar_capture.segments
    heard = {src for src, _, _, dport, _ in lab.oscar_capture.datagrams if dport == 5353}
    assert insiders <= heard  # the multicast reached him: the filtering did the work

    # Nothing identifying in any byte either of them saw.
    for capture_name, seen in (("mallory", capture), ("oscar", lab.oscar_capture)):
        wire = bytes(seen.payloads)
        assert wire, f"{capture_name}'s capture is empty"
        for what, needle in identifying(lab).items():
            assert needle not in wire, f"{capture_name} saw {what} on the wire"
