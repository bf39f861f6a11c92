"""Thin asyncio adapters: each moves bytes between a socket and the sans-I/O cores."""
