"""kernel: processes, capabilities and the Wasm host on top of hnet (not built yet)."""
