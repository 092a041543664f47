"""Finding peers: mDNS on trusted networks, and static ``host:port`` peers as a fallback.

Theory of operation. Discovery only produces *hints*: an address worth dialling. Who a peer is
comes out of the Noise handshake, never out of mDNS, so the advert carries no identity: a
random instance name drawn from the injected ``Rng`` (renewed every ``mdns_rotate_s``), the TCP
port and ``v=<protocol version>`` in TXT. A rogue responder can therefore only make us dial it,
and that is bounded (security research §2, A1 and A3): at most ``max_discovered_peers`` tracked
addresses, at most ``dial_attempts_per_s`` hand-outs per second (token bucket of depth
``dial_burst``), and a doubling backoff for peers the caller reports as failing.

mDNS runs only on *trusted networks* (:class:`TrustedNetworks`): zeroconf binds to our own
addresses inside them, and a resolved service whose addresses all lie outside them is ignored.
With no trusted network, mDNS is off and only :class:`StaticPeers` work.

Threads (libraries-and-limits §3). python-zeroconf's blocking API runs its own asyncio loop
thread and a browser thread. This module is its only importer:

* every blocking call (open, register, unregister, resolve, close) goes through
  ``trio.to_thread.run_sync``;
* browser callbacks arrive on zeroconf's thread and cross into trio with
  ``TrioToken.run_sync_soon``, which never blocks that thread (``trio.from_thread.run`` would);
  ``RunFinishedError`` means trio has already exited, and the event is moot;
* on the trio side a bounded memory channel queues the events; overflow is counted and dropped,
  since a flood of names is exactly the attack the bounds are for;
* registration (about 1.65 s of probing) runs in a background task; close is shielded.

The backend is injectable (:class:`MdnsBackend`), so unit tests drive the logic with a fake and
a mock clock; ``needs_thread = False`` makes the bridge call the fake inline.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import ipaddress
import logging
import math
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol, TypeVar

import ifaddr
import trio
from zeroconf import Error as ZeroconfError
from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from meshmsg.config import PROTOCOL_VERSION, NetConfig
from meshmsg.core.address import STATIC_PEER, parse_address
from meshmsg.core.rng import Rng
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


class _PeerSource:
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


class StaticPeers(_PeerSource):
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


# --- The mDNS backend ----------------------------------------------------------------------------


class BrowseChange(enum.Enum):
    """What the browser saw happen to a service instance."""

    ADDED = "added"
    UPDATED = "updated"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Advert:
    """Our service as announced: nothing here may identify the node or its user."""

    name: str  # "<random label>._meshmsg._tcp.local."
    server: str  # "<random label>.local.": not the machine's host name
    port: int
    addresses: tuple[str, ...]
    txt: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedService:
    """A peer's service record set, as resolved (all of it remote input)."""

    name: str
    port: int | None
    addresses: tuple[str, ...]  # IPv6 link-local ones carry their scope (``fe80::1%2``)
    txt: Mapping[bytes, bytes | None]


BrowseCallback = Callable[[BrowseChange, str], None]


class MdnsBackend(Protocol):
    """What discovery needs from mDNS. Methods may block; callbacks may come from any thread.

    Methods raise only :class:`TransportError`.
    """

    @property
    def needs_thread(self) -> bool:
        """True if the methods block (run them in a worker thread)."""
        ...

    def open(self) -> None: ...

    def register(self, advert: Advert) -> str:
        """Announce ``advert``; return the name actually registered (after a conflict rename)."""
        ...

    def unregister(self, name: str) -> None: ...

    def start_browsing(self, service_type: str, callback: BrowseCallback) -> None: ...

    def resolve(self, service_type: str, name: str, timeout_s: float) -> ResolvedService | None: ...

    def close(self) -> None: ...


BackendFactory = Callable[[tuple[str, ...]], MdnsBackend]

_CHANGES: Final = {
    ServiceStateChange.Added: BrowseChange.ADDED,
    ServiceStateChange.Updated: BrowseChange.UPDATED,
    ServiceStateChange.Removed: BrowseChange.REMOVED,
}
# zeroconf raises its own errors, OSError from sockets, ValueError from bad records.
_ZEROCONF_ERRORS: Final = (ZeroconfError, OSError, ValueError, RuntimeError)


class ZeroconfBackend:
    """python-zeroconf's blocking API, bound to our trusted addresses only."""

    needs_thread = True

    def __init__(self, interfaces: tuple[str, ...]) -> None:
        self._interfaces = list(interfaces)
        self._zc: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None
        self._infos: dict[str, ServiceInfo] = {}

    def _ip_version(self) -> IPVersion:
        versions = {ipaddress.ip_address(a).version for a in self._interfaces}
        if versions == {4}:
            return IPVersion.V4Only
        return IPVersion.V6Only if versions == {6} else IPVersion.All

    @property
    def zc(self) -> Zeroconf:
        if self._zc is None:
            raise TransportError("mDNS backend is not open")
        return self._zc

    def open(self) -> None:
        try:
            # use_asyncio=False: zeroconf runs its own loop thread, never touching trio's.
            self._zc = Zeroconf(
                interfaces=self._interfaces, ip_version=self._ip_version(), use_asyncio=False
            )
        except _ZEROCONF_ERRORS as exc:
            raise TransportError(f"cannot start mDNS on {self._interfaces}: {exc}") from exc

    def register(self, advert: Advert) -> str:
        try:
            info = ServiceInfo(
                SERVICE_TYPE,
                advert.name,
                port=advert.port,
                properties=dict(advert.txt),
                server=advert.server,
                parsed_addresses=list(advert.addresses),
            )
            self.zc.register_service(info, allow_name_change=True)
        except _ZEROCONF_ERRORS as exc:
            raise TransportError(f"mDNS registration failed: {exc}") from exc
        self._infos[info.name] = info
        return info.name

    def unregister(self, name: str) -> None:
        info = self._infos.pop(name, None)
        if info is None:
            return
        try:
            self.zc.unregister_service(info)
        except _ZEROCONF_ERRORS as exc:
            raise TransportError(f"mDNS unregistration failed: {exc}") from exc

    def start_browsing(self, stype: str, callback: BrowseCallback) -> None:
        # zeroconf calls handlers with these keyword names, on its browser thread.
        def on_change(
            zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:
            callback(_CHANGES[state_change], name)

        try:
            self._browser = ServiceBrowser(self.zc, stype, handlers=[on_change])
        except _ZEROCONF_ERRORS as exc:
            raise TransportError(f"mDNS browsing failed: {exc}") from exc

    def resolve(self, service_type: str, name: str, timeout_s: float) -> ResolvedService | None:
        try:
            info = self.zc.get_service_info(service_type, name, round(timeout_s * 1000))
            if info is None:
                return None
            addresses = tuple(info.parsed_scoped_addresses())
        except _ZEROCONF_ERRORS as exc:
            raise TransportError(f"mDNS resolve of {name!r} failed: {exc}") from exc
        return ResolvedService(
            name=info.name, port=info.port, addresses=addresses, txt=dict(info.properties)
        )

    def close(self) -> None:
        try:
            if self._browser is not None:
                self._browser.cancel()
            if self._zc is not None:
                self._zc.close()  # also sends goodbyes for what is still registered
        except _ZEROCONF_ERRORS as exc:
            raise TransportError(f"mDNS shutdown failed: {exc}") from exc
        finally:
            self._browser = None
            self._zc = None


# --- Discovery -----------------------------------------------------------------------------------


def advert_txt(config: NetConfig) -> dict[str, str]:
    """The TXT of our advert: the protocol version and nothing else.

    Raises:
        ConfigError: if even that does not fit in ``mdns_txt_max_bytes``.
    """
    txt = {"v": str(PROTOCOL_VERSION)}
    if txt_wire_bytes(txt) >= config.mdns_txt_max_bytes:
        raise ConfigError(f"mDNS TXT of {txt_wire_bytes(txt)} bytes exceeds mdns_txt_max_bytes")
    return txt


def txt_wire_bytes(txt: Mapping[str, str]) -> int:
    """Size of a TXT record on the wire: one length byte plus ``key=value`` per entry."""
    return sum(1 + len(f"{k}={v}".encode()) for k, v in txt.items())


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveryStatistics:
    """A snapshot of what discovery did; ``disabled_reason`` says why mDNS is off."""

    enabled: bool
    disabled_reason: str | None
    instance: str | None  # our current advert name
    interfaces: tuple[str, ...]  # the addresses zeroconf is bound to
    registrations: int
    advert_errors: int
    events_dropped: int  # browser events lost to a full queue (a flood)
    resolving: int
    resolve_failures: int
    ignored_self: int
    ignored_untrusted: int  # services with no address inside the trusted networks
    ignored_version: int  # TXT without v=<our protocol version>
    ignored_invalid: int  # no usable port
    peers: PeerStatistics


class _Lookup(enum.Enum):
    """Where a running lookup stands, as events for its name keep arriving."""

    WANTED = "wanted"
    AGAIN = "again"  # added or updated meanwhile: the answer in flight may be stale
    GONE = "gone"  # removed meanwhile: drop the answer


@dataclass(slots=True)
class _Counters:
    registrations: int = 0
    advert_errors: int = 0
    events_dropped: int = 0
    resolve_failures: int = 0
    ignored_self: int = 0
    ignored_untrusted: int = 0
    ignored_version: int = 0
    ignored_invalid: int = 0
    own_names: deque[str] = field(default_factory=lambda: deque(maxlen=4))


class Discovery(_PeerSource):
    """A running mDNS discovery; get one from :func:`open_discovery`."""

    def __init__(
        self,
        config: NetConfig,
        trusted: TrustedNetworks,
        port: int,
        rng: Rng,
        local: tuple[str, ...],
        backend: MdnsBackend | None,
        disabled_reason: str | None,
    ) -> None:
        self._config = config
        self._trusted = trusted
        self._port = port
        self._rng = rng
        self._local = local
        self._backend = backend
        self._disabled_reason = disabled_reason
        self._txt = advert_txt(config)
        super().__init__(PeerTable(config))
        self._counters = _Counters()
        self._instance: str | None = None
        self._resolving: dict[str, _Lookup] = {}  # names being resolved
        self._send, self._recv = trio.open_memory_channel[tuple[BrowseChange, str]](
            config.mdns_event_queue
        )
        self._token = trio.lowlevel.current_trio_token()

    def statistics(self) -> DiscoveryStatistics:
        c = self._counters
        return DiscoveryStatistics(
            enabled=self._backend is not None,
            disabled_reason=self._disabled_reason,
            instance=self._instance,
            interfaces=self._local,
            registrations=c.registrations,
            advert_errors=c.advert_errors,
            events_dropped=c.events_dropped,
            resolving=len(self._resolving),
            resolve_failures=c.resolve_failures,
            ignored_self=c.ignored_self,
            ignored_untrusted=c.ignored_untrusted,
            ignored_version=c.ignored_version,
            ignored_invalid=c.ignored_invalid,
            peers=self._table.statistics(),
        )

    # The thread bridge ---------------------------------------------------------------------------

    async def _blocking(self, fn: Callable[[], T], *, abandon: bool = False) -> T:
        """Run a backend call: in a worker thread for zeroconf, inline for a test fake."""
        if self._backend is not None and not self._backend.needs_thread:
            await trio.lowlevel.checkpoint()
            return fn()
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=abandon)

    def _on_browse(self, change: BrowseChange, name: str) -> None:
        """Browser callback, on zeroconf's thread: hand over without ever blocking it."""
        with contextlib.suppress(trio.RunFinishedError):  # trio has exited: nobody to tell
            self._token.run_sync_soon(self._enqueue, change, name)

    def _enqueue(self, change: BrowseChange, name: str) -> None:
        """On trio's thread. A callback that raised here would crash trio: never let it."""
        try:
            self._send.send_nowait((change, name))
        except trio.WouldBlock:
            self._counters.events_dropped += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # shutting down

    # Background tasks ----------------------------------------------------------------------------

    async def _start(self, nursery: trio.Nursery) -> None:
        backend = self._require_backend()
        await self._blocking(backend.open)
        await self._blocking(lambda: backend.start_browsing(SERVICE_TYPE, self._on_browse))
        nursery.start_soon(self._serve_advert)
        nursery.start_soon(self._serve_events, nursery)

    def _require_backend(self) -> MdnsBackend:
        if self._backend is None:
            raise TransportError("mDNS discovery is off")
        return self._backend

    def _new_advert(self) -> Advert:
        label = self._rng.randbytes(INSTANCE_LABEL_BYTES).hex()
        return Advert(
            name=f"{label}.{SERVICE_TYPE}",
            server=f"{label}.local.",
            port=self._port,
            addresses=self._local,
            txt=self._txt,
        )

    async def _serve_advert(self) -> None:
        """Keep one advert up; every ``mdns_rotate_s`` replace it with a fresh random name.

        The new name is registered before the old one is withdrawn, so peers never see a gap
        (and, since they track addresses, do not dial us again). The IP address stays the same,
        so rotation unlinks names over time, not presence on the link.
        """
        backend = self._require_backend()
        while True:
            advert = self._new_advert()
            self._remember_own(advert.name)
            try:
                name = await self._blocking(functools.partial(backend.register, advert))
            except TransportError as exc:
                self._counters.advert_errors += 1
                logger.warning("mDNS advert failed, retrying later: %s", exc)
                await trio.sleep(self._config.mdns_advert_retry_s)
                continue
            self._remember_own(name)
            previous, self._instance = self._instance, name
            self._counters.registrations += 1
            if previous is not None:
                await self._withdraw(backend, previous)
            await trio.sleep(self._config.mdns_rotate_s)

    def _remember_own(self, name: str) -> None:
        # Our browser sees our own adverts (and goodbyes for withdrawn ones): recognise them.
        if name.lower() not in self._counters.own_names:
            self._counters.own_names.append(name.lower())

    async def _withdraw(self, backend: MdnsBackend, name: str) -> None:
        try:
            await self._blocking(lambda: backend.unregister(name))
        except TransportError as exc:
            self._counters.advert_errors += 1
            logger.warning("mDNS unregistration of %s failed: %s", name, exc)

    async def _serve_events(self, nursery: trio.Nursery) -> None:
        async for change, name in self._recv:
            key = name.lower()
            if key in self._counters.own_names:
                self._counters.ignored_self += 1
            elif change is BrowseChange.REMOVED:
                self._forget(key)
            elif key in self._resolving:
                self._resolving[key] = _Lookup.AGAIN  # the answer in flight may be stale
            elif len(self._resolving) >= self._config.mdns_max_resolving:
                self._counters.events_dropped += 1
            else:
                self._resolving[key] = _Lookup.WANTED
                nursery.start_soon(self._resolve, name)

    def _forget(self, key: str) -> None:
        if key in self._resolving:
            self._resolving[key] = _Lookup.GONE
        if self._table.remove_instance(key):
            self._lot.unpark_all()

    async def _resolve(self, name: str) -> None:
        """Look a service up until no newer event arrived meanwhile; then act on the answer."""
        key = name.lower()
        backend = self._require_backend()
        lookup = functools.partial(
            backend.resolve, SERVICE_TYPE, name, self._config.mdns_resolve_timeout_s
        )
        try:
            state = _Lookup.AGAIN
            while state is _Lookup.AGAIN:
                self._resolving[key] = _Lookup.WANTED
                # Abandoning is safe: a lookup changes nothing, and shutdown need not wait.
                info = await self._blocking(lookup, abandon=True)
                state = self._resolving[key]
        except TransportError as exc:
            self._counters.resolve_failures += 1
            logger.debug("%s", exc)
            return
        finally:
            self._resolving.pop(key, None)
        if info is None:
            self._counters.resolve_failures += 1
        elif state is _Lookup.WANTED:
            self._accept(key, info)

    def _accept(self, key: str, info: ResolvedService) -> None:
        if info.txt.get(b"v") != str(PROTOCOL_VERSION).encode():
            self._counters.ignored_version += 1
            return
        if info.port is None or not 0 < info.port <= 65_535:
            self._counters.ignored_invalid += 1
            return
        hosts = [a for a in info.addresses if a in self._trusted]
        if not hosts:
            self._counters.ignored_untrusted += 1
            return
        if info.port == self._port and hosts[0] in self._local:
            self._counters.ignored_self += 1  # our own advert under a name we no longer hold
            return
        if self._table.add(hosts[0], info.port, key, trio.current_time()):
            self._lot.unpark_all()

    def _close(self) -> None:
        self._close_source()
        self._send.close()


def system_adapters() -> list[ifaddr.Adapter]:
    """This host's network interfaces and their addresses (ifaddr, as zeroconf uses)."""
    return list(ifaddr.get_adapters())


def _plan(
    trusted: TrustedNetworks, adapters: Callable[[], Iterable[ifaddr.Adapter]]
) -> tuple[tuple[str, ...], str | None]:
    """Our addresses to bind mDNS to, or why mDNS stays off."""
    if not trusted:
        return (), "no trusted network is configured"
    local = trusted.local_addresses(adapters())
    if not local:
        nets = ", ".join(str(n) for n in trusted.networks)
        return (), f"this host has no address inside the trusted networks ({nets})"
    return local, None


@contextlib.asynccontextmanager
async def open_discovery(
    config: NetConfig,
    trusted: TrustedNetworks,
    port: int,
    rng: Rng,
    *,
    backend_factory: BackendFactory = ZeroconfBackend,
    adapters: Callable[[], Iterable[ifaddr.Adapter]] = system_adapters,
) -> AsyncIterator[Discovery]:
    """Advertise ``port`` and browse for peers on the trusted networks.

    With no trusted network, or none that this host is on, mDNS stays off (logged as a
    warning, and stated in ``statistics().disabled_reason``) and the ``Discovery`` never hands
    out a peer: static peers still work. On exit the advert is withdrawn (goodbye packets) and
    zeroconf's threads stop; exit may wait for a registration in progress (about 1.7 s).

    Raises:
        ConfigError: ``port`` is not 1-65535, or the TXT does not fit ``mdns_txt_max_bytes``.
        TransportError: zeroconf could not start (for instance no multicast on the interface).
    """
    if not 0 < port <= 65_535:
        raise ConfigError(f"port {port} is not 1-65535")
    local, reason = _plan(trusted, adapters)
    if reason is not None:
        logger.warning("mDNS discovery is off: %s; only static peers will be dialled", reason)
        disc = Discovery(config, trusted, port, rng, local, None, reason)
        try:
            yield disc
        finally:
            disc._close()
        return
    backend = backend_factory(local)
    disc = Discovery(config, trusted, port, rng, local, backend, None)
    try:
        async with _collapse_groups(), trio.open_nursery() as nursery:
            await disc._start(nursery)
            try:
                yield disc
            finally:
                disc._close()
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await disc._blocking(backend.close)


@contextlib.asynccontextmanager
async def _collapse_groups() -> AsyncIterator[None]:
    """Re-raise a lone exception out of the nursery's ExceptionGroup.

    Our background tasks catch their own errors, so a group of one is the caller's body
    failing; callers of ``async with open_discovery(...)`` should see their own exception.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1 and not isinstance(group.exceptions[0], BaseExceptionGroup):
            raise group.exceptions[0] from None
        raise
