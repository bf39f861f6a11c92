"""kernel: processes, capabilities and the Wasm host on top of hnet (docs/kernel.md).

The kernel uses hnet only through its public API (``import hnet``); tests/test_kernel_layers.py
checks it. :class:`kernel.kernel.Kernel` is the entry point.
"""
