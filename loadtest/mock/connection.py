"""What faults do to a connection, below HTTP: reset it, abort it, leave it silent, or close it idle."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable

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


class IdleCloser:
    """Closes a keep-alive connection once it has stayed idle for `seconds` after a response: a plain
    FIN with no `Connection: close` beforehand, as servers and load balancers do at their idle timeout.

    `busy` when a response starts and `idle` when it has ended; `on_close` is called for each close.
    Only streamed responses say so, and the others take milliseconds: at worst one of them is cut
    by a close falling due just as its request comes, as with any server that has an idle timeout.
    """

    def __init__(self, seconds: float, on_close: Callable[[], None]) -> None:
        self.seconds = seconds
        self._on_close = on_close
        self._timers: dict[asyncio.BaseTransport, asyncio.TimerHandle] = {}

    def busy(self, transport: asyncio.BaseTransport | None) -> None:
        timer = self._timers.pop(transport, None) if transport is not None else None
        if timer is not None:
            timer.cancel()

    def idle(self, transport: asyncio.BaseTransport | None) -> None:
        self.busy(transport)
        if transport is None or transport.is_closing():
            return
        loop = asyncio.get_running_loop()
        self._timers[transport] = loop.call_later(self.seconds, self._close, transport)

    def _close(self, transport: asyncio.BaseTransport) -> None:
        del self._timers[transport]
        if not transport.is_closing():
            transport.close()
            self._on_close()
