"""HNS record sources: producers of Hypermap logs behind one async protocol.

* :mod:`hns.sources.base`: :class:`LogSource` (the contract) and :class:`SourceError`;
* :mod:`hns.sources.registry`: :class:`RegistrySource`, the local registry directory.

Chain (JSON-RPC) and hypermap-cacher sources will implement the same protocol.
"""

from hns.sources.base import LogSource, SourceError
from hns.sources.registry import RegistrySource

__all__ = ["LogSource", "RegistrySource", "SourceError"]
