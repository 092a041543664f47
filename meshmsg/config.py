"""Every limit and interval of meshmsg, in one frozen configuration.

Each value is declared with :func:`limit`, which records its unit and the reason for its value.
``docs/protocol.md`` carries the same table, and ``tests/test_config.py`` checks that no field
lacks a unit or a reason. Sections group the values by the layer that enforces them; a
:class:`NodeConfig` holds one of each. Change a value with :meth:`NodeConfig.replace` or by
building a section with keyword arguments; nothing else in the code base holds a bare number
that bounds remote input.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Final

from meshmsg.errors import ConfigError

PROTOCOL_NAME: Final = "meshmsg"
PROTOCOL_VERSION: Final = 1
# The Noise prologue binds protocol name and version: a peer speaking another version fails the
# handshake instead of misreading our records (Noise spec §6).
PROLOGUE: Final = b"meshmsg/1"

# Contact code format (docs/protocol/identity.md). Part of the format: a change needs a new code
# version, so these are constants rather than configuration.
CONTACT_NAME_MAX_BYTES: Final = 64  # a display name, not a profile; keeps the QR code small
CONTACT_MAX_HINTS: Final = 4  # a few addresses (LAN, VPN, public); discovery finds the rest
CONTACT_HINT_MAX_BYTES: Final = 64  # "host:port": a bracketed IPv6 with port is at most 47
# Keystore file format. KDF parameters are read from the file, so they are bounded: a damaged or
# hostile file cannot make us allocate more than libsodium's SENSITIVE profile (4 passes, 1 GiB).
KEYSTORE_MAX_OPS_LIMIT: Final = 4  # nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE
KEYSTORE_MAX_MEM_LIMIT: Final = 1 << 30  # nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE, bytes
KEYSTORE_MAX_FILE_BYTES: Final = 65_536  # an identity is 97 bytes; room for more secrets later


def limit(default: Any, unit: str, why: str) -> Any:
    """Declare a configuration value with its unit and the reason for its default."""
    return field(default=default, metadata={"unit": unit, "why": why})


@dataclass(frozen=True, slots=True, kw_only=True)
class WireLimits:
    """Bounds on the byte format (framing and the strict CBOR codec)."""

    max_frame_bytes: int = limit(
        65_535, "bytes", "2-byte length prefix; also the Noise message limit (spec §3)"
    )
    max_plaintext_bytes: int = limit(
        65_519,
        "bytes",
        "65,535 minus the 16-byte AEAD tag; noiseprotocol 0.3.1 checks plaintext against 65,535 "
        "and desynchronises its nonce on larger input (issue #44)",
    )
    max_handshake_payload_bytes: int = limit(
        1_024, "bytes", "handshake payloads carry only a small hello; the library checks none"
    )
    max_records_per_frame: int = limit(
        256, "records", "bounds per-frame work; 256 small records fill a 64 KiB frame anyway"
    )
    max_cbor_depth: int = limit(
        16, "levels", "our records nest at most 4 deep; cbor2 default is 400"
    )
    max_container_items: int = limit(
        1_024, "items", "largest list we send (ids in a sync batch) stays below this"
    )
    max_string_bytes: int = limit(
        65_519, "bytes", "a byte or text string cannot be larger than one frame's plaintext"
    )
    max_receive_buffer_bytes: int = limit(
        131_072, "bytes", "two maximal frames: a peer cannot make us buffer more per link"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkConfig:
    """Timers and limits of one Noise link."""

    handshake_timeout_s: float = limit(
        10.0, "s", "a half-open handshake holds memory; WireGuard retries after 5 s, Briar 20 s"
    )
    idle_timeout_s: float = limit(
        60.0, "s", "a peer silent for this long (no frame, not even a keepalive) is gone"
    )
    keepalive_interval_s: float = limit(
        15.0, "s", "a quarter of the idle timeout, so three keepalives may be lost"
    )
    rekey_interval_s: float = limit(
        600.0, "s", "design decision: rekey at least every 10 minutes of session time"
    )
    rekey_after_frames: int = limit(
        1 << 20, "frames", "design decision: rekey at least every 2^20 frames per direction"
    )
    hard_limit_factor: int = limit(
        2, "x", "a peer that never rekeys is cut off at twice the limits (WireGuard's reject-after)"
    )
    max_batch_bytes: int = limit(
        65_519, "bytes", "records are joined into one frame up to one maximal plaintext"
    )
    verified_identity_cache: int = limit(
        1_024,
        "identities",
        "identity proofs already verified (an Ed25519 check each) are remembered: a peer met "
        "again, or twice in one handshake, costs a dict lookup; oldest forgotten first",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageLimits:
    """Limits on end-to-end messages and envelopes."""

    max_body_bytes: int = limit(32_768, "bytes", "Briar's 32 KiB inline limit; larger needs chunks")
    envelope_size_buckets: tuple[int, ...] = limit(
        (256, 1_024, 4_096, 16_384, 40_960),
        "bytes",
        "padding buckets hide sizes from relays; the largest holds a 32 KiB body plus headers",
    )
    period_s: float = limit(86_400.0, "s", "design B+: one key period per day (both profiles)")
    latency_budget_s: float = limit(
        86_400.0, "s", "office profile: mail older than a day is not expected to arrive"
    )
    clock_skew_s: float = limit(86_400.0, "s", "Briar's MAX_CLOCK_DIFFERENCE: ±24 h tolerated")
    max_meeting_skew_s: float = limit(
        5 * 365 * 86_400.0,
        "s",
        "a meeting still heals (and repairs a channel clock one wrong reading pushed ahead) "
        "with the contact's key period this far from ours; bounded because the new epoch "
        "ratchets once per period of the difference; beyond it the key exchange is refused",
    )
    tag_window: int = limit(
        64, "counters", "tags precomputed ahead per (contact, period); BTP uses 32"
    )
    max_messages_per_period: int = limit(
        1_000,
        "messages",
        "counters per (contact, direction, period, epoch); 1,000 a day is one every 86 s around "
        "the clock, far above what a person writes to one contact. Offline, at the cap sealing "
        "waits for the next period or meeting (a period cannot end early: the receiver's window "
        "could not follow it); on a live link the channel is healed into a fresh epoch before the "
        "cap (renew_below_fraction), so a bot or a duty desk is never stopped",
    )
    renew_below_fraction: float = limit(
        0.25,
        "fraction of max_messages_per_period",
        "on a live link, a heal (a fresh epoch, a fresh budget) starts once the budget left "
        "falls to this share: one round trip of headroom at ~250 messages, so sending never "
        "stalls on a LAN; every heal keeps a receive epoch open (max_epochs_retained)",
    )
    max_inner_bytes: int = limit(
        34_816,
        "bytes",
        "inner plaintext cap: a 32 KiB body plus 2 KiB of CBOR fields; fits the 40 KiB bucket",
    )
    max_epochs_retained: int = limit(
        4,
        "epochs",
        "receive keys of older meetings (heals) kept for mail still in flight; each costs up to "
        "(W+F) periods x tag_window tags per contact; older ones report late mail as expired",
    )
    max_skipped_per_period: int = limit(
        64,
        "counters",
        "counters overtaken in the tag window but still decryptable, per (contact, period); "
        "Signal's MAX_SKIP idea at the size of one window",
    )
    max_expired_tags: int = limit(
        128,
        "tags per contact",
        "tags of deleted keys kept so late mail shows as expired, never silently lost; two "
        "periods' windows",
    )
    expired_tag_grace_s: float = limit(
        14 * 86_400.0,
        "s",
        "how long a deleted period's tags are still recognised: no envelope outlives max_ttl_s",
    )
    expired_tail_counters: int = limit(
        8,
        "counters",
        "when a period's keys go, unreceived counters kept as expired tags above the highest "
        "received one (every gap below it is kept): the last few sent are the likely stragglers",
    )
    default_ttl_s: float = limit(
        86_400.0, "s", "relays drop envelopes after this; equals the latency budget"
    )
    max_ttl_s: float = limit(14 * 86_400.0, "s", "crisis profile budget; longer is refused")
    max_hops: int = limit(16, "hops", "bounds how far a copy wanders in an epidemic mesh")
    origin_hops_max: int = limit(
        3,
        "hops",
        "an originator's copies start at a random hop count 0..3, so a transfer with "
        "hops = 1 does not name its sender to a relay (issue #11, 4); costs at most 3 of max_hops",
    )
    origin_ttl_jitter_s: float = limit(
        3_600.0,
        "s",
        "an originator's envelope expires a random 0..this (at most a tenth of its "
        "TTL) early, so a full lifetime does not name the sender to a relay (issue #11, 4)",
    )
    default_copies: int = limit(
        6, "copies", "binary Spray-and-Wait L=6, the ONE default used in the reference runs"
    )
    max_contacts: int = limit(
        1_024, "contacts", "bounds the tag table: contacts x periods x window x 16 B"
    )
    dedup_entries: int = limit(
        50_000, "message ids", "remembered to drop duplicates; oldest forgotten first"
    )
    send_receipts: bool = limit(
        True, "flag", "delivered/read receipts travel back end to end (off in ONE-mode research)"
    )
    receipt_delay_s: float = limit(
        2.0,
        "s",
        "receipts for mail its sender handed us itself (and read receipts) wait this long to be "
        "batched: the sender already knows we took it, so only the batching is worth a delay",
    )
    receipt_relayed_delay_min_s: float = limit(
        30.0,
        "s",
        "a delivered receipt for mail a relay handed us is sealed a uniformly random "
        "min..max after the opening, so the relay cannot time it from the hand-over (issue #11, "
        "4); 30 s is far outside the old 2 s plus a round trip",
    )
    receipt_relayed_delay_max_s: float = limit(
        300.0,
        "s",
        "upper end of that random delay: relayed mail takes minutes to days and its receipt "
        "travels back by relays too, so 5 min more on a relayed 'delivered' costs little; "
        "longer adds little cover for a later tick",
    )
    receipt_hold_s: float = limit(
        600.0,
        "s",
        "that receipt is not offered to the relay that delivered its mail for this long after "
        "sealing (or until the relay's last link ends), so it leaves by another peer where one "
        "exists; afterwards it goes to that relay too (it may be our only peer)",
    )
    decoy_claim_rate: float = limit(
        0.02,
        "probability",
        "each offered envelope we lack and cannot open is claimed as ours with this "
        "probability, so a claim does not name the recipient to the relay (issue #11, 4); a "
        "claimed carried copy goes as one copy and its giver keeps its own "
        "(core/exchange/claims.py): a decoy costs one transfer and takes no mail away",
    )
    purge_on_delivery: bool = limit(
        True, "flag", "recipients spread purge tokens so carriers drop delivered copies"
    )

    def __post_init__(self) -> None:
        low, high = self.receipt_relayed_delay_min_s, self.receipt_relayed_delay_max_s
        if not 0 <= low <= high:
            raise ConfigError("need 0 <= receipt_relayed_delay_min_s <= ..._max_s")
        if self.receipt_hold_s < 0 or self.receipt_delay_s < 0:
            raise ConfigError("receipt delays and holds cannot be negative")
        if not 0.0 <= self.decoy_claim_rate <= 1.0:
            raise ConfigError("decoy_claim_rate is a probability: 0 to 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupLimits:
    """Limits of groups: membership operations, sender keys, mail (docs/protocol/groups.md)."""

    max_members: int = limit(
        128,
        "members",
        "issue #14 asks for at least 100; a removal costs each remaining member one sender key "
        "per member over the pairwise channels (128 x 127 small envelopes), and the resolution "
        "of the operation graph is quadratic in operations, not members",
    )
    max_groups: int = limit(
        64,
        "groups",
        "groups per node: each holds its operation graph (max_ops) and sender keys of every "
        "member in the receive window; 64 x 128 members x 17 periods of keys stays near 20 MB",
    )
    max_ops: int = limit(
        1_000,
        "operations",
        "signed membership operations per group: every one is kept (a late member needs the whole "
        "graph to verify it) and the resolution is O(ops^2) at worst; 1,000 resolves in ~0.1 s",
    )
    max_pending_ops: int = limit(
        256,
        "operations",
        "operations held while one of their dependencies is missing; a peer cannot grow this "
        "without bound by sending operations that depend on nothing we will ever see",
    )
    max_deps: int = limit(
        16,
        "operation ids",
        "hash links per operation: the heads its author had seen; concurrent branches rarely "
        "exceed a handful, and each is 32 bytes of every operation",
    )
    max_ops_per_message: int = limit(
        64,
        "operations",
        "operations in one GroupOps end-to-end message (~300 B each: fits max_inner_bytes); "
        "a larger history goes in several messages",
    )
    rotation_interval_s: float = limit(
        7 * 86_400.0,
        "s",
        "each member draws a fresh sender chain at least this often (research: 7 days); a thief "
        "of a member's state reads that member's group mail until the next rotation",
    )
    rotation_after_messages: int = limit(
        1_000, "messages", "a sender chain is also replaced after this many messages"
    )
    max_generations_retained: int = limit(
        4,
        "chains per member",
        "sender chains of one member kept for mail in flight after it rotated; older ones go "
        "(their late mail shows as undecryptable)",
    )
    max_queued_per_member: int = limit(
        64,
        "envelopes",
        "group records waiting for one member's pairwise channel (each batch fills at most one "
        "envelope); beyond, the oldest go: a member we never met cannot read our group mail anyway",
    )
    queue_retry_s: float = limit(
        10.0,
        "s",
        "group records for a member whose pairwise channel cannot seal yet (not paired, a key "
        "exchange running, the period's counters used up, our outbox full) are tried this often",
    )
    tag_window: int = limit(
        16,
        "counters",
        "group tags precomputed per (member, period): a quarter of the pairwise window, because a "
        "member holds one chain per other member (128 x 17 periods x 16 tags ~ 3.5 MB per group)",
    )
    name_max_bytes: int = limit(
        64, "bytes", "a group name is a label in lists, like a contact name (64 bytes)"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    """Limits of the relay store (mail carried for others)."""

    max_store_bytes: int = limit(
        256 * 1024 * 1024, "bytes", "global cap on relay storage (security research §4.6)"
    )
    max_store_envelopes: int = limit(
        200_000, "envelopes", "bounds the in-memory index independent of sizes"
    )
    contact_reserved_fraction: float = limit(
        0.5, "fraction", "half of the space is reserved for mail from or via contacts"
    )
    stranger_quota_fraction: float = limit(
        0.05, "fraction", "one stranger link may fill at most 5 % of the store (Sybil floods)"
    )
    strangers_total_fraction: float = limit(
        0.25, "fraction", "all strangers together get at most a quarter"
    )
    bodies_on_disk: bool = limit(
        False,
        "flag",
        "carried envelopes' bodies leave memory once committed and are read back for a "
        "transfer or an opening (LoadEnvelope): 100,000 of them in <= 100 MiB (issue #13). "
        "The daemon sets it; the simulator has no disk and keeps them (docs/storage.md)",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncConfig:
    """Limits of set reconciliation between two stores."""

    split_fanout: int = limit(
        16,
        "children",
        "trie fanout (2, 4, 16 or 256; both peers alike); 16 measured cheapest within 4 round "
        "trips at 100,000 items and 100 differences (docs/protocol/sync.md)",
    )
    fingerprint_bytes: int = limit(
        4,
        "bytes",
        "per node; ~300 comparisons of differing nodes per 100-difference session miss one "
        "with odds 300/2^32 (1 in 14 million; 3 bytes: 1 in 56,000), salted so never twice",
    )
    ids_outright_max: int = limit(
        2, "ids", "a differing node this small is listed at once: 2 ids cost less than a SUM"
    )
    id_list_threshold: int = limit(
        64,
        "ids",
        "in a session's tail, a differing node that is probably not pure and holds at most this "
        "many ids is listed rather than split: one round trip less (depth-3 nodes hold ~24 at "
        "100,000 ids, ~49 at 200,000)",
    )
    tail_nodes: int = limit(
        64,
        "nodes",
        "below this many open nodes a session is in its tail and lists nodes up to "
        "id_list_threshold; above, listing only where it costs less than a split (bytes win)",
    )
    min_pure_probability: float = limit(
        0.5,
        "probability",
        "describe a differing node by SUM (21 B) rather than SPLIT (65 B) when at least this "
        "likely to hold exactly one difference; break-even is ~0.25, higher saves round trips",
    )
    leaf_capacity: int = limit(
        32, "ids", "ids per ItemSet leaf before it splits; local memory layout, not on the wire"
    )
    max_message_bytes: int = limit(
        60_000,
        "bytes",
        "one SyncMessage payload, so a message fits one 65,519-byte frame with the CBOR "
        "record around it; larger rounds continue in the next message",
    )
    max_round_trips: int = limit(
        128,
        "messages each way",
        "a 200,000-id store against an empty one needs 55 (3.2 MB in 60 kB messages); a chain "
        "of crafted ids adds at most one per trie level (32)",
    )
    max_ids_per_list: int = limit(
        1_024, "ids", "longest id list accepted from a peer (16 kB); ours end at id_list_threshold"
    )
    max_pending_tasks: int = limit(
        65_536,
        "entries",
        "queued entries each way; an honest session peaks near the number of differing nodes "
        "of one trie level, a peer claiming every child differs is cut off here",
    )
    max_diff_ids: int = limit(
        262_144,
        "ids",
        "ids a peer may claim we lack in one session: above max_store_envelopes, so an honest "
        "peer never reaches it; bounds the memory one session can take",
    )
    max_node_session_ids: int = limit(
        1_048_576,
        "ids",
        "what all running sessions of a node may hold together (ids learnt, and lists pushed "
        "from): five full 200,000-id stores, about 50 MB; 256 links of max_diff_ids could "
        "otherwise hold 67 million (issue #11)",
    )
    max_transfers_per_sync: int = limit(
        4_096, "envelopes", "bounds the work one meeting can ask of a node"
    )
    envelopes_per_transmit: int = limit(
        64,
        "envelopes",
        "transfers joined into one Transmit (batching); the ONE mode of the simulator sets 1 so "
        "each envelope is paced and aborted on its own",
    )

    def __post_init__(self) -> None:
        # Reconciliation relies on these relations: a split or an id list always fits one
        # message, and a node at the last trie level (one id) is always listed.
        if self.split_fanout not in (2, 4, 16, 256):
            raise ConfigError("split_fanout must be 2, 4, 16 or 256")
        if not 1 <= self.fingerprint_bytes <= 16:
            raise ConfigError("fingerprint_bytes must be between 1 and 16")
        if not 1 <= self.ids_outright_max <= self.id_list_threshold <= self.max_ids_per_list:
            raise ConfigError("need 1 <= ids_outright_max <= id_list_threshold <= max_ids_per_list")
        if not 8_192 <= self.max_message_bytes <= 60_000:
            raise ConfigError("max_message_bytes must be between 8,192 and 60,000")
        if 8 + 16 * self.id_list_threshold > self.max_message_bytes:
            raise ConfigError("an id list of id_list_threshold ids must fit one message")
        if self.max_round_trips < 1 or self.max_pending_tasks < 1 or self.leaf_capacity < 1:
            raise ConfigError("sync bounds must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingConfig:
    """Which store-and-forward policy a node runs, and its parameters (ONE names in brackets)."""

    policy: str = limit(
        "spray-and-wait",
        "name",
        "direct | epidemic | spray-and-wait | prophet; binary Spray-and-Wait bounds relay storage "
        "by its copy budget (docs/simulator.md has the simulator evidence)",
    )
    copies: int = limit(6, "copies", "Spray-and-Wait L [nrofCopies]; the ONE reference runs use 6")
    binary: bool = limit(
        True, "flag", "binary spraying halves copies [binaryMode]; optimal (SIGCOMM'05)"
    )
    prophet_p_init: float = limit(
        0.75, "probability", "PRoPHET P_init, the ONE's hard-coded default"
    )
    prophet_beta: float = limit(0.25, "factor", "PRoPHET transitivity scaling beta (ONE default)")
    prophet_gamma: float = limit(0.98, "factor per unit", "PRoPHET aging gamma (ONE default)")
    prophet_time_unit_s: float = limit(
        30.0, "s", "seconds per PRoPHET aging unit [secondsInTimeUnit], as in the ONE runs"
    )
    max_route_entries: int = limit(
        1_024, "entries", "bounds the predictability table a peer may send and we keep"
    )
    drop_after_delivery: bool = limit(
        True,
        "flag",
        "a carrier drops its copy once the recipient took custody; the ONE keeps it "
        "(ActiveRouter deleteDelivered=false), so ONE-mode scenarios turn this off",
    )
    direct_first: bool = limit(
        True,
        "flag",
        "own mail is not offered to relays while its recipient has a reconciled link; offered "
        "to all when that link ends (core/exchange/directfirst.py); off in ONE mode",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class NetConfig:
    """Limits of the real network driver (net/)."""

    max_links: int = limit(256, "links", "bounds sockets and memory per node")
    max_half_open: int = limit(64, "handshakes", "security research §4.6: 64 half-open globally")
    max_half_open_per_address: int = limit(4, "handshakes", "one host cannot take all slots")
    dial_attempts_per_s: float = limit(
        5.0, "dials/s", "security research §4.6: at most 5 connection attempts/s from discovery"
    )
    max_discovered_peers: int = limit(1_024, "peers", "zeroconf's cache is capped; ours too")
    mdns_txt_max_bytes: int = limit(400, "bytes", "TXT over ~9 KB fails silently; stay tiny")
    mdns_rotate_s: float = limit(
        3_600.0, "s", "advert instance names rotate so presence is not linkable across hours"
    )
    dial_burst: int = limit(
        5, "dials", "token-bucket depth: a burst of one second's worth of dials, then the rate"
    )
    peer_retry_initial_s: float = limit(
        2.0, "s", "first retry of a peer whose dial failed; doubles after each further failure"
    )
    peer_retry_max_s: float = limit(
        300.0, "s", "backoff ceiling: a peer that is down is still tried every 5 minutes"
    )
    peer_audit_interval_s: float = limit(
        5.0,
        "s",
        "a peer handed out is checked this often; found neither dialled, linked nor reached "
        "through another link twice in a row (a link closed before it authenticated, a "
        "duplicate whose twin then ended, a dial dropped) it is offered again after its backoff",
    )
    mdns_resolve_timeout_s: float = limit(
        3.0, "s", "zeroconf's get_service_info default; also bounds how long shutdown waits"
    )
    mdns_max_resolving: int = limit(
        16, "lookups", "concurrent resolves (one worker thread each); a name flood is dropped"
    )
    mdns_event_queue: int = limit(
        256, "events", "browser events waiting for the trio side; beyond this they are dropped"
    )
    mdns_advert_retry_s: float = limit(
        30.0, "s", "after a failed registration the advert is retried this much later"
    )
    # --- the trio driver (net/runner.py, net/tcp.py) ---
    first_byte_timeout_s: float = limit(
        3.0,
        "s",
        "an honest initiator writes Noise message 1 as soon as it connects; a silent inbound "
        "socket loses its half-open slot after this (anti-slowloris; below research §4.6's 5 s)",
    )
    connect_timeout_s: float = limit(
        5.0, "s", "a LAN peer answers a SYN in milliseconds; a dead address must not hold a dialer"
    )
    max_concurrent_dials: int = limit(
        8, "dials", "connects in flight; more gain nothing on a LAN and cost sockets"
    )
    max_pending_dials: int = limit(
        64, "dials", "Dial effects waiting for a dialer; beyond this a dial is dropped and reported"
    )
    send_queue_bytes: int = limit(
        1 << 20,
        "bytes",
        "per-link writer queue: bytes waiting behind the write in progress; more means a slow "
        "peer and only its link closes (an empty queue takes any burst). Bytes, not a frame "
        "count: many small sends during one slow write are a busy moment, not a slow peer. "
        "256 slow links hold at most 256 MiB",
    )
    close_linger_s: float = limit(
        2.0, "s", "a closing link flushes its queue (the Close record) for at most this long"
    )
    read_chunk_bytes: int = limit(
        65_536, "bytes", "one receive_some call: a maximal frame, bounding memory per read"
    )
    pump_queue_inputs: int = limit(
        256,
        "inputs",
        "inputs waiting for the one task that owns the Node; a full queue stops socket readers, "
        "so TCP pushes back on peers",
    )
    max_pending_persists: int = limit(
        4_096,
        "effects",
        "Persist effects not yet committed (a few MiB); past this the pump takes no new input "
        "until the disk catches up, so a slow disk slows peers instead of growing memory",
    )
    max_persists_per_commit: int = limit(
        1_024,
        "effects",
        "group commit: Persist effects waiting together share one transaction and one fsync "
        "(an API batch of 1,000 messages is one); bounds the transaction and the first's wait",
    )
    storage_retry_s: float = limit(
        1.0, "s", "a failed commit (StorageError is transient: a busy lock) is retried this later"
    )
    storage_max_attempts: int = limit(
        5,
        "attempts",
        "after this many failed commits in a row the driver stops: it must not acknowledge "
        "custody it cannot keep",
    )
    event_queue_events: int = limit(
        256,
        "events",
        "per subscriber; a subscriber that falls this far behind is disconnected, never the pump",
    )
    timer_max_sleep_s: float = limit(
        5.0,
        "s",
        "the timer sleeps in monotonic time but deadlines are wall-clock: re-reading the clock "
        "this often bounds how late a wall-clock jump or a suspend makes a timer",
    )
    timer_min_interval_s: float = limit(
        0.001,
        "s",
        "a deadline still in the past after handle_timer (a core bug) cannot starve inputs",
    )
    shutdown_flush_s: float = limit(
        10.0,
        "s",
        "a clean stop still commits the writes the node already issued (statuses it reported); "
        "a dead disk must not hang the stop for longer",
    )
    # --- the daemon's local API (net/api.py) ---
    api_max_request_bytes: int = limit(
        262_144,
        "bytes",
        "a 32 KiB message body JSON-escaped as \\uXXXX is at most 6x larger, plus the envelope",
    )
    api_max_ws_clients: int = limit(
        16, "connections", "live-event subscribers (CLI chats, a web UI); each holds an event queue"
    )
    api_max_messages: int = limit(
        1_000, "messages", "most messages one GET returns; older ones are paged with ?before="
    )
    api_max_read_marks: int = limit(
        4_096,
        "conversations",
        "read positions the web UI keeps (app/readmarks.py): every contact (1,024) and group (64) "
        "with room for past ones; beyond it the longest-read one is forgotten (shown unread once)",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageConfig:
    """The node's database on disk (net/storage.py)."""

    busy_timeout_s: float = limit(
        5.0,
        "s",
        "one writer thread; only a backup or a CLI reader can hold the lock, and briefly: "
        "longer means something is stuck, so fail with StorageError and let the driver retry",
    )
    checkpoint_interval_s: float = limit(
        60.0,
        "s",
        "deleted or replaced rows (old key state) are zeroed in the database file but their "
        "sealed bytes stay in the WAL until a TRUNCATE checkpoint; bounds that window",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachConfig:
    """Attachments: files carried chunk by chunk (docs/protocol/attachments.md)."""

    max_attachment_bytes: int = limit(
        128 << 20,
        "bytes",
        "issue #13 asks for at least 100 MiB; 128 MiB is 2,185 chunks of 60 KiB, so a chunk's "
        "Merkle proof is 12 hashes (384 B, 0.6 % of a chunk) and a holdings bitfield 274 B",
    )
    max_attachments_per_message: int = limit(
        16, "attachments", "a message with a handful of photos; bounds the inner record"
    )
    max_name_bytes: int = limit(255, "bytes", "the longest file name common file systems store")
    max_media_type_bytes: int = limit(
        127, "bytes", "RFC 6838 caps type and subtype at 127 characters each; one is plenty"
    )
    requests_in_flight: int = limit(
        16,
        "chunks",
        "chunks asked of one link and not yet received: 16 x 60 KiB ~ 1 MB is 4 s at 250 kB/s "
        "and covers a loaded machine's scheduling delays on a LAN (8 left the link idle while "
        "both ends waited their turn); the sender paces them to its writer (net.send_queue_bytes)",
    )
    chunks_unstored: int = limit(
        48,
        "chunks",
        "chunks from one link asked or received and not yet durable: about three batches, one "
        "fetched, one written and synced, one whose commit rides on the next sync "
        "(net/chunkio.py), so link and disk both stay busy (32 left the link waiting for "
        "commits on a loaded machine); 48 x 60 KiB ~ 2.9 MB per link in memory",
    )
    request_batch: int = limit(
        8,
        "chunks",
        "while chunks asked of a link are on their way, the next request waits until it can ask "
        "this many (one request per batch, not one per chunk): sender CPU per 16 MiB ~190 -> "
        "~140 ms, link-attachment median 39.5 -> 51.4 MiB/s (6 alternated runs). Off (1) for a "
        "while: the kill -9 test's 'stall' was its log missing chunks committed just before "
        "the kill (tests/net/test_attach_kill9.py now reads the relay's chunk store)",
    )
    max_have_entries: int = limit(
        64,
        "attachments",
        "attachments described in one ChunkHoldings record; more continue in the next record",
    )
    holdings_updates_per_attachment: int = limit(
        32,
        "updates",
        "while an attachment's chunks arrive, each link that is up hears of them this often "
        "(and once more when complete): an entry is at most ~400 B, so at most 13 KB per link "
        "and attachment however large, and a peer pulling behind us lags by 1/32 of the file",
    )
    max_store_bytes: int = limit(
        1 << 30,
        "bytes",
        "chunk bodies on disk, apart from the envelope store: eight full-size attachments",
    )
    resume_cut_transfers: bool = limit(
        True,
        "flag",
        "chunks that arrived before a link was cut are kept and the next meeting fetches only "
        "the rest; off only in simulator research (issue #16 item 2), where a cut hop loses "
        "every chunk it brought, as the ONE loses a whole-message transfer",
    )
    stranger_quota_fraction: float = limit(
        0.05, "fraction", "one stranger may fill at most 5 % of the chunk store, as for envelopes"
    )
    strangers_total_fraction: float = limit(
        0.25, "fraction", "all strangers together get at most a quarter of the chunk store"
    )
    auto_download_max_bytes: int = limit(
        16 << 20,
        "bytes",
        "a recipient fetches attachments up to this size on its own (a photo, a voice note); "
        "larger ones wait until the user asks, like messengers' 'download media' settings",
    )
    max_attachments: int = limit(
        4_096,
        "attachments",
        "attachments a node holds (own, wanted, carried): the index in memory stays small even "
        "if peers offer many tiny ones",
    )
    max_peer_holdings_bytes: int = limit(
        1 << 20,
        "bytes",
        "bitfields one link may tell us it holds, kept for that link: 400 full-size attachments; "
        "256 links hold at most 256 MiB, and a peer that sends more is cut off",
    )

    def __post_init__(self) -> None:
        # The chunk format bounds the count: proofs have at most 16 hashes (65,536 chunks).
        if not 1 <= self.max_attachment_bytes <= 65_536 * 61_440:
            raise ConfigError("max_attachment_bytes must be between 1 and 65,536 chunks")
        # The record bounds of version 1 (core/attach/records.py): more would not encode, or a
        # peer would cut us off for asking too much at once.
        if not 1 <= self.requests_in_flight <= 64 or not 1 <= self.max_have_entries <= 64:
            raise ConfigError("requests_in_flight and max_have_entries are 1 to 64")
        if self.chunks_unstored < self.requests_in_flight:
            raise ConfigError("chunks_unstored is at least requests_in_flight")
        if self.request_batch < 1:
            raise ConfigError("request_batch is at least 1 (more than requests_in_flight: all)")
        if not 1 <= self.max_attachments_per_message <= 16:
            raise ConfigError("max_attachments_per_message is 1 to 16")
        if self.holdings_updates_per_attachment < 1:
            raise ConfigError("holdings_updates_per_attachment is at least 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class FirstContactConfig:
    """First contact through relays and message requests (docs/protocol/e2e.md §14)."""

    tag_slots: int = limit(
        16,
        "tags per period",
        "first-contact tags a recipient recognises per period; a sender picks one at random, so "
        "a relay without the code sees up to this many unrelated tags per recipient and day; "
        "costs (W+F) x slots index entries (office 64, crisis 272)",
    )
    max_requests: int = limit(
        64,
        "senders",
        "pending message requests (strangers who wrote first); beyond this new strangers are "
        "dropped, so a Sybil flood cannot fill the inbox or the disk",
    )
    max_request_messages: int = limit(
        5, "messages per sender", "a stranger's first few messages are enough to decide"
    )
    max_request_bytes: int = limit(
        1_048_576,
        "bytes",
        "all pending request bodies together: 1 MiB, far below the store's stranger share",
    )
    max_blocked: int = limit(
        4_096, "identities", "blocked strangers remembered; oldest forgotten first"
    )
    accept_wait_s: float = limit(
        10.0,
        "s",
        "a contact linked this long without answering our key share has not added us: the "
        "status says so (a share crosses a LAN link in milliseconds)",
    )
    opened_memory: int = limit(
        4_096,
        "envelope ids",
        "first-contact envelopes already opened, answered 'have' at offers (they carry no purge "
        "token); a forgotten one costs one more transfer, dropped as a duplicate",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class OrgLimits:
    """Organisation directories (docs/protocol/identity.md §8)."""

    max_orgs: int = limit(8, "organisations", "a person belongs to a few; each holds a directory")
    max_directory_entries: int = limit(
        2_000, "members", "a ministry's building or a crisis operation; ~270 B per member"
    )
    max_revocations: int = limit(
        2_000, "revocations", "revoked members stay listed until the org key is rotated"
    )
    max_directory_bytes: int = limit(
        1_048_576, "bytes", "2,000 entries of ~270 B and 2,000 revocations of 105 B fit"
    )
    chunk_bytes: int = limit(
        48_000, "bytes", "a directory travels in chunks that fit one frame with their record"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """All configuration of one node. Frozen: build a new one to change a value."""

    wire: WireLimits = field(default_factory=WireLimits)
    link: LinkConfig = field(default_factory=LinkConfig)
    message: MessageLimits = field(default_factory=MessageLimits)
    groups: GroupLimits = field(default_factory=GroupLimits)
    store: StoreConfig = field(default_factory=StoreConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    net: NetConfig = field(default_factory=NetConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    attach: AttachConfig = field(default_factory=AttachConfig)
    first_contact: FirstContactConfig = field(default_factory=FirstContactConfig)
    org: OrgLimits = field(default_factory=OrgLimits)
    site_key: bytes | None = limit(
        None, "32 bytes", "optional pre-shared key: Noise XXpsk0 so outsiders learn no identity"
    )

    def __post_init__(self) -> None:
        if self.site_key is not None and len(self.site_key) != 32:
            raise ConfigError("site_key must be exactly 32 bytes")
        if self.wire.max_plaintext_bytes > self.wire.max_frame_bytes - 16:
            raise ConfigError("max_plaintext_bytes must leave room for the 16-byte AEAD tag")

    @classmethod
    def office(cls) -> NodeConfig:
        """Profile for a LAN in a building: period 1 day, latency budget 1 day."""
        return cls()

    @classmethod
    def crisis(cls) -> NodeConfig:
        """Profile for a field team with no infrastructure: period 1 day, budget 14 days."""
        message = MessageLimits(latency_budget_s=14 * 86_400.0, default_ttl_s=14 * 86_400.0)
        return cls(message=message)

    def replace(self, **changes: object) -> NodeConfig:
        """Return a copy with top-level fields replaced (sections are replaced whole)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def describe(config: object) -> list[tuple[str, object, str, str]]:
    """Flatten a config into (dotted name, value, unit, reason) rows, for docs and tests."""
    rows: list[tuple[str, object, str, str]] = []
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            rows.extend((f"{f.name}.{n}", v, u, w) for n, v, u, w in describe(value))
        else:
            rows.append((f.name, value, f.metadata.get("unit", ""), f.metadata.get("why", "")))
    return rows


def limits_table_markdown(config: object | None = None) -> str:
    """The Markdown limits table of docs/protocol.md (``python -m meshmsg.config`` prints it)."""
    rows = describe(config if config is not None else NodeConfig())
    lines = ["| setting | default | unit | why |", "| --- | --- | --- | --- |"]
    for name, value, unit, why in rows:
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        lines.append(f"| `{name}` | {shown} | {unit} | {why} |")
    return "\n".join(lines)


def update_protocol_doc(path: str) -> bool:
    """Rewrite the limits table between its markers in ``path``; True if it changed."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    begin, end = "<!-- limits:begin -->", "<!-- limits:end -->"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    updated = f"{head}{begin}\n{limits_table_markdown()}\n{end}{tail}"
    if updated != text:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(updated)
    return updated != text


if __name__ == "__main__":  # pragma: no cover - documentation helper
    import sys

    if sys.argv[1:] == ["--update-docs"]:
        changed = update_protocol_doc("docs/protocol.md")
        sys.stdout.write("docs/protocol.md " + ("updated\n" if changed else "unchanged\n"))
    else:
        sys.stdout.write(limits_table_markdown() + "\n")
