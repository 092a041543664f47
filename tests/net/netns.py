"""Test hosts made of Linux network namespaces on a private bridge (a plain module to import).

Layout (libraries-and-limits §3), one *lab* per ``netns_hosts(...)``::

    <prefix>br   namespace holding only the bridge br0 (multicast snooping off) and the veth ends
    <prefix>h1   namespace with eth0 = 10.77.R.1/24, lo up, multicast on, route 224.0.0.0/4
    ...
    <prefix>o1   (outsider variant) eth0 = 10.78.R.1/24 on the same bridge: same link,
                 different subnet

Everything lives inside namespaces the lab created; the root namespace's interfaces, routes and
addresses are never touched. Names are unique per process and lab (``mmt-<pid>-<n>-<rand>-``),
so parallel or leftover runs do not collide. Teardown always happens: on leaving the ``with``
block (also on failure or Ctrl-C), at interpreter exit for anything still up, and namespaces
left by a *dead* process (for instance one killed with SIGKILL) are removed when the next lab
is built.

Example::

    ok, reason = netns_available()
    if not ok:
        pytest.skip(reason)
    with netns_hosts(3) as hosts:
        proc = hosts[0].popen(sys.executable, "-m", "some.module", hosts[1].ip)
        assert hosts[1].run("ping", "-c1", "-W1", hosts[2].ip).returncode == 0
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import ipaddress
import itertools
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

NAME_ROOT = "mmt-"
_NAME = re.compile(r"mmt-(\d+)-\d+-[0-9a-f]{4}-(br|h\d+|o\d+)")
_counter = itertools.count(1)
_live: dict[str, _Lab] = {}  # prefix -> lab still up (for the atexit sweep)
IP_TIMEOUT_S = 10.0  # one `ip` command; they take milliseconds


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


@functools.cache
def netns_available() -> tuple[bool, str]:
    """Whether labs can be built here, and if not, why (a reason fit for ``pytest.skip``)."""
    if not sys.platform.startswith("linux"):
        return False, "network namespaces need Linux"
    if os.geteuid() != 0:
        return False, "network namespace tests need root (CI runs them as root)"
    if shutil.which("ip") is None:
        return False, "the `ip` command (iproute2) is not installed"
    probe = f"{NAME_ROOT}{os.getpid()}-0-{secrets.token_hex(2)}-br"
    try:
        _ip("netns", "add", probe)
        _ip("-n", probe, "link", "add", "br0", "type", "bridge")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return False, f"cannot create a network namespace with a bridge: {exc}"
    finally:
        _ip("netns", "del", probe, check=False)
    return True, ""


@dataclass(frozen=True)
class Host:
    """One test host: a namespace with ``eth0`` on the lab's bridge."""

    name: str  # the namespace name
    ip: str
    network: ipaddress.IPv4Network

    @property
    def cidr(self) -> str:
        return str(self.network)

    def command(self, *cmd: str) -> list[str]:
        """``cmd`` prefixed to run inside this host (for trio.run_process and friends)."""
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(
        self, *cmd: str, timeout: float = 30.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside the host and wait (bounded) for it; output is captured as text."""
        return subprocess.run(
            self.command(*cmd), capture_output=True, text=True, timeout=timeout, check=check
        )

    def popen(self, *cmd: str, **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``cmd`` inside the host (``ip netns exec`` execs it: the pid is the command's).

        Text mode by default. The caller owns the process: kill it in a ``finally``; the lab
        also kills whatever is left in its namespaces when it is torn down.
        """
        kwargs.setdefault("text", True)
        return subprocess.Popen(self.command(*cmd), **kwargs)


@dataclass
class _Lab:
    prefix: str
    namespaces: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    def build_bridge(self) -> None:
        self.namespaces.append(self.bridge)
        _ip("netns", "add", self.bridge)
        _ip("-n", self.bridge, "link", "set", "lo", "up")
        _ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        # Without snooping the bridge floods multicast to every port, as a dumb switch would.
        _ip("-n", self.bridge, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
        _ip("-n", self.bridge, "link", "set", "br0", "up")

    def add_host(self, tag: str, address: ipaddress.IPv4Interface) -> Host:
        ns = f"{self.prefix}{tag}"
        self.namespaces.append(ns)
        port = f"v{tag}"  # the bridge-side veth: unique inside the lab's own bridge namespace
        _ip("netns", "add", ns)
        _ip("-n", self.bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0",
            "netns", ns)  # fmt: skip
        _ip("-n", self.bridge, "link", "set", port, "master", "br0")
        _ip("-n", self.bridge, "link", "set", port, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "addr", "add", str(address), "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "multicast", "on")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
        return Host(name=ns, ip=str(address.ip), network=address.network)

    def teardown(self) -> None:
        """Kill what still runs inside, then delete host namespaces and the bridge last."""
        _live.pop(self.prefix, None)
        for ns in reversed(self.namespaces):
            _kill_inside(ns)
            _ip("netns", "del", ns, check=False)  # also removes its veth end
        self.namespaces.clear()


def _kill_inside(ns: str) -> None:
    # Only our lab's namespaces reach here, so these are processes our tests started.
    pids = _ip("netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_leftovers() -> list[str]:
    """Delete lab namespaces whose creating process is gone; return their names."""
    listing = _ip("netns", "list", check=False).stdout
    removed = []
    for line in listing.splitlines():
        name = line.split(" ", 1)[0]
        match = _NAME.fullmatch(name)
        if match and not _pid_alive(int(match.group(1))):
            _kill_inside(name)
            _ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


@atexit.register
def _teardown_all() -> None:
    for lab in list(_live.values()):
        lab.teardown()


def _default_subnets() -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]:
    # Namespaces isolate labs completely, so the random octet only helps humans tell them apart.
    octet = secrets.randbelow(256)
    return (
        ipaddress.IPv4Network(f"10.77.{octet}.0/24"),
        ipaddress.IPv4Network(f"10.78.{octet}.0/24"),
    )


@contextlib.contextmanager
def _lab(
    n: int, outsiders: int, subnet: str | None, outsider_subnet: str | None, prefix: str | None
) -> Iterator[tuple[list[Host], list[Host]]]:
    ok, reason = netns_available()
    if not ok:
        raise RuntimeError(reason)
    default_in, default_out = _default_subnets()
    inside = ipaddress.IPv4Network(subnet) if subnet else default_in
    outside = ipaddress.IPv4Network(outsider_subnet) if outsider_subnet else default_out
    if inside.overlaps(outside):
        raise ValueError("the outsider subnet must not overlap the hosts' subnet")
    if n + 2 > inside.num_addresses or outsiders + 2 > outside.num_addresses:
        raise ValueError("subnet too small")
    if prefix is None:
        prefix = f"{NAME_ROOT}{os.getpid()}-{next(_counter)}-{secrets.token_hex(2)}-"
    sweep_leftovers()
    lab = _Lab(prefix)
    _live[prefix] = lab
    try:
        lab.build_bridge()
        hosts = [
            lab.add_host(f"h{i}", ipaddress.IPv4Interface(f"{inside[i]}/{inside.prefixlen}"))
            for i in range(1, n + 1)
        ]
        others = [
            lab.add_host(f"o{i}", ipaddress.IPv4Interface(f"{outside[i]}/{outside.prefixlen}"))
            for i in range(1, outsiders + 1)
        ]
        yield hosts, others
    finally:
        lab.teardown()


@contextlib.contextmanager
def netns_hosts(
    n: int, subnet: str | None = None, prefix: str | None = None
) -> Iterator[list[Host]]:
    """Build ``n`` hosts on one bridge (``subnet`` defaults to ``10.77.<random>.0/24``).

    Raises:
        RuntimeError: namespaces are not available (check :func:`netns_available` first) or an
            ``ip`` command failed; whatever was built is torn down first.
    """
    with _lab(n, 0, subnet, None, prefix) as (hosts, _):
        yield hosts


@contextlib.contextmanager
def netns_hosts_with_outsider(
    n: int,
    subnet: str | None = None,
    outsider_subnet: str | None = None,
    prefix: str | None = None,
) -> Iterator[tuple[list[Host], Host]]:
    """Like :func:`netns_hosts`, plus one host on the same bridge but another subnet
    (default ``10.78.<same random>.0/24``): on the link, outside the trusted network."""
    with _lab(n, 1, subnet, outsider_subnet, prefix) as (hosts, others):
        yield hosts, others[0]
