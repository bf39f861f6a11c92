"""hnet: the Hyperware node-to-node network stack.

The public API, for the kernel and for library users (docs/architecture.md, "Using hnet as a
library")::

    import hnet

    node = hnet.Node(hnet.NodeConfig(name="alice.os", key=key, home=home), pki)
    await node.start()
    reg = node.register("chat:chat:alice.os", handler)  # Incoming messages, Failed sends
    await node.send(kernel_message)                      # failures reach the handler
    reply = await node.request(hnet.Address.net("bob.os"), b"hi", timeout=5)
    unsubscribe = node.pki.subscribe(on_change)          # PkiChange(name, old, new)
    await node.aclose()

Names resolve lazily, so ``import hnet`` (and so every CLI command) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hnet.core.wire import (
        Address,
        Capability,
        KernelMessage,
        LazyLoadBlob,
        ProcessId,
        Request,
        Response,
        ResponseMessage,
        SendError,
        SendErrorKind,
    )
    from hnet.net.pki import Pki, PkiChange
    from hnet.net.processes import Delivery, Failed, Handler, Incoming, Registration
    from hnet.net.requests import Reply, SendFailed
    from hnet.node import Node, NodeConfig, NodeStartError
    from hns import NodeRecord, Registry

_EXPORTS = {
    "Address": "hnet.core.wire",
    "Capability": "hnet.core.wire",
    "KernelMessage": "hnet.core.wire",
    "LazyLoadBlob": "hnet.core.wire",
    "ProcessId": "hnet.core.wire",
    "Request": "hnet.core.wire",
    "Response": "hnet.core.wire",
    "ResponseMessage": "hnet.core.wire",
    "SendError": "hnet.core.wire",
    "SendErrorKind": "hnet.core.wire",
    "Pki": "hnet.net.pki",
    "PkiChange": "hnet.net.pki",
    "Delivery": "hnet.net.processes",
    "Failed": "hnet.net.processes",
    "Handler": "hnet.net.processes",
    "Incoming": "hnet.net.processes",
    "Registration": "hnet.net.processes",
    "Reply": "hnet.net.requests",
    "SendFailed": "hnet.net.requests",
    "Node": "hnet.node",
    "NodeConfig": "hnet.node",
    "NodeStartError": "hnet.node",
    "NodeRecord": "hns",
    "Registry": "hns",
}

__all__ = [
    "Address",
    "Capability",
    "Delivery",
    "Failed",
    "Handler",
    "Incoming",
    "KernelMessage",
    "LazyLoadBlob",
    "Node",
    "NodeConfig",
    "NodeRecord",
    "NodeStartError",
    "Pki",
    "PkiChange",
    "ProcessId",
    "Registration",
    "Registry",
    "Reply",
    "Request",
    "Response",
    "ResponseMessage",
    "SendError",
    "SendErrorKind",
    "SendFailed",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
