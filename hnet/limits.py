"""Every limit of the network stack, in one place, each with its reason.

Where the reference runtime (Hyperdrive) has a value, it is named and ours matches it unless
the comment says why not.
"""

from __future__ import annotations

# --- messages -------------------------------------------------------------------------------

#: Largest serialized KernelMessage we send or accept. Reference: MESSAGE_MAX_SIZE = 10_485_800
#: (10 MiB + 40 bytes of framing slack). The reference checks on send only; we also check the
#: claimed length on receive *before* allocating anything.
MESSAGE_MAX_SIZE = 10_485_800

#: Largest Noise transport message: 65535 bytes on the wire, 16 of them the Poly1305 tag.
NOISE_MAX_MESSAGE = 65_535
NOISE_TAG_LEN = 16
#: Plaintext per encrypted chunk (reference: 65_519).
NOISE_MAX_PLAINTEXT = NOISE_MAX_MESSAGE - NOISE_TAG_LEN

#: Largest handshake message accepted. msg2 (206 bytes with our payload) is the biggest; a
#: payload holds a name (< 256 bytes in practice) and a 64-byte signature. 4 KiB leaves room for
#: long names while never letting a pre-authentication peer make us buffer much.
HANDSHAKE_MAX_MESSAGE = 4_096

#: Largest RoutingRequest (first TCP frame that is not 32 bytes). Two names and a signature.
ROUTING_REQUEST_MAX = 4_096

# --- stream connections (TCP, WebSocket) -------------------------------------------------
#: Bytes (TCP) or WebSocket message bytes a responder holds after the initiator's last
#: handshake message while it looks the initiator's key up (the initiator may send right
#: behind that message). The adapters read at most one handshake-sized piece at a time while
#: handshaking and nothing while a key is looked up, so an honest peer never comes near this;
#: the same value as QUIC's early-data bound (``limits.QUIC_EARLY_DATA_MAX``).
STREAM_EARLY_DATA_MAX = 64 * 1024
#: Bytes read per call while handshaking: one largest handshake frame. Whatever the peer sent
#: beyond stays in the StreamReader, so the core never holds more than a frame or two before
#: the peer is authenticated, and bytes behind a RoutingRequest stay few (docs/protocol.md §3).
HANDSHAKE_READ_SIZE = 2 + HANDSHAKE_MAX_MESSAGE
#: Bytes of HTTP upgrade (request or response) read before giving up: a WebSocket client
#: sends a few hundred. websockets' own parser bounds lines (8 KiB) and headers (128); this
#: keeps what an unauthenticated client can make us hold per connection to a few KiB.
WS_UPGRADE_MAX = 16 * 1024

# --- codec ----------------------------------------------------------------------------------

#: Deepest msgpack nesting the decoder follows. Real messages nest < 8 levels.
CODEC_MAX_DEPTH = 32
#: Most capabilities attached to one Request/Response. Real messages carry a handful; each
#: decoded one costs ~50x its smallest encoding in Python objects, so without a cap a 10 MB
#: message of tiny capabilities would make us allocate hundreds of MB.
MAX_CAPABILITIES = 1_024

# --- timing ---------------------------------------------------------------------------------

#: Connect + handshake deadline. Reference: TIMEOUT = 5 s.
HANDSHAKE_TIMEOUT = 5.0
#: Close a session with no traffic either way for this long. Reference: IDLE_TIMEOUT = 30 min.
IDLE_TIMEOUT = 30 * 60.0
#: WebSocket keepalive ping interval. Reference: 30 s.
WS_PING_INTERVAL = 30.0
#: Default deadline for a request that expects a response, used by ping. Reference hi: 5 s.
DEFAULT_REQUEST_TIMEOUT = 5.0

#: A session replaced by a newer one (peer restarted, transport changed) is still read for this
#: long, so messages already in flight on it are delivered, then closed.
SESSION_RETIRE_GRACE = 5.0

# --- peers ----------------------------------------------------------------------------------

#: Most concurrent peer sessions; past it the least recently active is evicted.
#: Reference default: max_peers = 10_000 (Hyperdrive's DEFAULT_MAX_PEERS is 32; the CLI flag
#: lets operators raise it). We choose 1_024: every peer costs a socket and buffers.
MAX_PEERS = 1_024
#: Most handshakes in progress at once (inbound). Bounds pre-authentication work.
MAX_PENDING_HANDSHAKES = 256
#: Of those, at most this many from one source (an IPv4 address or an IPv6 /64): a slowloris
#: from one host keeps three quarters of the slots for everyone else (hnet/transport/gate.py).
MAX_PENDING_PER_SOURCE = MAX_PENDING_HANDSHAKES // 4
#: When every slot is taken, a newcomer within its share evicts the oldest pending handshake
#: of the heaviest source (at least as heavy as the newcomer would be) if that handshake is
#: older than this: a slowloris spread over many sources cannot keep newcomers out, and a
#: burst of connections does not cut handshakes that are still young (hnet/transport/gate.py).
HANDSHAKE_EVICT_MIN_AGE = 1.0
#: Simultaneous open: an inbound session from a peer we dialled ourselves less than this long
#: ago is the peer's half of a simultaneous open, settled by name (docs/architecture.md).
SIMULTANEOUS_OPEN_WINDOW = 2 * HANDSHAKE_TIMEOUT

# --- the send path (docs/architecture.md, "The send path") ----------------------------------
#: Bytes queued for one peer (while dialling) or one session (waiting for its writer). Three
#: maximal messages: a bulk sender keeps the pipe full while never holding more than this.
SEND_QUEUE_BYTES = 32 * 1024 * 1024
#: Bytes queued or being written for all peers of a node together, dialling queues included.
#: Past it, senders wait (until their deadline) or fail. 8 peers' full queues.
NODE_SEND_BUDGET = 8 * SEND_QUEUE_BYTES
#: How far over SEND_QUEUE_BYTES / NODE_SEND_BUDGET a sender that cannot wait may go: replies
#: made on a receive path (acks, NetResponses; all small). Without it a peer flooding us while
#: we flood it would fill our queue to it with our own messages and its acks would be refused.
REPLY_HEADROOM = 1024 * 1024
#: Largest message a sender writes to a TCP socket itself when the session's writer is idle;
#: larger ones go through the writer, which waits for the socket to drain after each, so one
#: large message is in flight at a time (measured: several 10 MB messages buffered at once
#: cost a quarter of the bulk rate in allocation and cache misses).
WRITE_NOWAIT_MAX = 256 * 1024
#: Deadline of a message sent without one (it must be handed to the transport by then). A
#: request's deadline is its timeout.
DEFAULT_SEND_TIMEOUT = 30.0
#: A session's writer that makes no progress (not one byte accepted by the socket, no QUIC
#: credit) for this long closes the session: the peer stopped reading. Its queued messages
#: are reported Offline.
WRITE_STALL_TIMEOUT = 30.0
#: While a writer is blocked, queued messages past their deadline are failed (Timeout) this
#: often, so a stalled peer never holds expired messages' memory for longer.
SEND_SWEEP_INTERVAL = 0.5

#: A peer's hellos are logged at most this often (the rest are counted in its next line: a
#: log line costs more than the hello itself).
HELLO_LOG_INTERVAL = 1.0
#: Entries of the small per-message memos (hello log times per peer, hypermap-safe results
#: per process, parsed local addresses); past it the memo is reset or stops growing.
MEMO_MAX = 4_096

# --- local processes ------------------------------------------------------------------------
#: Messages waiting for one registered process's handler; more are dropped (and logged; a
#: request's sender then times out), never waited for: a receive path does not block on a
#: process.
INBOX_SIZE = 4_096
#: ... and the bytes they may hold together.
INBOX_BYTES = 64 * 1024 * 1024

# --- routing (routers and indirect nodes, docs/protocol.md §7) -------------------------------

#: Default bound on passthroughs (pending + active) a router holds. Reference:
#: DEFAULT_MAX_PASSTHROUGHS = 0, i.e. a node is not a router unless its operator says so
#: (``hnet node --max-passthroughs N``). When full, the oldest passthrough is evicted (as the
#: reference does), so a burst of requests cannot lock legitimate pairs out for long.
MAX_PASSTHROUGHS = 0
#: How long a router keeps a source's socket parked while the indirect target is asked (with a
#: ConnectionRequest) to open its side. The source gives up after HANDSHAKE_TIMEOUT (it covers
#: the whole routed connect + handshake), so a parked socket is useless after that. The
#: reference has no expiry (a TODO notes the dangling entries); its request's
#: ``expects_response`` is 5 s.
ROUTING_PENDING_LIFETIME = HANDSHAKE_TIMEOUT
#: A passthrough with no bytes either way for this long is closed. The two ends' sessions close
#: themselves after IDLE_TIMEOUT of no messages, so this only bounds pipes whose ends went
#: silent without closing. Reference: none over TCP, 2 h over WS.
PASSTHROUGH_IDLE_TIMEOUT = IDLE_TIMEOUT
#: Bytes read from one side of a TCP passthrough per write to the other (the pipe waits for
#: the write to drain before reading again, so this bounds what a router buffers per pipe).
PASSTHROUGH_READ_SIZE = 64 * 1024
#: An indirect node re-checks its sessions to its routers this often and redials the missing
#: ones. Reference: ``maintain_routers`` sleeps 4 s between rounds.
ROUTER_RECONNECT_INTERVAL = 4.0

# --- control socket -------------------------------------------------------------------------

#: Largest control request/response line (JSON). Diagnostics of 1k peers fit easily.
CONTROL_MAX_LINE = 4 * 1024 * 1024
#: Most concurrent control connections.
CONTROL_MAX_CLIENTS = 64
#: A control client must take each reply line within this long of it being written, or it is
#: disconnected. A client that connects, sends requests and never reads would otherwise hold a
#: client slot, its handler and a reply of up to CONTROL_MAX_LINE bytes forever. The CLI reads
#: at once; a 4 MiB line crosses a Unix socket in milliseconds.
CONTROL_WRITE_TIMEOUT = 10.0
#: Requests carrying an ``id`` that one control connection may have in flight at once
#: (pipelining, ``hnet ping -l``); past it the server reads no further line from that connection
#: until one is answered. Bounded like the clients: each holds a task and an outstanding request.
CONTROL_MAX_IN_FLIGHT = 64
#: Largest hello body the ``ping`` op builds (``hnet ping -s``). A body is encoded as a msgpack
#: array of one integer per byte (1 byte below 0x80, 2 from 0x80 up), so a 10,000,000-byte ASCII
#: body makes a KernelMessage of ~10,000,070 bytes: under MESSAGE_MAX_SIZE (10,485,800) with room
#: for the envelope. The op refuses a body whose encoding would be larger than this bound.
CONTROL_PING_MAX_BODY = 10_000_000
#: Bytes of hello bodies the control server holds at once, over all clients and pings in
#: flight; a ping past it waits (within its timeout) for earlier ones to finish. Without it 64
#: clients of 64 pings of 10 MB would be 40 GB of bodies, and several times that in encodings.
CONTROL_PING_BYTES = 64 * 1024 * 1024

# --- QUIC -----------------------------------------------------------------------------------
# The reference has no QUIC transport; docs/quic.md specifies ours. Every value here is ours.

#: QUIC ``max_idle_timeout``: a connection that receives nothing for this long is dead (the
#: peer crashed or the path broke). Keepalive PINGs keep a quiet but live session up; the
#: session's own IDLE_TIMEOUT (no messages either way) still applies on top.
QUIC_IDLE_TIMEOUT = 60.0
#: PING interval on an established connection: a quarter of QUIC_IDLE_TIMEOUT (a lost PING or
#: two does not kill the connection) and under common NAT UDP binding timeouts (~30 s).
QUIC_KEEPALIVE_INTERVAL = 15.0
#: Largest UDP payload we send. 1,350 bytes fits every path with an MTU of 1,400 or more
#: (IPv6 and common tunnels); QUIC's own minimum is 1,200.
QUIC_MAX_DATAGRAM_SIZE = 1_350
#: Sum of the lengths of messages a sender may have unacknowledged on one connection (sent,
#: and not yet reported delivered by the receiver). The receiver closes a connection whose
#: undelivered claimed lengths exceed it: it is also each connection's receive-memory bound.
#: 16 MiB holds one maximal message (MESSAGE_MAX_SIZE) plus the small-message reserve.
QUIC_SEND_WINDOW = 16 * 1024 * 1024
#: Part of QUIC_SEND_WINDOW that only small messages may use, so that bulk transfers never make
#: a small message wait for credit.
QUIC_SMALL_RESERVE = 2 * 1024 * 1024
#: A "small" message: one Noise chunk. It is written to QUIC whole; larger ones are fed in
#: slices of one chunk as QUIC sends them.
QUIC_SMALL_MESSAGE = NOISE_MAX_PLAINTEXT
#: Most message streams one side may have open towards the other (each message is a stream,
#: open until the receiver acknowledges delivery). A receiver closes a connection on which the
#: peer opens more. Below QUIC's own stream credit (aioquic 128, qh3 100), which lags a little.
QUIC_MAX_STREAMS = 64
#: Stream slots (out of QUIC_MAX_STREAMS) only small messages may use.
QUIC_SMALL_STREAMS_RESERVE = 16
#: Bulk pacing: bytes of large messages in flight or queued in QUIC are kept near 1.25 times
#: the path's measured bandwidth-delay product (hnet.core.quic.connection.BulkPacer), so bulk data
#: keeps the path busy while adding little queueing in front of a small message. This is the
#: floor of that window (loopback and LAN, where the BDP is a few packets)...
QUIC_BULK_MIN_WINDOW = 16 * 1024
#: ... and its ceiling: half of QUIC_MAX_DATA, the rest stays free for small messages.
QUIC_BULK_MAX_WINDOW = 4 * 1024 * 1024
#: Bulk data handed to QUIC per flush; the adapter lets other callbacks run between slices, so
#: a small message or a delivery waits for at most one slice of sending (~12 packets).
QUIC_BULK_SLICE = 16 * 1024
#: While a small message of ours is unacknowledged, and for QUIC_BULK_YIELD_HOLD after one was
#: acknowledged, bulk data in flight is held to one bandwidth-delay product (gain 1: no standing
#: queue, the RTT taken at the low end of what QUIC_RTT_GRANULARITY allows) and at least this.
#: On loopback and LAN the RTT is below what QUIC can measure, so this is the window there: a
#: small message waits behind ~6 packets of bulk data instead of the full bulk window.
QUIC_BULK_YIELD_WINDOW = 8 * 1024
#: How long bulk keeps yielding after a small message was acknowledged: it bridges the gap
#: between a reply and the next request of an exchange, so that request too finds a short queue.
QUIC_BULK_YIELD_HOLD = 0.005
#: aioquic only: its congestion window is kept at most this rate (bytes/s) times its smoothed
#: RTT. It grows the window even while the application limits the sender, and past ~1 GB/s its
#: pacer sends one datagram per wake-up (hnet.core.quic.backend._cap_aioquic_window).
QUIC_MAX_PACING_RATE = 500 * 1000 * 1000
#: QUIC's timer granularity (RFC 9002 kGranularity): both backends clamp RTT samples to at least
#: this, so a measured minimum RTT is only known to within it.
QUIC_RTT_GRANULARITY = 0.001
#: QUIC connection flow-control window (``initial_max_data``; kept sliding by both backends).
#: QUIC credit returns as soon as data arrives (we take it from QUIC at once), so it only needs
#: to cover the data in flight; bulk pacing keeps large messages far below it, so a transfer
#: never exhausts the credit small messages need. It also bounds what a peer can make the QUIC
#: stack buffer out of order.
QUIC_MAX_DATA = 8 * 1024 * 1024
#: QUIC per-stream window (``initial_max_stream_data``); a stream's credit is also capped at
#: QUIC_STREAM_MAX_BYTES, the most a one-message stream can ever carry.
QUIC_MAX_STREAM_DATA = 1024 * 1024
#: The most bytes one message stream carries: a 22-byte length frame, then per chunk of up to
#: NOISE_MAX_PLAINTEXT bytes 2 + 16 bytes of framing and tag.
QUIC_STREAM_MAX_BYTES = (
    22
    + MESSAGE_MAX_SIZE
    + 18 * ((MESSAGE_MAX_SIZE + NOISE_MAX_PLAINTEXT - 1) // NOISE_MAX_PLAINTEXT)
)
#: Application-stream bytes a responder holds while it waits for the initiator's last handshake
#: message (the initiator may send right behind it; packets can be reordered).
QUIC_EARLY_DATA_MAX = 64 * 1024
#: What an initiator sends (message bytes on the wire) before the responder confirms it
#: verified the initiator's identity: half of QUIC_EARLY_DATA_MAX, so that a lost or late last
#: handshake message never makes a legitimate initiator overrun the responder's early buffer.
QUIC_EARLY_SEND = QUIC_EARLY_DATA_MAX // 2
#: Connections in handshake on one listener above which a new client must first prove its
#: address with a Retry round trip (RFC 9000 §8.1.2). Below it Retry costs a round trip for
#: nothing: QUIC's anti-amplification limit (3x) already bounds what we send unvalidated.
QUIC_RETRY_THRESHOLD = 32
#: Connections in handshake (QUIC + Noise) on one listener; Initials beyond are dropped.
QUIC_MAX_PENDING_HANDSHAKES = MAX_PENDING_HANDSHAKES
#: Connections one listener holds (sessions and handshakes).
QUIC_MAX_CONNECTIONS = MAX_PEERS + MAX_PENDING_HANDSHAKES
#: A Retry token is valid this long: one round trip, with a wide margin.
QUIC_RETRY_TOKEN_LIFETIME = 10.0
#: UDP socket buffers we ask the kernel for (it may cap them, e.g. net.core.rmem_max).
QUIC_SOCKET_BUFFER = 1024 * 1024
#: Longest a delivery acknowledgement (the receiver's FIN) waits for a message to ride along
#: with. It holds the sender's credit back that long at most; at 64 streams of credit that is
#: far from limiting.
QUIC_ACK_DELAY = 0.002
#: Datagrams read per socket wakeup before the connections are flushed (bounds the time one
#: busy socket holds the event loop).
QUIC_RECV_BURST = 8

# --- PKI ------------------------------------------------------------------------------------
# The reference's net module is told of HNS changes by its indexer process; we read record
# sources (hns.sources) ourselves, so these values are ours.

#: How often the PKI's follower asks every record source for new logs. A name registered
#: locally is seen by every node within this (4 directory listings a second, in a thread, cost
#: next to nothing); a dial or handshake that misses forces an earlier read.
PKI_POLL_INTERVAL = 0.25
#: Least time between two reads forced by lookup misses. However many handshakes name unknown
#: names, misses cost a flag check and cause at most 1 / PKI_MISS_INTERVAL reads a second.
PKI_MISS_INTERVAL = 0.1
#: Default bound on ``Pki.resolve`` waiting for a forced read after a miss: a read takes
#: milliseconds, so this covers a rate-limited one with a wide margin, and stays well inside
#: HANDSHAKE_TIMEOUT when a dial spends it before connecting.
PKI_RESOLVE_TIMEOUT = 1.0
#: Logs applied to the indexer per event-loop turn. The indexer takes ~90 us a log (keccak
#: hashing of labels), so a chunk holds the loop ~10 ms, and an initial load of a large registry
#: (tens of thousands of logs, seconds of work) never stalls sessions for longer than that.
PKI_FEED_CHUNK = 128
#: Names a PKI keeps from live chain reads (``Pki(live=...)``) until its sources deliver them:
#: a bounded cache (oldest dropped first), so a flood of lookups of unknown names cannot grow it.
PKI_LIVE_MAX = 4096
#: Seconds between a node's progress lines while its chain source syncs at start.
PKI_SYNC_LOG_INTERVAL = 5.0

# --- Circuits (routed QUIC, docs/quic.md §11) ------------------------------------------------
# The reference routes over TCP/WS only (docs/protocol.md §7); circuits are ours, and so is
# every value here.

#: Default bound on circuits (requested + offered + open) a router holds: like
#: MAX_PASSTHROUGHS, 0 means this node routes no circuits unless its operator says so.
MAX_CIRCUITS = 0
#: Circuits one source may hold through one router at once (a session to each of 16 indirect
#: nodes). A router also never lets one source hold more than half of its circuits
#: (CircuitTable), so one source can never starve the others.
CIRCUIT_MAX_PER_SOURCE = 16
#: A CircuitRequest's timestamp must be within this many seconds of the checker's clock, either
#: way. Covers ordinary clock skew between nodes with NTP (well under a second) and sloppy
#: clocks with a wide margin; it is also how long a nonce must be remembered (up to 2x this).
CIRCUIT_REQUEST_WINDOW = 60
#: Nonces a replay cache remembers. Each entry is a (source name, 16-byte nonce) key, about
#: 300 bytes in CPython with names near 255 bytes, so the cache stays under ~5 MiB. When full,
#: the oldest timestamps are dropped and refused from then on (never forgotten-then-accepted).
CIRCUIT_REPLAY_MAX = 16_384
#: Nonces one source may have in a replay cache at once: about 256 requests a minute. A source
#: past it is refused (SOURCE_LIMIT) without touching anyone else's entries, so filling the
#: whole cache takes 64 sources at their cap.
CIRCUIT_REPLAY_PER_SOURCE = 256
#: How long a router waits for the target's ACCEPT or REFUSE (from admission). The source's
#: whole routed connect + handshake has HANDSHAKE_TIMEOUT; an answer after that is useless.
CIRCUIT_OFFER_TIMEOUT = HANDSHAKE_TIMEOUT
#: How long a closing circuit waits for the ends to finish their control streams (FIN) before
#: its record is dropped anyway. An end answers a CLOSE at once; this covers retransmissions.
CIRCUIT_CLOSE_TIMEOUT = HANDSHAKE_TIMEOUT
#: An open circuit with no relayed bytes either way for this long is closed (IDLE). The ends'
#: sessions close themselves after IDLE_TIMEOUT without messages; this only bounds circuits
#: whose ends went silent without closing (a lost hop is noticed sooner, by QUIC).
CIRCUIT_IDLE_TIMEOUT = IDLE_TIMEOUT
#: A full router evicts its least recently active circuit for a newcomer only if that circuit
#: has been idle at least this long; otherwise the newcomer is refused (BUSY). A stream of
#: requests can then never cut circuits that are in use.
CIRCUIT_EVICT_MIN_IDLE = 30.0
#: End to end, on a session over a circuit, a sender keeps at most this many message streams
#: open (instead of QUIC_MAX_STREAMS): every one is a QUIC stream on both hops, and the
#: router-target connection's QUIC stream credit (100-128) is shared by all circuits to that
#: target. Sixteen keep several circuits per target going at once.
CIRCUIT_MAX_STREAMS = 16
#: ... of which this many only small messages may use (as QUIC_SMALL_STREAMS_RESERVE).
CIRCUIT_SMALL_STREAMS_RESERVE = 4
#: Relayed streams a router lets each end of a circuit have open: the message streams plus the
#: handshake stream. A conforming end never exceeds it (the router's count lies inside the
#: sender's), so exceeding it closes the circuit (LIMIT_EXCEEDED).
CIRCUIT_RELAY_STREAMS = CIRCUIT_MAX_STREAMS + 1
#: Wire bytes of the largest small message (one Noise chunk): a 22-byte length frame, 2 + 16 of
#: framing and tag, 65,519 of chunk. A relayed stream that carried more is "bulk" at the router.
CIRCUIT_SMALL_STREAM_BYTES = 22 + NOISE_MAX_PLAINTEXT + 18
#: Bytes of one relayed stream a router holds (taken from one hop, not yet sent on the other):
#: one small message whole, so a small message is never taken in pieces.
CIRCUIT_STREAM_BUFFER = CIRCUIT_SMALL_STREAM_BYTES
#: Bytes of one circuit (both directions, all its streams) a router holds. The QUIC stacks of
#: the two hops keep their own bytes in flight, so this only absorbs the difference in their
#: pace; 1,024 circuits then cost at most 256 MiB (NODE_SEND_BUDGET).
CIRCUIT_MAX_BUFFERED = 256 * 1024
#: Part of CIRCUIT_MAX_BUFFERED that bulk streams may not use: two small messages can always be
#: taken, so a large routed message never holds a small one back at the router.
CIRCUIT_SMALL_RESERVE = 2 * CIRCUIT_SMALL_STREAM_BYTES
#: Longest name in a CircuitRequest (u8 length). HNS labels are at most 63 bytes; 255 bytes is
#: four of them, as DNS.
CIRCUIT_NAME_MAX = 255
#: The largest CircuitRequest: version, three length-prefixed names, timestamp, nonce and
#: signature.
CIRCUIT_REQUEST_MAX = 1 + 3 * (1 + CIRCUIT_NAME_MAX) + 8 + 16 + 64
#: Longest reason text in a REFUSE or CLOSE frame (u8 length): one log line.
CIRCUIT_REASON_MAX = 255
#: Largest control frame plaintext: an OFFER (type, circuit id, flags, a maximal request) is
#: 867 bytes. Checked on the frame's 2-byte prefix, before it is buffered.
CIRCUIT_CONTROL_FRAME_MAX = 1_024
#: Frames one half of a control stream carries at most (e.g. OFFER, ADDRESS, CLOSE): a control
#: stream never accumulates anything.
CIRCUIT_CONTROL_FRAMES = 3
#: A QUIC connection that carries circuits (a hop: source or target to router) is declared dead
#: when it has had ack-eliciting data or a PING outstanding and received no packet at all for
#: this long. A live peer acknowledges within an RTT plus its ack delay (25 ms), and QUIC's own
#: loss recovery probes several times in 2 s, so only a crashed peer or a broken path stays
#: silent; QUIC's idle timeout (QUIC_IDLE_TIMEOUT, 60 s) would notice it far too late for a
#: failover within 5 s (docs/quic.md §11, "Our implementation"). Ordinary sessions keep the
#: idle timeout only: a direct session must not flap on a slow path.
HOP_DEAD_AFTER = 2.0
#: PING interval on a hop while it carries circuits (QUIC_KEEPALIVE_INTERVAL otherwise): an idle
#: hop whose router died is then noticed within HOP_PING_INTERVAL + HOP_DEAD_AFTER. One small
#: datagram a second each way per hop in use.
HOP_PING_INTERVAL = 1.0
#: A router whose hop died (or closed) under our circuits is tried last by circuit dials for
#: this long, so a redial does not spend its deadline on a dead router first.
ROUTER_LOST_PENALTY = 30.0

# --- Direct upgrade (hole punching) of a routed QUIC session (docs/quic.md §11.13) ------------

#: When the target sends its punch datagrams to the source's observed address, in seconds after
#: it got the router's ADDRESS: a few tiny datagrams, denser first (the source dials about one
#: routed round trip after the ADDRESS), so a NAT mapping that expired or a lost datagram is
#: covered for as long as the source may be dialling. Seven datagrams of 13 bytes in all.
PUNCH_SCHEDULE = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
#: The source's direct dial (QUIC and Noise, from its listener socket) must be up within this:
#: QUIC retransmits its Initial inside it (the target's NAT may open after the first one).
PUNCH_DIAL_TIMEOUT = 3.0
#: After a failed upgrade with a peer, no new try with it (and no address shared for it) for
#: this long: a path that cannot be punched (symmetric NAT, firewall) stays routed quietly.
PUNCH_BACKOFF = 60.0
#: Peers remembered in the back-off record at most (the oldest is forgotten first).
PUNCH_BACKOFF_MAX = 1_024
