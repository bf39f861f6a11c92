"""The kernel's control-socket operations (``hnet send``, ``hnet ps``, ``hnet kill``).

Each op takes the request object and returns the reply object, in the control socket's JSON
conventions (``ok``; on failure ``kind`` and ``error``). The node's control server serves them
beside its own ops; this module does not know the socket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from hnet import Address, KernelMessage, ResponseMessage, SendError
from kernel.kernel import Kernel

__all__ = ["MAX_SEND_BODY", "MAX_SEND_TIMEOUT", "kernel_ops"]

JsonObj = dict[str, Any]
Op = Callable[[JsonObj], Awaitable[JsonObj]]

#: the largest BODY ``hnet send`` takes (UTF-8 bytes)
MAX_SEND_BODY = 1024 * 1024
#: the longest ``--await``
MAX_SEND_TIMEOUT = 600.0


def _usage(error: str) -> JsonObj:
    return {"ok": False, "kind": "usage", "error": error}


def kernel_ops(kernel: Kernel) -> dict[str, Op]:
    async def send(req: JsonObj) -> JsonObj:
        target, body, wait = req.get("target"), req.get("body"), req.get("await")
        if not isinstance(target, str) or not isinstance(body, str):
            return _usage("send needs a target address and a body (strings)")
        try:
            address = Address.parse(target)
        except ValueError as e:
            return _usage(f"{target}: {e}")
        data = body.encode()
        if len(data) > MAX_SEND_BODY:
            return _usage(f"body of {len(data)} bytes (at most {MAX_SEND_BODY})")
        if wait is None:
            await kernel.send(address, data)
            return {"ok": True, "sent": True}
        if isinstance(wait, bool) or not isinstance(wait, int | float):
            return _usage("await must be a number of seconds")
        if not 0 < wait <= MAX_SEND_TIMEOUT:
            return _usage(f"await must be in (0, {MAX_SEND_TIMEOUT:g}] s")
        got = await kernel.request(address, data, timeout=float(wait))
        if isinstance(got, SendError):
            kind = got.kind.value.lower()
            return {"ok": False, "kind": kind, "error": f"{target}: {got.kind.value}"}
        return {"ok": True, **_response(got)}

    async def ps(_req: JsonObj) -> JsonObj:
        return {"ok": True, "processes": [p.to_json() for p in kernel.ps()]}

    async def kill(req: JsonObj) -> JsonObj:
        process = req.get("process")
        if not isinstance(process, str):
            return _usage("kill needs a process id")
        try:
            found = await kernel.kill(process)
        except ValueError as e:
            return _usage(f"{process}: {e}")
        if not found:
            return {"ok": False, "kind": "lookup", "error": f"{process}: no such process"}
        return {"ok": True, "killed": process}

    return {"send": send, "ps": ps, "kill": kill}


def _response(km: KernelMessage) -> JsonObj:
    assert isinstance(km.message, ResponseMessage)
    resp = km.message.response
    out: JsonObj = {
        "source": str(km.source),
        "body": resp.body.decode(errors="replace"),
        "body_bytes": len(resp.body),
        "metadata": resp.metadata,
    }
    if km.lazy_load_blob is not None:
        out["blob_bytes"] = len(km.lazy_load_blob.bytes)
    return out
