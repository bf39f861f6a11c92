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

# --- codec ----------------------------------------------------------------------------------

#: Deepest msgpack nesting the decoder follows. Real messages nest < 8 levels.
CODEC_MAX_DEPTH = 32

# --- timing ---------------------------------------------------------------------------------

#: Connect + handshake deadline. Reference: TIMEOUT = 5 s.
HANDSHAKE_TIMEOUT = 5.0
#: Close a session with no traffic either way for this long. Reference: IDLE_TIMEOUT = 30 min.
IDLE_TIMEOUT = 30 * 60.0
#: WebSocket keepalive ping interval. Reference: 30 s.
WS_PING_INTERVAL = 30.0
#: Default deadline for a request that expects a response, used by ping. Reference hi: 5 s.
DEFAULT_REQUEST_TIMEOUT = 5.0

# --- peers ----------------------------------------------------------------------------------

#: Most concurrent peer sessions; past it the least recently active is evicted.
#: Reference default: max_peers = 10_000 (Hyperdrive's DEFAULT_MAX_PEERS is 32; the CLI flag
#: lets operators raise it). We choose 1_024: every peer costs a socket and buffers.
MAX_PEERS = 1_024
#: Most handshakes in progress at once (inbound). Bounds pre-authentication work.
MAX_PENDING_HANDSHAKES = 256
#: Messages queued for a peer while it is being dialled; more are refused as Offline.
MAX_QUEUED_PER_PEER = 1_024
#: Messages waiting to be written on an established session before the sender waits.
SEND_QUEUE_PER_PEER = 256
#: Local inbound messages waiting for the node's dispatcher.
INBOX_SIZE = 4_096

# --- control socket -------------------------------------------------------------------------

#: Largest control request/response line (JSON). Diagnostics of 1k peers fit easily.
CONTROL_MAX_LINE = 4 * 1024 * 1024
#: Most concurrent control connections.
CONTROL_MAX_CLIENTS = 64
