"""Discovery logic against a fake mDNS backend, under trio's mock clock (no threads, no sleeps).

One test uses real threads to check the zeroconf-thread -> trio bridge; the real zeroconf is
exercised in ``test_discovery_netns.py``.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import ifaddr
import pytest
import trio
import trio.testing

from meshmsg.config import PROTOCOL_VERSION, NetConfig
from meshmsg.errors import ConfigError, TransportError
from meshmsg.net.discovery import (
    INSTANCE_LABEL_BYTES,
    SERVICE_TYPE,
    Discovery,
    advert_txt,
    open_discovery,
    txt_wire_bytes,
)
from meshmsg.net.mdns import Advert, BrowseCallback, BrowseChange, ResolvedService
from meshmsg.net.peers import (
    DiscoveredPeer,
    PeerTable,
    StaticPeers,
    TokenBucket,
    TrustedNetworks,
    parse_peer_address,
)
from meshmsg.sim.rng import SeededRng

PORT = 7447
V = {b"v": str(PROTOCOL_VERSION).encode()}
ADAPTERS = [
    ifaddr.Adapter(
        "lo", "lo", [ifaddr.IP("127.0.0.1", 8, "lo"), ifaddr.IP(("::1", 0, 0), 128, "lo")]
    ),
    ifaddr.Adapter(
        "eth0",
        "eth0",
        [
            ifaddr.IP("10.77.0.1", 24, "eth0"),
            ifaddr.IP(("fd00::1", 0, 0), 64, "eth0"),
            ifaddr.IP(("fe80::1", 0, 2), 64, "eth0"),
        ],
    ),
    ifaddr.Adapter("wlan0", "wlan0", [ifaddr.IP("192.0.2.7", 24, "wlan0")]),
]  # fmt: skip
TRUSTED = TrustedNetworks.parse(["10.77.0.0/24"])


class FakeMdns:
    """An in-memory mDNS: records what we announce, lets the test announce peers."""

    needs_thread = False

    def __init__(self) -> None:
        self.interfaces: tuple[str, ...] | None = None
        self.opened = False
        self.close_calls = 0
        self.registered: dict[str, Advert] = {}
        self.history: list[tuple[str, str]] = []
        self.services: dict[str, ResolvedService] = {}
        self.callback: BrowseCallback | None = None
        self.register_failures = 0
        self.resolve_error = False

    def bind(self, interfaces: tuple[str, ...]) -> FakeMdns:
        self.interfaces = interfaces
        return self

    def open(self) -> None:
        self.opened = True

    def register(self, advert: Advert) -> str:
        if self.register_failures:
            self.register_failures -= 1
            raise TransportError("probe failed")
        self.registered[advert.name] = advert
        self.history.append(("register", advert.name))
        return advert.name

    def unregister(self, name: str) -> None:
        del self.registered[name]
        self.history.append(("unregister", name))

    def start_browsing(self, service_type: str, callback: BrowseCallback) -> None:
        assert service_type == SERVICE_TYPE
        self.callback = callback

    def resolve(self, service_type: str, name: str, timeout_s: float) -> ResolvedService | None:
        if self.resolve_error:
            raise TransportError("bad record")
        return self.services.get(name)

    def close(self) -> None:
        self.close_calls += 1

    # Test side ---------------------------------------------------------------------------------

    def announce(
        self,
        label: str,
        *addresses: str,
        port: int | None = PORT,
        txt: dict[bytes, bytes | None] | None = None,
        change: BrowseChange = BrowseChange.ADDED,
    ) -> str:
        name = f"{label}.{SERVICE_TYPE}"
        self.services[name] = ResolvedService(
            name=name, port=port, addresses=addresses, txt=V if txt is None else txt
        )
        self.fire(change, name)
        return name

    def withdraw(self, label: str) -> None:
        name = f"{label}.{SERVICE_TYPE}"
        self.services.pop(name, None)
        self.fire(BrowseChange.REMOVED, name)

    def fire(self, change: BrowseChange, name: str) -> None:
        assert self.callback is not None
        self.callback(change, name)


@pytest.fixture
def fake() -> FakeMdns:
    return FakeMdns()


@asynccontextmanager
async def discovery(
    fake: FakeMdns,
    config: NetConfig | None = None,
    trusted: TrustedNetworks = TRUSTED,
    rng: SeededRng | None = None,
) -> AsyncIterator[Discovery]:
    async with open_discovery(
        config or NetConfig(),
        trusted,
        PORT,
        rng or SeededRng(7, "disc"),
        backend_factory=fake.bind,
        adapters=lambda: ADAPTERS,
    ) as disc:
        await trio.testing.wait_all_tasks_blocked()
        yield disc


async def collect(disc: Discovery | StaticPeers, n: int, within_s: float) -> list[DiscoveredPeer]:
    got: list[DiscoveredPeer] = []
    with trio.move_on_after(within_s):
        while len(got) < n:
            got.append(await disc.next_peer())
    return got


# --- The advert ----------------------------------------------------------------------------------


async def test_advert_is_a_random_name_port_and_version_only(fake: FakeMdns) -> None:
    class KnownRng(SeededRng):
        def randbytes(self, n: int) -> bytes:
            assert n == INSTANCE_LABEL_BYTES
            return bytes(range(n))

    async with discovery(fake, rng=KnownRng(1)) as disc:
        (advert,) = fake.registered.values()
        label = bytes(range(INSTANCE_LABEL_BYTES)).hex()
        assert advert.name == f"{label}.{SERVICE_TYPE}"
        assert advert.server == f"{label}.local."  # not the machine's host name
        assert advert.port == PORT
        assert dict(advert.txt) == {"v": str(PROTOCOL_VERSION)}
        assert advert.addresses == ("10.77.0.1",)  # only our address inside the trusted net
        assert fake.interfaces == ("10.77.0.1",)  # zeroconf binds only there
        assert disc.statistics().instance == advert.name
        hostname = socket.gethostname().lower()
        shown = " ".join([advert.name, advert.server, *advert.txt, *advert.txt.values()]).lower()
        assert hostname not in shown


async def test_txt_stays_under_the_limit() -> None:
    config = NetConfig()
    txt = advert_txt(config)
    assert txt_wire_bytes(txt) == 1 + len(f"v={PROTOCOL_VERSION}")
    assert txt_wire_bytes(txt) < config.mdns_txt_max_bytes
    with pytest.raises(ConfigError, match="mdns_txt_max_bytes"):
        advert_txt(NetConfig(mdns_txt_max_bytes=txt_wire_bytes(txt)))


async def test_instance_name_rotates_new_before_old_is_withdrawn(
    fake: FakeMdns, autojump_clock: trio.testing.MockClock
) -> None:
    config = NetConfig(mdns_rotate_s=100.0)
    async with discovery(fake, config) as disc:
        (first,) = fake.registered
        await trio.sleep(99.0)
        assert list(fake.registered) == [first]
        await trio.sleep(2.0)
        (second,) = fake.registered
        assert second != first
        assert fake.history == [("register", first), ("register", second), ("unregister", first)]
        await trio.sleep(100.0)
        (third,) = fake.registered
        assert third not in (first, second)
        fake.fire(BrowseChange.REMOVED, first)  # our own goodbye, seen by our browser
        fake.fire(BrowseChange.ADDED, third)
        await trio.testing.wait_all_tasks_blocked()
        stats = disc.statistics()
        assert stats.registrations == 3
        assert stats.ignored_self == 2
        assert stats.peers.tracked == 0


async def test_failed_registration_is_retried_later(
    fake: FakeMdns, autojump_clock: trio.testing.MockClock
) -> None:
    fake.register_failures = 1
    config = NetConfig(mdns_advert_retry_s=30.0)
    async with discovery(fake, config) as disc:
        assert fake.registered == {}
        assert disc.statistics().advert_errors == 1
        await trio.sleep(31.0)
        assert len(fake.registered) == 1
        assert disc.statistics().registrations == 1


# --- Trusted networks ----------------------------------------------------------------------------


async def test_peers_outside_trusted_networks_are_ignored(fake: FakeMdns) -> None:
    async with discovery(fake) as disc:
        fake.announce("aa", "192.0.2.9")
        fake.announce("bb", "10.78.0.2")
        fake.announce("cc", "192.0.2.10", "10.77.0.3")  # one trusted address is enough
        await trio.testing.wait_all_tasks_blocked()
        (peer,) = await collect(disc, 3, within_s=0.1)
        assert (peer.host, peer.port) == ("10.77.0.3", PORT)
        assert peer.instance == f"cc.{SERVICE_TYPE}"
        assert peer.address == f"10.77.0.3:{PORT}"
        assert disc.statistics().ignored_untrusted == 2


def test_trusted_networks_from_cidrs_and_interfaces() -> None:
    nets = TrustedNetworks.parse(["10.1.0.0/16", "eth0", "10.77.0.0/24"], adapters=ADAPTERS)
    # eth0 brings its IPv4 and ULA networks, not fe80::/64 (the same prefix on every link).
    assert [str(n) for n in nets.networks] == ["10.1.0.0/16", "10.77.0.0/24", "fd00::/64"]
    assert "10.1.200.3" in nets
    assert "fd00::42" in nets
    assert "fe80::9%2" not in nets
    assert "192.0.2.7" not in nets
    assert "not-an-ip" not in nets
    assert nets.local_addresses(ADAPTERS) == ("10.77.0.1", "fd00::1")
    assert TrustedNetworks.parse(["fe80::/64"]).local_addresses(ADAPTERS) == ("fe80::1",)
    assert not TrustedNetworks.parse([])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("10.0.0.1/24", "host bits"),
        ("10.0.0.0/33", "bad trusted network"),
        ("eth9", "unknown interface 'eth9'"),
        ("10.0.0.1", "unknown interface"),  # a bare address is not a network
        ("bad name!", "neither a CIDR nor an interface"),
    ],
)
def test_bad_trusted_networks_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrustedNetworks.parse([spec], adapters=ADAPTERS)


async def test_no_trusted_network_means_discovery_is_off(
    fake: FakeMdns, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    caplog.set_level(logging.WARNING, logger="meshmsg.net.discovery")
    async with discovery(fake, trusted=TrustedNetworks()) as disc:
        stats = disc.statistics()
        assert not stats.enabled
        assert stats.disabled_reason == "no trusted network is configured"
        assert await collect(disc, 1, within_s=3600.0) == []
    assert fake.interfaces is None  # the backend was never built
    assert "mDNS discovery is off" in caplog.text


async def test_trusted_network_this_host_is_not_on_means_off(fake: FakeMdns) -> None:
    async with discovery(fake, trusted=TrustedNetworks.parse(["10.99.0.0/16"])) as disc:
        reason = disc.statistics().disabled_reason
        assert reason is not None
        assert "no address inside the trusted networks (10.99.0.0/16)" in reason
    assert fake.interfaces is None


# --- What is handed out --------------------------------------------------------------------------


async def test_one_address_is_handed_out_once(fake: FakeMdns) -> None:
    async with discovery(fake) as disc:
        fake.announce("aa", "10.77.0.2")
        fake.announce("bb", "10.77.0.2")  # same node, second name
        fake.announce("aa", "10.77.0.2", change=BrowseChange.UPDATED)
        await trio.testing.wait_all_tasks_blocked()
        assert len(await collect(disc, 2, within_s=0.1)) == 1
        # The peer rotates: new name first, then (1.7 s later) the old ones go: no new dial.
        fake.announce("cc", "10.77.0.2")
        await trio.testing.wait_all_tasks_blocked()
        fake.withdraw("aa")
        fake.withdraw("bb")
        await trio.testing.wait_all_tasks_blocked()
        assert await collect(disc, 1, within_s=0.1) == []
        assert disc.statistics().peers.tracked == 1
        # Every name gone: forgotten, so a later announcement is new again.
        fake.withdraw("cc")
        await trio.testing.wait_all_tasks_blocked()
        assert disc.statistics().peers.forgotten == 1
        fake.announce("dd", "10.77.0.2")
        await trio.testing.wait_all_tasks_blocked()
        assert [p.instance for p in await collect(disc, 1, 0.1)] == [f"dd.{SERVICE_TYPE}"]


async def test_a_service_that_moves_is_tracked_at_its_new_address(fake: FakeMdns) -> None:
    async with discovery(fake) as disc:
        fake.announce("aa", "10.77.0.2")
        fake.announce("aa", "10.77.0.3", change=BrowseChange.UPDATED)
        await trio.testing.wait_all_tasks_blocked()
        hosts = [p.host for p in await collect(disc, 3, within_s=0.1)]
        assert hosts == ["10.77.0.3"]  # the old address was forgotten before it was dialled
        assert disc.statistics().peers.tracked == 1


async def test_wrong_version_bad_port_and_unresolvable_are_ignored(fake: FakeMdns) -> None:
    async with discovery(fake) as disc:
        fake.announce("v2", "10.77.0.2", txt={b"v": b"2"})
        fake.announce("nov", "10.77.0.3", txt={b"id": b"x"})
        fake.announce("noport", "10.77.0.4", port=None)
        fake.fire(BrowseChange.ADDED, f"ghost.{SERVICE_TYPE}")  # resolves to nothing
        await trio.testing.wait_all_tasks_blocked()
        fake.resolve_error = True
        fake.announce("broken", "10.77.0.5")
        await trio.testing.wait_all_tasks_blocked()
        stats = disc.statistics()
        assert (stats.ignored_version, stats.ignored_invalid) == (2, 1)
        assert stats.resolve_failures == 2
        assert stats.resolving == 0
        assert await collect(disc, 1, within_s=0.1) == []


async def test_our_own_address_and_port_is_not_a_peer(fake: FakeMdns) -> None:
    async with discovery(fake) as disc:
        fake.announce("old-us", "10.77.0.1")  # e.g. a name we held before a restart
        await trio.testing.wait_all_tasks_blocked()
        assert disc.statistics().ignored_self == 1
        assert disc.statistics().peers.tracked == 0


async def test_peer_table_is_capped(fake: FakeMdns) -> None:
    config = NetConfig(max_discovered_peers=3)
    async with discovery(fake, config) as disc:
        for i in range(2, 7):
            fake.announce(f"p{i}", f"10.77.0.{i}")
        for i in range(3):  # many names for one tracked address are capped too
            fake.announce(f"alias{i}", "10.77.0.2")
        await trio.testing.wait_all_tasks_blocked()
        stats = disc.statistics().peers
        assert (stats.tracked, stats.dropped_full) == (3, 5)


async def test_dial_rate_limit(fake: FakeMdns, autojump_clock: trio.testing.MockClock) -> None:
    config = NetConfig(dial_attempts_per_s=2.0, dial_burst=3)
    async with discovery(fake, config) as disc:
        start = trio.current_time()
        for i in range(2, 9):
            fake.announce(f"p{i}", f"10.77.0.{i}")
        await trio.testing.wait_all_tasks_blocked()
        times, hosts = [], []
        async for peer in disc.peers():
            times.append(trio.current_time() - start)
            hosts.append(peer.host)
            if len(times) == 7:
                break
        # A burst of 3, then one every 1/2 s, in announcement order.
        assert times == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0, 1.5, 2.0])
        assert hosts == [f"10.77.0.{i}" for i in range(2, 9)]
        assert disc.statistics().peers.handed_out == 7


def test_token_bucket_refills_to_its_burst_and_no_further() -> None:
    bucket = TokenBucket(4.0, 2)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.delay(0.0) == pytest.approx(0.25)
    assert bucket.take(100.0)
    assert bucket.take(100.0)
    assert not bucket.take(100.0)
    with pytest.raises(ConfigError):
        TokenBucket(0.0, 1)
    with pytest.raises(ConfigError):
        TokenBucket(1.0, 0)


async def test_failed_peer_is_retried_with_doubling_backoff(
    fake: FakeMdns, autojump_clock: trio.testing.MockClock
) -> None:
    config = NetConfig(peer_retry_initial_s=2.0, peer_retry_max_s=5.0)
    async with discovery(fake, config) as disc:
        fake.announce("aa", "10.77.0.2")
        peer = await disc.next_peer()
        start = trio.current_time()
        gaps = []
        for _ in range(3):
            disc.report_failure(peer)
            t = trio.current_time()
            peer = await disc.next_peer()
            gaps.append(trio.current_time() - t)
        assert gaps == pytest.approx([2.0, 4.0, 5.0])  # capped at peer_retry_max_s
        disc.report_success(peer)
        disc.report_failure(peer)
        t = trio.current_time()
        await disc.next_peer()
        assert trio.current_time() - t == pytest.approx(2.0)
        assert trio.current_time() - start == pytest.approx(13.0)
        assert disc.statistics().peers.failures_reported == 4


def test_failure_of_a_forgotten_peer_is_a_no_op() -> None:
    table = PeerTable(NetConfig())
    peer = DiscoveredPeer(host="10.0.0.1", port=1, instance=None, seen_at=0.0)
    table.report_failure(peer, now=0.0)
    table.report_success(peer)
    assert table.statistics().failures_reported == 0
    assert table.next_wake(0.0) is None


async def test_event_flood_is_dropped_not_queued(fake: FakeMdns) -> None:
    config = NetConfig(mdns_event_queue=2)
    async with discovery(fake, config) as disc:
        for i in range(5):  # all five arrive before the event task runs again
            fake.fire(BrowseChange.ADDED, f"flood{i}.{SERVICE_TYPE}")
        await trio.testing.wait_all_tasks_blocked()
        stats = disc.statistics()
        # One goes straight to the waiting event task, two fill the queue, two are dropped.
        assert stats.events_dropped == 2
        assert stats.resolve_failures == 3  # the three taken were looked up (and not found)


# --- Shutdown ------------------------------------------------------------------------------------


async def test_shutdown_closes_backend_and_ends_the_peer_stream(fake: FakeMdns) -> None:
    ended = trio.Event()
    got: list[DiscoveredPeer] = []

    async def consume(disc: Discovery) -> None:
        got.extend([peer async for peer in disc.peers()])
        ended.set()

    async with trio.open_nursery() as nursery:
        async with discovery(fake) as disc:
            nursery.start_soon(consume, disc)
            fake.announce("aa", "10.77.0.2")
            await trio.testing.wait_all_tasks_blocked()
            assert fake.close_calls == 0
        with trio.fail_after(1):
            await ended.wait()
    assert fake.close_calls == 1
    assert [p.host for p in got] == ["10.77.0.2"]
    fake.fire(BrowseChange.ADDED, f"late.{SERVICE_TYPE}")  # a straggler from zeroconf's thread
    with pytest.raises(TransportError, match="closed"):
        await disc.next_peer()


async def test_an_error_in_the_body_comes_out_unwrapped_and_still_closes(fake: FakeMdns) -> None:
    with pytest.raises(KeyError, match="boom"):
        async with discovery(fake):
            raise KeyError("boom")
    assert fake.close_calls == 1


async def test_cancellation_from_outside_closes_the_backend(
    fake: FakeMdns, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.move_on_after(5.0) as scope:
        async with discovery(fake) as disc:
            await disc.next_peer()
    assert scope.cancelled_caught
    assert fake.close_calls == 1


async def test_bad_port_is_refused(fake: FakeMdns) -> None:
    with pytest.raises(ConfigError, match="port 0"):
        async with open_discovery(NetConfig(), TRUSTED, 0, SeededRng(1)):
            pass


# --- The thread bridge, with real threads --------------------------------------------------------


class ThreadedFake(FakeMdns):
    """Blocking methods in worker threads and browser events from a foreign thread."""

    needs_thread = True

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()

    def register(self, advert: Advert) -> str:
        self.threads.add(threading.current_thread().name)
        return super().register(advert)

    def start_browsing(self, service_type: str, callback: BrowseCallback) -> None:
        super().start_browsing(service_type, callback)
        self.services[f"t.{SERVICE_TYPE}"] = ResolvedService(
            name=f"t.{SERVICE_TYPE}", port=PORT, addresses=("10.77.0.9",), txt=V
        )
        fire: Callable[[], None] = lambda: callback(BrowseChange.ADDED, f"t.{SERVICE_TYPE}")  # noqa: E731
        threading.Thread(target=fire, name="fake-browser").start()


async def test_events_cross_from_a_foreign_thread() -> None:
    fake = ThreadedFake()
    async with discovery(fake) as disc:
        with trio.fail_after(10):  # real time: a bound, not a sleep
            peer = await disc.next_peer()
        assert peer.host == "10.77.0.9"
        assert threading.main_thread().name not in fake.threads  # blocking calls ran in a worker
    assert fake.close_calls == 1


# --- Static peers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1:7000", ("10.0.0.1", 7000)),
        ("node-1.example.org:1", ("node-1.example.org", 1)),
        ("localhost:65535", ("localhost", 65535)),
        ("[::1]:7447", ("::1", 7447)),
        ("[fe80::1%eth0]:7447", ("fe80::1%eth0", 7447)),
    ],
)
def test_static_peer_addresses_parse(text: str, expected: tuple[str, int]) -> None:
    assert parse_peer_address(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "10.0.0.1",
        "10.0.0.1:",
        ":7000",
        "10.0.0.1:0",
        "10.0.0.1:070",
        "10.0.0.1:65536",
        "10.0.0.1:+70",
        "10.0.0.1:7000 ",
        " 10.0.0.1:7000",
        "::1:7000",  # IPv6 needs brackets
        "[10.0.0.1]:7000",
        "[::1]",
        "[::g]:7000",
        "999.1.1.1:7000",
        "10.0.0:7000",
        "bad_host:1",
        "-lead.example:1",
        "a..b:1",
        "héllo:1",
        "a" * 300 + ":1",
        "",
    ],
)
def test_bad_static_peer_addresses_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="bad peer address"):
        parse_peer_address(text)


def test_static_peers_refuse_duplicates_and_too_many() -> None:
    with pytest.raises(ConfigError, match="duplicate"):
        StaticPeers(["10.0.0.1:7000", "10.0.0.1:7000"], NetConfig())
    with pytest.raises(ConfigError, match="at most 2"):
        StaticPeers(["a:1", "b:1", "c:1"], NetConfig(max_discovered_peers=2))
    with pytest.raises(ConfigError, match="bad peer address"):
        StaticPeers(["10.0.0.1:7000", "oops"], NetConfig())


async def test_static_peers_are_handed_out_under_budget_with_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = NetConfig(dial_attempts_per_s=1.0, dial_burst=1, peer_retry_initial_s=10.0)
    static = StaticPeers(["10.0.0.1:7000", "[::1]:7001"], config)
    assert static.addresses == ("10.0.0.1:7000", "[::1]:7001")
    start = trio.current_time()
    first, second = await collect(static, 2, within_s=math.inf)
    assert (first.address, second.address) == ("10.0.0.1:7000", "[::1]:7001")
    assert first.instance is None
    assert trio.current_time() - start == pytest.approx(1.0)  # one dial per second
    assert await collect(static, 1, within_s=1000.0) == []  # not again unless it fails
    static.report_failure(first)
    t = trio.current_time()
    again = await static.next_peer()
    assert again.address == first.address
    assert trio.current_time() - t == pytest.approx(10.0)
    static.report_success(again)
    assert static.statistics().handed_out == 3


async def test_static_peer_stream(autojump_clock: trio.testing.MockClock) -> None:
    static = StaticPeers(["10.0.0.1:7000"], NetConfig())
    async for peer in static.peers():
        assert peer.seen_at == trio.current_time()
        break
    assert static.statistics().tracked == 1


class GatedFake(FakeMdns):
    """Lookups block in worker threads until the test opens the gate."""

    needs_thread = True

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)

    def resolve(self, service_type: str, name: str, timeout_s: float) -> ResolvedService | None:
        self.entered.release()
        self.gate.wait(10)
        return super().resolve(service_type, name, timeout_s)


async def test_lookups_in_flight_follow_later_events() -> None:
    fake = GatedFake()
    async with discovery(fake, NetConfig(mdns_max_resolving=2)) as disc:
        fake.announce("aa", "10.77.0.2")
        fake.announce("bb", "10.77.0.3")
        fake.announce("cc", "10.77.0.4")  # a third concurrent lookup is refused
        for _ in range(2):
            assert await trio.to_thread.run_sync(fake.entered.acquire, True, 10)
        fake.withdraw("aa")  # gone while being looked up: its answer must be dropped
        fake.announce("bb", "10.77.0.5", change=BrowseChange.UPDATED)  # the answer is stale
        await trio.testing.wait_all_tasks_blocked()
        assert disc.statistics().events_dropped == 1
        assert disc.statistics().resolving == 2
        fake.gate.set()
        with trio.fail_after(10):  # bounded waits on real worker threads
            peer = await disc.next_peer()
            # aa's worker thread delivers its (dropped) answer at some point: poll, bounded.
            while disc.statistics().resolving:  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert peer.host == "10.77.0.5"
        assert disc.statistics().peers.tracked == 1
