"""Peers worth dialling: trusted networks, the peer table with its dial budget, static peers.

Discovery (``net/discovery.py``) and static peers both feed a :class:`PeerTable`: at most
``max_discovered_peers`` tracked addresses, hand-outs paced by a token bucket, a doubling backoff
for peers reported as failing (see ``net/discovery.py`` for the threat this bounds).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

import ifaddr
import trio

from meshmsg.config import NetConfig
from meshmsg.core.address import STATIC_PEER, parse_address
from meshmsg.errors import ConfigError, TransportError
from meshmsg.net.tcp import format_address  # the one spelling of host:port

logger = logging.getLogger(__name__)

SERVICE_TYPE: Final = "_meshmsg._tcp.local."
# 64 random bits: a collision between two nodes on one link is negligible, and the label (16 hex
# digits) says nothing about the node.
INSTANCE_LABEL_BYTES: Final = 8
# A float rounding guard for the token bucket: without it a wait of 1e-17 s could be rounded
# away and the hand-out loop would spin without the clock moving.
_TOKEN_EPSILON: Final = 1e-9
_IFNAME: Final = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")  # Linux IFNAMSIZ is 16 with the NUL

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
T = TypeVar("T")


# --- Addresses -----------------------------------------------------------------------------------


def parse_peer_address(text: str) -> tuple[str, int]:
    """Split a static peer ``host:port`` or ``[v6]:port`` into host and port.

    Raises:
        ConfigError: anything :data:`~meshmsg.core.address.STATIC_PEER` refuses.
    """
    return parse_address(text, STATIC_PEER, ConfigError)


def _unscoped(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address in ``host`` (scope id allowed), or None if it is not an IP literal."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _adapter_ip(ip: ifaddr.IP) -> str:
    # ifaddr gives IPv4 as a string and IPv6 as (address, flowinfo, scope_id).
    return ip.ip if isinstance(ip.ip, str) else ip.ip[0]


# --- Trusted networks ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustedNetworks:
    """The networks on which mDNS may run; empty means mDNS is off.

    Build it with :meth:`parse` from CIDRs (``10.0.0.0/24``) and interface names (``eth0``).
    """

    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(
        cls, specs: Iterable[str], *, adapters: Sequence[ifaddr.Adapter] | None = None
    ) -> TrustedNetworks:
        """Read CIDRs and interface names; an interface contributes the networks it is on now.

        IPv6 link-local addresses of an interface are skipped: ``fe80::/64`` is the same on
        every link, so it cannot say which link is trusted. Write it as a CIDR to trust it.

        Raises:
            ConfigError: a malformed CIDR (host bits set count as malformed), or an unknown
                interface name.
        """
        found: list[IPNetwork] = []
        for spec in specs:
            nets = _parse_cidr(spec) if "/" in spec else _interface_networks(spec, adapters)
            found.extend(n for n in nets if n not in found)
        return cls(tuple(found))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, host: object) -> bool:
        address = _unscoped(host) if isinstance(host, str) else None
        return address is not None and any(address in net for net in self.networks)

    def local_addresses(self, adapters: Iterable[ifaddr.Adapter]) -> tuple[str, ...]:
        """This host's addresses inside the trusted networks (what zeroconf may bind to)."""
        found: list[str] = []
        for adapter in adapters:
            for ip in adapter.ips:
                text = _adapter_ip(ip)
                if text in self and text not in found:
                    found.append(text)
        return tuple(found)


def _parse_cidr(spec: str) -> list[IPNetwork]:
    try:
        return [ipaddress.ip_network(spec, strict=True)]
    except ValueError as exc:
        raise ConfigError(f"bad trusted network {spec!r}: {exc}") from exc


def _interface_networks(name: str, adapters: Sequence[ifaddr.Adapter] | None) -> list[IPNetwork]:
    if not _IFNAME.fullmatch(name):
        raise ConfigError(f"bad trusted network {name!r}: neither a CIDR nor an interface name")
    known = system_adapters() if adapters is None else list(adapters)
    matches = [a for a in known if name in (a.name, a.nice_name)]
    if not matches:
        names = ", ".join(sorted({a.name for a in known}))
        raise ConfigError(f"unknown interface {name!r} in trusted networks (have: {names})")
    nets: list[IPNetwork] = []
    for ip in matches[0].ips:
        net = ipaddress.ip_network(f"{_adapter_ip(ip)}/{ip.network_prefix}", strict=False)
        if not (isinstance(net, ipaddress.IPv6Network) and net.is_link_local):
            nets.append(net)
    return nets


# --- Peers, the dial budget and the peer table ---------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveredPeer:
    """An address worth dialling. Not an identity: that comes out of the Noise handshake.

    ``instance`` is the mDNS instance name that announced it (None for a static peer);
    ``seen_at`` is trio's clock when it was last announced, or handed out for a static peer.
    """

    host: str
    port: int
    instance: str | None
    seen_at: float

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 in brackets), the form a ``Dial`` effect carries."""
        return format_address(self.host, self.port)


class TokenBucket:
    """A dial budget: ``rate_per_s`` tokens a second, at most ``burst`` saved up.

    Time is passed in (trio's clock), so the bucket is plain code and tests drive it directly.
    """

    def __init__(self, rate_per_s: float, burst: int) -> None:
        if not rate_per_s > 0 or burst < 1:
            raise ConfigError("the dial rate must be positive and the burst at least 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at: float | None = None

    def _refill(self, now: float) -> None:
        if self._at is not None and now > self._at:
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        if self._at is None or now > self._at:
            self._at = now

    def delay(self, now: float) -> float:
        """Seconds until a token is available (0 if one is available now)."""
        self._refill(now)
        missing = 1.0 - self._tokens
        return 0.0 if missing <= _TOKEN_EPSILON else missing / self._rate

    def take(self, now: float) -> bool:
        """Spend a token if one is available."""
        if self.delay(now) > 0:
            return False
        self._tokens = max(0.0, self._tokens - 1.0)
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerStatistics:
    """Counters of a peer table (mDNS or static)."""

    tracked: int  # addresses currently known
    handed_out: int  # hand-outs so far (each one is a dial)
    dropped_full: int  # announcements refused because max_discovered_peers was reached
    forgotten: int  # addresses dropped because every service announcing them was removed
    failures_reported: int  # report_failure() calls for tracked peers


@dataclass(slots=True, kw_only=True)
class _Entry:
    host: str
    port: int
    instances: list[str]  # mDNS names announcing this address; empty for a static peer
    seen_at: float | None  # None: a static peer, stamped when handed out
    due_at: float | None  # may be handed out from then on; None while the caller holds it
    failures: int = 0


class PeerTable:
    """Known addresses, deduplicated by (host, port), handed out under the dial budget.

    Plain code with ``now`` passed in. A peer is handed out once; it comes back only after the
    caller reports a failure (after a doubling backoff) or after it is forgotten and announced
    again. Instances map to addresses, so a peer that renames its advert is not dialled again.
    """

    def __init__(self, config: NetConfig, bucket: TokenBucket | None = None) -> None:
        self._config = config
        self._bucket = bucket or TokenBucket(config.dial_attempts_per_s, config.dial_burst)
        self._entries: dict[tuple[str, int], _Entry] = {}
        self._by_instance: dict[str, tuple[str, int]] = {}
        self._handed_out = 0
        self._dropped_full = 0
        self._forgotten = 0
        self._failures = 0

    def addresses(self) -> tuple[str, ...]:
        """Every tracked address, ``host:port``, oldest first."""
        return tuple(format_address(host, port) for host, port in self._entries)

    def add(self, host: str, port: int, instance: str | None, now: float) -> bool:
        """Record an announcement; True if the address is new (and queued for hand-out)."""
        key = (host, port)
        if instance is not None and self._by_instance.get(instance, key) != key:
            self.remove_instance(instance)  # the service moved to another address
        entry = self._entries.get(key)
        new_name = instance is not None and instance not in self._by_instance
        cap = self._config.max_discovered_peers
        # Names are capped as well as addresses: a rogue could announce one address many times.
        if (entry is None and len(self._entries) >= cap) or (
            new_name and len(self._by_instance) >= cap
        ):
            self._dropped_full += 1
            return False
        created = entry is None
        if entry is None:
            entry = _Entry(host=host, port=port, instances=[], seen_at=None, due_at=now)
            self._entries[key] = entry
        if instance is not None:
            if new_name:
                entry.instances.append(instance)
                self._by_instance[instance] = key
            entry.seen_at = now
        return created

    def remove_instance(self, instance: str) -> bool:
        """Forget a withdrawn service; its address goes once no service announces it."""
        key = self._by_instance.pop(instance, None)
        if key is None:
            return False
        entry = self._entries[key]
        entry.instances.remove(instance)
        if not entry.instances:
            del self._entries[key]
            self._forgotten += 1
        return True

    def _first_due(self) -> _Entry | None:
        due = [e for e in self._entries.values() if e.due_at is not None]
        # min() keeps the first of equals: ties go in insertion order, so runs are reproducible.
        return min(due, key=lambda e: math.inf if e.due_at is None else e.due_at) if due else None

    def pop_due(self, now: float) -> DiscoveredPeer | None:
        """Hand out the longest-waiting due peer if the dial budget allows."""
        entry = self._first_due()
        if entry is None or entry.due_at is None or entry.due_at > now:
            return None
        if not self._bucket.take(now):
            return None
        entry.due_at = None
        self._handed_out += 1
        instance = entry.instances[0] if entry.instances else None
        seen = now if entry.seen_at is None else entry.seen_at
        return DiscoveredPeer(host=entry.host, port=entry.port, instance=instance, seen_at=seen)

    def next_wake(self, now: float) -> float | None:
        """When :meth:`pop_due` may next return a peer (None: not until something changes)."""
        entry = self._first_due()
        if entry is None or entry.due_at is None:
            return None
        return max(entry.due_at, now + self._bucket.delay(now))

    def report_failure(self, peer: DiscoveredPeer, now: float) -> None:
        """The dial failed or the link closed: hand the peer out again after a backoff."""
        entry = self._entries.get((peer.host, peer.port))
        if entry is None:
            return  # already forgotten: nothing to retry
        entry.failures += 1
        self._failures += 1
        exponent = min(entry.failures - 1, 32)  # 2 s x 2^32 is far past any sane ceiling
        backoff = self._config.peer_retry_initial_s * 2.0**exponent
        entry.due_at = now + min(backoff, self._config.peer_retry_max_s)

    def report_success(self, peer: DiscoveredPeer) -> None:
        """A link to the peer is up: the next failure starts the backoff from the beginning."""
        entry = self._entries.get((peer.host, peer.port))
        if entry is not None:
            entry.failures = 0

    def statistics(self) -> PeerStatistics:
        return PeerStatistics(
            tracked=len(self._entries),
            handed_out=self._handed_out,
            dropped_full=self._dropped_full,
            forgotten=self._forgotten,
            failures_reported=self._failures,
        )


class PeerHandout:
    """Hand-out shared by discovery and static peers, over a :class:`PeerTable`."""

    def __init__(self, table: PeerTable) -> None:
        self._table = table
        self._closed = False
        self._lot = trio.lowlevel.ParkingLot()  # hand-out waiters, woken on any table change

    async def next_peer(self) -> DiscoveredPeer:
        """Wait for a peer that is due (new, or retried after a failure) within the dial budget.

        Raises:
            TransportError: the source has been closed.
        """
        peer = await self._next_or_none()
        if peer is None:
            raise TransportError("discovery is closed")
        return peer

    def peers(self) -> AsyncIterator[DiscoveredPeer]:
        """Every hand-out until the source closes (``async for peer in source.peers()``)."""
        return _PeerStream(self._next_or_none)

    def report_failure(self, peer: DiscoveredPeer) -> None:
        """The dial failed or the link closed: offer the peer again after a doubling backoff."""
        self._table.report_failure(peer, trio.current_time())
        self._lot.unpark_all()

    def report_success(self, peer: DiscoveredPeer) -> None:
        """A link to the peer is up: its next failure starts the backoff from the beginning."""
        self._table.report_success(peer)

    def _close_source(self) -> None:
        self._closed = True
        self._lot.unpark_all()

    async def _next_or_none(self) -> DiscoveredPeer | None:
        await trio.lowlevel.checkpoint()
        while not self._closed:
            now = trio.current_time()
            peer = self._table.pop_due(now)
            if peer is not None:
                return peer
            wake = self._table.next_wake(now)
            with trio.move_on_at(math.inf if wake is None else wake):
                await self._lot.park()
        return None


class _PeerStream:
    """The async iterator behind ``peers()``: ends when the source closes."""

    def __init__(self, next_or_none: Callable[[], Awaitable[DiscoveredPeer | None]]) -> None:
        self._next = next_or_none

    def __aiter__(self) -> _PeerStream:
        return self

    async def __anext__(self) -> DiscoveredPeer:
        peer = await self._next()
        if peer is None:
            raise StopAsyncIteration
        return peer


# --- Static peers --------------------------------------------------------------------------------


class StaticPeers(PeerHandout):
    """Configured ``host:port`` peers, for networks where multicast is blocked.

    Handed out like discovered peers (same dial budget rules, same backoff): each is offered
    once at start, then again after the caller reports a failure.

    Raises:
        ConfigError: a malformed or duplicate address, or more than ``max_discovered_peers``.
    """

    def __init__(
        self, specs: Iterable[str], config: NetConfig, *, bucket: TokenBucket | None = None
    ) -> None:
        addresses = [parse_peer_address(spec) for spec in specs]
        if len(set(addresses)) != len(addresses):
            raise ConfigError("duplicate static peer address")
        if len(addresses) > config.max_discovered_peers:
            raise ConfigError(f"at most {config.max_discovered_peers} static peers")
        super().__init__(PeerTable(config, bucket))
        for host, port in addresses:
            self._table.add(host, port, None, now=-math.inf)  # due at once, whatever the clock

    @property
    def addresses(self) -> tuple[str, ...]:
        """The configured peers, in ``host:port`` form."""
        return self._table.addresses()

    def statistics(self) -> PeerStatistics:
        return self._table.statistics()


def system_adapters() -> list[ifaddr.Adapter]:
    """This host's network interfaces and their addresses (ifaddr, as zeroconf uses)."""
    return list(ifaddr.get_adapters())
