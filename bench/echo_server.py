"""A raw asyncio TCP echo server in its own process: the yardstick for node-to-node latency.

Messages are ``[u32 BE len][bytes]``, echoed whole (streams, TCP_NODELAY, the same event loop
kind as the nodes via :func:`hnet.runtime.run`). Prints ``PORT <n>`` on stdout once listening
and exits when its stdin closes, so it never outlives the benchmark that started it (which
starts it in a session of its own, out of reach of the terminal's Ctrl-C).

    python bench/echo_server.py [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import struct
import threading

from hnet.runtime import run

U32 = struct.Struct(">I")
READ_SIZE = 256 * 1024


def nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo length-prefixed messages until the peer closes."""
    nodelay(writer)
    readexactly = reader.readexactly
    unpack = U32.unpack
    try:
        while True:
            header = await readexactly(4)
            body = await readexactly(unpack(header)[0])
            writer.write(header + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def watch_stdin(loop: asyncio.AbstractEventLoop, done: asyncio.Event) -> None:
    """Block on stdin (a daemon thread); EOF means the parent closed it or died."""
    with contextlib.suppress(OSError):
        while os.read(0, 4096):  # unbuffered: no stdin lock held at interpreter exit
            pass
    with contextlib.suppress(RuntimeError):  # the loop may already be closed
        loop.call_soon_threadsafe(done.set)


async def main(host: str) -> None:
    server = await asyncio.start_server(echo, host, 0, limit=READ_SIZE)
    port = server.sockets[0].getsockname()[1]
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    threading.Thread(target=watch_stdin, args=(loop, done), daemon=True).start()
    print(f"PORT {port}", flush=True)
    await done.wait()
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    with contextlib.suppress(KeyboardInterrupt):
        run(main(parser.parse_args().host))
