"""The Wasm host: ``hyperware:process@1.0.0`` components (``wit/``) as process runtimes.

``WasmHost().runtime(wasm_bytes)`` gives a :class:`kernel.api.ProcessRuntime`; see
docs/wasm-host.md.
"""

from kernel.wasm.cache import CompiledComponent, ComponentCache, ComponentError
from kernel.wasm.convert import GuestError, GuestLimits
from kernel.wasm.engine import WasmEngine
from kernel.wasm.host import OutputTail, WasmHost, WasmRuntime

__all__ = [
    "CompiledComponent",
    "ComponentCache",
    "ComponentError",
    "GuestError",
    "GuestLimits",
    "OutputTail",
    "WasmEngine",
    "WasmHost",
    "WasmRuntime",
]
