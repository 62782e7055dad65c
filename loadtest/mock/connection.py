"""What faults do to a connection, below HTTP: reset it, abort it, or leave it silent."""

from __future__ import annotations

import asyncio
import socket
import struct

from aiohttp import web

# How often a stalled stream looks whether its client is still there.
_STALL_POLL_S = 0.1


def reset(request: web.Request) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0), before anything is sent."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def abort(request: web.Request) -> None:
    """Abort the connection once what was written has left for the socket."""
    transport = request.transport
    if transport is None:
        return
    for _ in range(100):
        if transport.is_closing() or transport.get_write_buffer_size() == 0:
            break
        await asyncio.sleep(0.01)
    transport.abort()


async def stall(request: web.Request, seconds: float) -> bool:
    """Send nothing for `seconds`; False as soon as the client has closed the connection."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            return False
        await asyncio.sleep(min(_STALL_POLL_S, deadline - loop.time()))
    return True
