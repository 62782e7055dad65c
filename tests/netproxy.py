"""A TCP proxy on loopback between the load generator and a server, for tests of the network between
them: a fixed delay each way, a bandwidth limit, and connections reset or black-holed mid-stream.

    with net_proxy(mock.url, delay_s=0.01) as proxy:    # a 20 ms round trip
        stream_turn(client, proxy.url + path, ...)        # proxy.url: the same URL, through the proxy

    net_proxy(url, cut=Cut("reset", mid_event(2)))        # RST halfway through the 2nd event after
                                                          # the role chunk, on every connection
    net_proxy(url, cut=Cut("blackhole", ..., times=1))    # only the first connection that gets there

Delays and pacing hold to tens of microseconds: the loop waits in epoll for the whole milliseconds
before a delivery and sleeps the rest, where asyncio alone would deliver up to a millisecond late.
The proxy serves from an OS thread with an asyncio loop of its own, as tests/mockthread.py serves
the mock, so it runs whatever the test's thread (patched for gevent) is doing.
"""

from __future__ import annotations

import asyncio
import math
import selectors
import socket
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from gevent import monkey

_start_new_thread: Callable[..., int] = monkey.get_original("_thread", "start_new_thread")
_allocate_lock: Callable[[], Any] = monkey.get_original("_thread", "allocate_lock")
_Selector: type[selectors.BaseSelector] = monkey.get_original("selectors", "DefaultSelector")
_sleep: Callable[[float], None] = monkey.get_original("time", "sleep")

STARTUP_S = 10.0
READ_SIZE = 64 * 1024
# The pieces a bandwidth limit sends, in seconds of transfer each: small enough to stream evenly.
_PACE_S = 0.005

How = Literal["reset", "blackhole"]


@dataclass(frozen=True)
class Cut:
    """What happens to a connection once `at(received)`, given the bytes the server has sent on it so
    far, returns an offset: the client gets the bytes before it, then `how`.

    `reset`: a TCP RST to the client, and the server's side closed. `blackhole`: nothing more goes
    either way and both sides stay open, as behind a dead router or a stuck middlebox. `times`: cut
    only the first N connections that get that far (None: every one)."""

    how: How
    at: Callable[[bytes], int | None]
    times: int | None = None


def mid_event(n: int) -> Callable[[bytes], int | None]:
    """The middle of the n-th SSE event after the first one (the role chunk): the client has the
    events before it whole, and half of that one."""

    def at(received: bytes) -> int | None:
        start = -1
        for _ in range(n + 1):
            start = received.find(b"data: ", start + 1)
            if start < 0:
                return None
        end = received.find(b"\n\n", start)
        return None if end < 0 else (start + end) // 2

    return at


class _PreciseSelector(_Selector):  # type: ignore[valid-type,misc]
    """Waits in epoll for the whole milliseconds before the next deadline, then sleeps the rest.

    The rest is slept with the GIL released, not polled: a polling thread would hold the GIL for
    up to Python's switch interval (5 ms) against the test's thread, which measures the latencies.
    """

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and 0 < timeout < 1e-3:
            _sleep(timeout)
            timeout = 0
        elif timeout is not None and timeout > 0:
            # Half a millisecond under, so the selector's own rounding up lands on the whole one.
            timeout = (math.floor(timeout * 1e3) - 0.5) * 1e-3
        return super().select(timeout)  # type: ignore[no-any-return]


_EOF = b""


class _Cutting:
    """The marker queued where a cut falls, so it happens after the bytes before it, delay included."""


_CUT = _Cutting()
# What a pipe queues: when it is due, and the bytes (b"" for the end) or the cut.
_Item = tuple[float, bytes | _Cutting]


class NetProxy:
    """Forwards each connection to the target with the delay, limit and cut it was given.

    `connections` counts the connections accepted, `cuts` those cut, `bytes_down` the bytes delivered
    to clients, and `closed_by_client` the black-holed connections their client closed."""

    def __init__(
        self,
        target_url: str,
        *,
        delay_s: float = 0.0,
        bytes_per_s: float | None = None,
        cut: Cut | None = None,
    ) -> None:
        parts = urlsplit(target_url)
        assert parts.hostname is not None and parts.port is not None, target_url
        self._parts = parts
        self.target = (parts.hostname, parts.port)
        self.delay_s = delay_s
        self.bytes_per_s = bytes_per_s
        self.cut = cut
        self.url = ""
        self.connections = 0
        self.cuts = 0
        self.cuts_decided = 0  # cuts on their way, delayed with the bytes before them
        self.bytes_down = 0
        self.closed_by_client = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._ready = _allocate_lock()
        self._ready.acquire()
        self._done = _allocate_lock()
        self._done.acquire()

    def start(self) -> None:
        _start_new_thread(self._run, ())
        if not self._ready.acquire(timeout=STARTUP_S) or self._error is not None:
            raise RuntimeError("the proxy did not start") from self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if not self._done.acquire(timeout=STARTUP_S):
            raise RuntimeError(f"the proxy did not stop within {STARTUP_S} s")
        if self._error is not None:
            raise RuntimeError("the proxy failed") from self._error

    def _run(self) -> None:
        loop = asyncio.SelectorEventLoop(_PreciseSelector())
        try:
            loop.run_until_complete(self._serve(loop))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            self._error = exc
            if self._ready.locked():
                self._ready.release()
        finally:
            loop.close()
            self._done.release()

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._stop = loop, asyncio.Event()
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        self.url = urlunsplit(self._parts._replace(netloc=f"127.0.0.1:{port}"))
        self._ready.release()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._forward(client_reader, client_writer)
        except asyncio.CancelledError:
            # Cancelled by stop(): asyncio would log this task's CancelledError as an error.
            client_writer.transport.abort()
        finally:
            self._tasks.discard(task)

    async def _forward(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(client_writer)
            return
        link = _Link(self, client_writer, server_writer, self.cut)
        try:
            await link.run(client_reader, server_reader)
        finally:
            link.close()


class _Link:
    """One client connection and its connection to the server: a pipe each way."""

    def __init__(
        self, proxy: NetProxy, client: asyncio.StreamWriter, server: asyncio.StreamWriter, cut: Cut | None
    ) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.cut = cut
        self.how = cut.how if cut is not None else None
        self.received = bytearray()  # from the server, while the cut is still to come
        # Once the cut is decided nothing more is forwarded, either way.
        self.dropping = False

    async def run(self, client_reader: asyncio.StreamReader, server_reader: asyncio.StreamReader) -> None:
        up = asyncio.create_task(self._pipe(client_reader, self.server, down=False))
        down = asyncio.create_task(self._pipe(server_reader, self.client, down=True))
        try:
            # Either side's close ends the link, once what came before it was delivered.
            await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)

    def close(self) -> None:
        for writer in (self.client, self.server):
            if not writer.transport.is_closing():
                writer.transport.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, down: bool) -> None:
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        delivery = asyncio.create_task(self._deliver(queue, writer, down=down))
        loop = asyncio.get_running_loop()
        try:
            while not delivery.done():
                try:
                    data = await reader.read(READ_SIZE)
                except ConnectionError:
                    data = _EOF
                if self.dropping:
                    if data:
                        continue
                    if down:
                        # A black hole passes no close either: the link ends when the client gives up.
                        await asyncio.Event().wait()
                    if self.how == "blackhole":
                        self.proxy.closed_by_client += 1
                    return
                due = loop.time() + self.proxy.delay_s
                if down and self.cut is not None:
                    data, cutting = self._check_cut(data)
                    if cutting:
                        self.dropping = True
                        queue.put_nowait((due, data))
                        queue.put_nowait((due, _CUT))
                        continue
                queue.put_nowait((due, data))
                if not data:
                    await delivery
                    return
        finally:
            delivery.cancel()
            await asyncio.gather(delivery, return_exceptions=True)

    def _check_cut(self, data: bytes) -> tuple[bytes, bool]:
        """The part of `data` the client gets, and whether the cut comes right after it."""
        assert self.cut is not None
        self.received += data
        offset = self.cut.at(bytes(self.received))
        if offset is None or offset > len(self.received):
            return data, False
        times, self.cut = self.cut.times, None
        if times is not None and self.proxy.cuts_decided >= times:
            return data, False
        self.proxy.cuts_decided += 1
        return data[: len(data) - (len(self.received) - offset)], True

    async def _deliver(
        self,
        queue: asyncio.Queue[_Item],
        writer: asyncio.StreamWriter,
        *,
        down: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        free_at = 0.0  # when the bandwidth limit lets the next byte go
        while True:
            due, data = await queue.get()
            await _sleep_until(loop, due)
            if isinstance(data, _Cutting):
                self._do_cut()
                continue  # nothing more comes: a black hole waits with both sides open
            if not data:
                return
            rate = self.proxy.bytes_per_s
            if rate is None:
                writer.write(data)
            else:
                # Each piece goes when the bytes before it have had their time on the link: a late
                # wake-up sends the pieces that fell due meanwhile at once, so lateness never adds up.
                free_at = max(free_at, loop.time())
                step = max(1, int(rate * _PACE_S))
                for start in range(0, len(data), step):
                    await _sleep_until(loop, free_at + start / rate)
                    writer.write(data[start : start + step])
                free_at += len(data) / rate
            if down:
                self.proxy.bytes_down += len(data)
            await writer.drain()

    def _do_cut(self) -> None:
        self.proxy.cuts += 1
        if self.how == "reset":
            _reset(self.client)
            self.server.transport.abort()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0)."""
    sock = writer.transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    delay = when - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


@contextmanager
def net_proxy(
    target_url: str, *, delay_s: float = 0.0, bytes_per_s: float | None = None, cut: Cut | None = None
) -> Iterator[NetProxy]:
    """A proxy to `target_url` for the `with` block; `proxy.url` is that URL through the proxy."""
    proxy = NetProxy(target_url, delay_s=delay_s, bytes_per_s=bytes_per_s, cut=cut)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
