"""hns: Hyperware Name System names, Hypermap records and record sources. Imports nothing of ours.

* :mod:`hns.names`: label rules and namehash;
* :mod:`hns.records`: :class:`NodeRecord` and the note encodings;
* :mod:`hns.events`: Hypermap constants and Mint/Note logs (``eth_getLogs`` objects);
* :mod:`hns.indexer`: :class:`Indexer`, logs in chain order -> records;
* :mod:`hns.cacher`: hypermap-cacher log files;
* :mod:`hns.registry`: :class:`Registry`, a local registry directory written like the chain;
* :mod:`hns.sources`: :class:`LogSource`, the protocol of every record source, and
  :class:`RegistrySource`, the local registry as one;
* :mod:`hns.sources.chain`: :class:`ChainSource`, Hypermap from a JSON-RPC endpoint;
* :mod:`hns.checkpoint`: :class:`Checkpoint`, the chain source's SQLite checkpoint;
* :mod:`hns.bootstrap`: hypermap-cacher files (a directory or a cacher's URL) to start from;
* :mod:`hns.lookup`: :class:`LiveLookup`, one name read live from the chain (Multicall3).
"""

from hns.bootstrap import Bootstrap, BootstrapError, load_bootstrap
from hns.cacher import (
    MAX_CACHE_FILE_BYTES,
    CacheFileError,
    LogCache,
    LogsMetadata,
    dump_log_cache,
    log_cache_filename,
    ordered_logs,
    parse_log_cache,
    read_log_cache,
    write_log_cache,
)
from hns.checkpoint import (
    ChainIdentity,
    Checkpoint,
    CheckpointError,
    CheckpointStatus,
    Cursor,
    checkpoint_path,
)
from hns.events import (
    FACT_TOPIC,
    HYPERMAP_ADDRESS,
    HYPERMAP_CHAIN_ID,
    HYPERMAP_FIRST_BLOCK,
    MINT_TOPIC,
    NOTE_TOPIC,
    LogMeta,
    MalformedLog,
    MintEvent,
    NoteEvent,
    decode_mint,
    decode_note,
    mint_log,
    note_log,
)
from hns.indexer import MAX_PENDING, Indexer
from hns.keccak import keccak256
from hns.lookup import (
    DEFAULT_LOOKUP_RETRY,
    MULTICALL3_ADDRESS,
    LiveLookup,
    LookupResult,
    MalformedAnswer,
    read_notes,
    record_from_notes,
)
from hns.names import (
    LABEL_MAX_BYTES,
    ROOT_HASH,
    InvalidName,
    is_valid_label,
    is_valid_note_label,
    labelhash,
    namehash,
    namehash_hex,
    validate_label,
    validate_name,
)
from hns.records import (
    HNS_NOTES,
    NOTE_IP,
    NOTE_NET_KEY,
    NOTE_QUIC_PORT,
    NOTE_ROUTERS,
    NOTE_TCP_PORT,
    NOTE_WS_PORT,
    PORT_NOTES,
    REFERENCE_NOTES,
    InvalidRecordValue,
    NodeRecord,
    decode_ip,
    decode_net_key,
    decode_port,
    decode_router_hashes,
    encode_ip,
    encode_net_key,
    encode_port,
    encode_routers,
    net_key_from_hex,
)
from hns.registry import Registry, RegistryError
from hns.sources import LogSource, RegistrySource, SourceError
from hns.sources.base import SourceReset
from hns.sources.chain import (
    DEFAULT_CONFIRMATIONS,
    ChainIdMismatch,
    ChainSource,
    RangePolicy,
    RetryPolicy,
    SyncProgress,
)

__all__ = [
    "DEFAULT_CONFIRMATIONS",
    "DEFAULT_LOOKUP_RETRY",
    "FACT_TOPIC",
    "HNS_NOTES",
    "HYPERMAP_ADDRESS",
    "HYPERMAP_CHAIN_ID",
    "HYPERMAP_FIRST_BLOCK",
    "LABEL_MAX_BYTES",
    "MAX_CACHE_FILE_BYTES",
    "MAX_PENDING",
    "MINT_TOPIC",
    "MULTICALL3_ADDRESS",
    "NOTE_IP",
    "NOTE_NET_KEY",
    "NOTE_QUIC_PORT",
    "NOTE_ROUTERS",
    "NOTE_TCP_PORT",
    "NOTE_TOPIC",
    "NOTE_WS_PORT",
    "PORT_NOTES",
    "REFERENCE_NOTES",
    "ROOT_HASH",
    "Bootstrap",
    "BootstrapError",
    "CacheFileError",
    "ChainIdMismatch",
    "ChainIdentity",
    "ChainSource",
    "Checkpoint",
    "CheckpointError",
    "CheckpointStatus",
    "Cursor",
    "Indexer",
    "InvalidName",
    "InvalidRecordValue",
    "LiveLookup",
    "LogCache",
    "LogMeta",
    "LogSource",
    "LogsMetadata",
    "LookupResult",
    "MalformedAnswer",
    "MalformedLog",
    "MintEvent",
    "NodeRecord",
    "NoteEvent",
    "RangePolicy",
    "Registry",
    "RegistryError",
    "RegistrySource",
    "RetryPolicy",
    "SourceError",
    "SourceReset",
    "SyncProgress",
    "checkpoint_path",
    "decode_ip",
    "decode_mint",
    "decode_net_key",
    "decode_note",
    "decode_port",
    "decode_router_hashes",
    "dump_log_cache",
    "encode_ip",
    "encode_net_key",
    "encode_port",
    "encode_routers",
    "is_valid_label",
    "is_valid_note_label",
    "keccak256",
    "labelhash",
    "load_bootstrap",
    "log_cache_filename",
    "mint_log",
    "namehash",
    "namehash_hex",
    "net_key_from_hex",
    "note_log",
    "ordered_logs",
    "parse_log_cache",
    "read_log_cache",
    "read_notes",
    "record_from_notes",
    "validate_label",
    "validate_name",
    "write_log_cache",
]
