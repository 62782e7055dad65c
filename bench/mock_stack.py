"""How many concurrent streams does the mock hold on one core, and how well does it keep its schedule?

    python bench/mock_stack.py [--steps 600,800,1000] [--seconds 5] [--repeat 3] [--baseline DIR]
                               [--stacks mock,floor,starlette] [--mock-root DIR] [--no-precise-timers]

Each server runs in a child process pinned to CPU 0: the real mock (`python -m loadtest.mock` with
--precise-timers, as `bench/capacity.py` and `loadtest calibrate` run it; `--mock-root DIR` runs the
mock of another checkout), with `--baseline DIR` the mock of another checkout beside it, step by step
(`git archive HEAD loadtest | tar -x -C /tmp/before` before a change: both in one run), and with
`--stacks mock,starlette` a uvicorn + Starlette StreamingResponse server with the same schedule (needs
`pip install uvicorn starlette`). The schedule is the benchmarks' workload: TTFT 50 ms, 20 content
chunks 10 ms apart, absolute deadlines from the request's arrival.

`--stacks mock,floor` runs the floor beside the mock: the least any Python server can spend writing
that schedule. No event loop and no HTTP: one epoll, non-blocking sockets, one heap of deadlines, the
mock's --precise-timers waiting, requests read to their blank line and Content-Length unchecked, and
one stream's bytes made once (the mock's sizes: head with the role chunk at once, each content chunk
at its deadline, the last with the finish, [DONE] and the chunked body's end), so a chunk costs a heap
pop, one send(), its lateness counted and a push. On loopback the send() alone is most of that, so
the mock's CPU over the floor's is what asyncio and the mock's bookkeeping add, and the step at which
the floor's schedule error passes 1 ms is as far as one core takes this schedule in Python.
Both poll through the last millisecond before each deadline, so below saturation their CPU share
counts that polling too: compare their CPU where the floor's nears a whole core.

This process, pinned to CPU 1, holds N keep-alive connections, each running streams back to back,
through plain asyncio protocols that count events by their blank line and find the response's end by
the last chunk of the chunked encoding: no HTTP parser, so the client costs little beside the
server. Once connected and --warmup seconds in, both sides start counting at the same moment. Per step
it prints streams/s, failed streams, the client-side lateness of content chunks against the schedule,
the server's own schedule error (p50/p99/max, every chunk written), the server's CPU share and CPU ms
per stream, and the client's CPU share (CLIENT: the client used over 90 % of its core, so the load may
be short of N). With --repeat R each step runs R times, the servers taking turns, and a `med` line
gives the medians; on a shared machine, repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import heapq
import itertools
import math
import os
import resource
import select
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
from hdrh.histogram import HdrHistogram

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key"
TTFT_S = 0.050
ITL_S = 0.010
CHUNKS = 20
# The role chunk, the content chunks, the finish and [DONE].
EVENTS = CHUNKS + 3
PATH = "/bench/chan-en-US/chat/completions"
READY = "listening on "
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The end of a chunked body: its last chunk has size 0.
LAST_CHUNK = b"\r\n0\r\n\r\n"
SATURATED = 0.9
# Connections opened at once: aiohttp listens with a backlog of 128, and a SYN dropped waits a second.
CONNECT_BATCH = 100
STACKS = ("mock", "floor", "starlette")


# --- the Starlette server (runs in a child process: `mock_stack.py --serve-starlette`) ---------


def serve_starlette() -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    schedule_error = HdrHistogram(1, 3_600_000_000, 3)

    async def sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        delay = deadline - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def chat(request: Request) -> Response:
        loop = asyncio.get_running_loop()
        start = loop.time()
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse({"error": {"message": "Unauthorized - Invalid Bearer Token"}}, 401)
        body = orjson.loads(await request.body())
        if not isinstance(body, dict) or not str(body.get("model", "")).startswith("nlx"):
            return JSONResponse({"error": {"message": "bad model"}}, 400)
        base = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": "bench",
            "system_fingerprint": "bench",
        }

        def event(delta: dict[str, str], finish: str | None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n"

        async def events() -> AsyncIterator[bytes]:
            yield event({"role": "assistant", "content": ""}, None)
            for i in range(CHUNKS):
                deadline = start + TTFT_S + i * ITL_S
                await sleep_until(loop, deadline)
                yield event({"content": f"piece {i} café 日本語 "}, None)
                # The write happens when the generator resumes; measure there, as late as the mock's.
                schedule_error.record_value(max(0, round((loop.time() - deadline) * 1e6)))
            yield event({}, "stop")
            yield b"data: [DONE]\n\n"

        headers = {"Cache-Control": "no-cache", "X-Conversation-Id": "bench"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    async def stats(request: Request) -> Response:
        h = schedule_error
        summary = {
            "count": h.get_total_count(),
            "p50": h.get_value_at_percentile(50) / 1000,
            "p99": h.get_value_at_percentile(99) / 1000,
            "max": h.get_max_value() / 1000,
        }
        return JSONResponse({"schedule_error_ms": summary})

    async def reset(request: Request) -> Response:
        schedule_error.reset()
        return JSONResponse({"reset": True})

    app = Starlette(
        routes=[
            Route(PATH, chat, methods=["POST"]),
            Route("/_mock/stats", stats),
            Route("/_mock/reset", reset, methods=["POST"]),
        ]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", backlog=2048)
    server = uvicorn.Server(config)
    print(f"uvicorn {READY}http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])


# --- the floor server (runs in a child process: `mock_stack.py --serve-floor`) -------------------


def sse_event(base: dict[str, Any], delta: dict[str, str], finish: str | None) -> bytes:
    """One chat.completion.chunk event, byte for byte as the mock's encoder writes it."""
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n"


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def floor_frames() -> tuple[bytes, list[bytes]]:
    """One stream as the mock writes it: the response head with the role chunk, and the content chunks,
    the last one with the finish, [DONE] and the end of the chunked body. The mock's own pieces of one
    reply, its head fields and its chunk ids, so every write is the size of the mock's."""
    from loadtest.mock.config import DEFAULT_FINGERPRINT
    from loadtest.mock.dist import parse_count_dist
    from loadtest.mock.text import reply_pieces

    conversation_id = str(uuid.uuid4())
    pieces = reply_pieces(0, conversation_id, 0, parse_count_dist(f"const:{CHUNKS}"))
    base = {
        "id": f"chatcmpl-{uuid.uuid4().int:032x}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": PATH.split("/")[2],
        "system_fingerprint": DEFAULT_FINGERPRINT,
    }
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()).encode()
    server = f"Python/{sys.version_info[0]}.{sys.version_info[1]} aiohttp/{version('aiohttp')}".encode()
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"X-Conversation-Id: %s\r\nTransfer-Encoding: chunked\r\nDate: %s\r\nServer: %s\r\n\r\n"
        % (conversation_id.encode(), date, server)
    )
    first = head + http_chunk(sse_event(base, {"role": "assistant", "content": ""}, None))
    frames = [http_chunk(sse_event(base, {"content": piece}, None)) for piece in pieces]
    ending = sse_event(base, {}, "stop") + b"data: [DONE]\n\n"
    frames[-1] += http_chunk(ending) + b"0\r\n\r\n"
    return first, frames


def precise_timeout(delay: float) -> float:
    """epoll's timeout for a deadline `delay` seconds away: the whole milliseconds before it, then 0
    (poll) through the rest, as the mock's --precise-timers selector waits; -1 (none) for no deadline."""
    if delay == math.inf:
        return -1
    whole_ms = math.floor(delay * 1e3)
    # Half a millisecond under, so epoll's rounding up lands on the whole one.
    return (whole_ms - 0.5) * 1e-3 if whole_ms > 0 else 0


def percentiles_ms(counts: dict[int, int], step_us: int) -> dict[str, float | int]:
    """Count, p50, p90, p99 and max of values counted in steps of `step_us`, in ms, as HdrHistogram
    picks a percentile's value (0 when empty)."""
    total = sum(counts.values())
    summary: dict[str, float | int] = {"count": total}
    values = sorted(counts.items())
    for percentile in (50, 90, 99):
        wanted = max(1, int(percentile / 100 * total + 0.5))
        seen = 0
        summary[f"p{percentile}"] = 0.0
        for value, count in values:
            seen += count
            if seen >= wanted:
                summary[f"p{percentile}"] = max(0, value) * step_us / 1000
                break
    summary["max"] = max(0, values[-1][0]) * step_us / 1000 if values else 0.0
    return summary


def content_length(head: bytes) -> int:
    """The Content-Length of a request `head` (without its blank line); 0 without one."""
    start = head.lower().find(b"\r\ncontent-length:")
    if start < 0:
        return 0
    start += len(b"\r\ncontent-length:")
    end = head.find(b"\r\n", start)
    return int(head[start : end if end >= 0 else len(head)])


class FloorConnection:
    """One client connection: what it has sent that is not yet served, what is left to write, and the
    stream it is on (its request's arrival and the index of its next content chunk)."""

    __slots__ = (
        "sock",
        "fd",
        "received",
        "unsent",
        "streaming",
        "arrival",
        "next",
        "closed",
        "close_when_sent",
    )

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.received = bytearray()
        self.unsent = b""
        self.streaming = False
        self.arrival = 0.0
        self.next = 0
        self.closed = False
        self.close_when_sent = False


class FloorServer:
    """The streams of the bench's schedule from one heap of deadlines and one epoll, no event loop.

    Per content chunk: pop the heap, one `send()`, count its lateness (in 10-µs steps, as the mock
    rounds it), push the next deadline. Requests are read up to their blank line and Content-Length
    bytes, unchecked: only the bench's client talks to it.
    """

    LATENESS_STEP_US = 10

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.epoll = select.epoll()
        self.epoll.register(listener.fileno(), select.EPOLLIN)
        self.connections: dict[int, FloorConnection] = {}
        self.heap: list[tuple[float, int, FloorConnection]] = []
        self.seq = itertools.count()
        self.lateness: dict[int, int] = {}
        self.first, self.frames = floor_frames()
        self.offsets = [TTFT_S + i * ITL_S for i in range(len(self.frames))]

    def run(self) -> None:
        listen_fd = self.listener.fileno()
        while True:
            delay = self.heap[0][0] - time.monotonic() if self.heap else math.inf
            for fd, mask in self.epoll.poll(precise_timeout(delay)):
                if fd == listen_fd:
                    self.accept()
                    continue
                connection = self.connections.get(fd)
                if connection is not None and mask & select.EPOLLOUT:
                    self.flush(connection)
                if connection is not None and not connection.closed and mask & ~select.EPOLLOUT:
                    self.receive(connection)
            self.write_due()

    def write_due(self) -> None:
        heap, frames, offsets, lateness = self.heap, self.frames, self.offsets, self.lateness
        pop, push, clock = heapq.heappop, heapq.heappush, time.monotonic
        now = clock()
        while heap and heap[0][0] <= now:
            deadline, _, connection = pop(heap)
            if connection.closed:
                continue
            i = connection.next
            self.send(connection, frames[i])
            if connection.closed:
                continue
            late = round((clock() - deadline) * 1e5)
            lateness[late] = lateness.get(late, 0) + 1
            i += 1
            if i < len(frames):
                connection.next = i
                push(heap, (connection.arrival + offsets[i], next(self.seq), connection))
            else:
                connection.streaming = False
                self.serve(connection)

    def accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            # As asyncio sets it on its TCP transports: each chunk leaves at once.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = FloorConnection(sock)
            self.connections[connection.fd] = connection
            self.epoll.register(connection.fd, select.EPOLLIN)

    def receive(self, connection: FloorConnection) -> None:
        try:
            data = connection.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close(connection)
            return
        connection.received += data
        if not connection.streaming:
            self.serve(connection)

    def serve(self, connection: FloorConnection) -> None:
        """Answer the request at the start of what was received, once it has all come."""
        received = connection.received
        end = received.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(received[:end])
        length = content_length(head)
        if len(received) < end + 4 + length:
            return
        del received[: end + 4 + length]
        if head.startswith(b"GET /_mock/stats "):
            self.answer(
                connection, {"schedule_error_ms": percentiles_ms(self.lateness, self.LATENESS_STEP_US)}
            )
        elif head.startswith(b"POST /_mock/reset "):
            self.lateness.clear()
            self.answer(connection, {"reset": True})
        else:
            connection.streaming = True
            connection.arrival = time.monotonic()
            connection.next = 0
            self.send(connection, self.first)
            heapq.heappush(self.heap, (connection.arrival + self.offsets[0], next(self.seq), connection))

    def answer(self, connection: FloorConnection, data: dict[str, Any]) -> None:
        """A JSON answer, and the connection closed once it is written (the client reads to the end)."""
        body = orjson.dumps(data)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        connection.close_when_sent = True
        self.send(connection, head + b"Connection: close\r\n\r\n" + body)
        if not connection.unsent:
            self.close(connection)

    def send(self, connection: FloorConnection, data: bytes) -> None:
        if connection.unsent:
            connection.unsent += data  # after what is waiting, in order
            return
        try:
            sent = connection.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close(connection)
            return
        if sent < len(data):
            connection.unsent = data[sent:]
            self.epoll.modify(connection.fd, select.EPOLLIN | select.EPOLLOUT)

    def flush(self, connection: FloorConnection) -> None:
        """Send what a full socket buffer left over, now that it is writable."""
        data, connection.unsent = connection.unsent, b""
        self.send(connection, data)
        if connection.closed or connection.unsent:
            return
        if connection.close_when_sent:
            self.close(connection)
        else:
            self.epoll.modify(connection.fd, select.EPOLLIN)

    def close(self, connection: FloorConnection) -> None:
        if connection.closed:
            return
        connection.closed = True
        del self.connections[connection.fd]
        self.epoll.unregister(connection.fd)
        connection.sock.close()


def floor_listener(port: int = 0) -> socket.socket:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(2048)
    listener.setblocking(False)
    return listener


def serve_floor() -> None:
    listener = floor_listener()
    server = FloorServer(listener)
    # As the mock runs: no collector pauses (a connection and its socket make no reference cycle).
    gc.collect()
    gc.freeze()
    gc.disable()
    print(f"floor {READY}http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    server.run()


# --- child processes ---------------------------------------------------------------------------


def _pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def _raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Child:
    name: str
    url: str
    process: subprocess.Popen[str]

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_child(name: str, argv: list[str], cpu: int | None, root: Path, ready: str) -> Child:
    def setup() -> None:
        _pin(cpu)
        _raise_file_limit()

    process = subprocess.Popen(
        argv,
        cwd=root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        preexec_fn=setup,
    )
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], 20)
    line = process.stdout.readline() if readable else ""
    if ready not in line:
        process.kill()
        raise SystemExit(f"{name} did not start: {line!r}")
    return Child(name, line.split(ready, 1)[1].strip(), process)


def start_mock(name: str, root: Path, cpu: int | None, precise: bool) -> Child:
    argv = [sys.executable, "-m", "loadtest.mock", "--api-key", KEY, "--ttft", f"const:{TTFT_S * 1000:g}ms"]
    argv += ["--itl", f"const:{ITL_S * 1000:g}ms", "--chunks", f"const:{CHUNKS}"]
    if precise:
        argv.append("--precise-timers")
    return start_child(name, argv, cpu, root, READY)


# --- the client --------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the connections of one step counted since `counting` was set."""

    counting: bool = False
    streams: int = 0
    failures: int = 0
    lateness: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, 3_600_000_000, 3))


class StreamConnection(asyncio.Protocol):
    """One keep-alive connection running streams back to back until `end` on the loop's clock."""

    def __init__(self, request: bytes, tally: Tally, closed: asyncio.Future[None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.request = request
        self.tally = tally
        self.end = math.inf  # set when the counting starts
        self.closed = closed
        self.transport: asyncio.Transport | None = None
        self.sent = 0.0
        self.events = 0
        self.head = True
        self.tail = b""
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def begin(self) -> None:
        """Send the next request, or close once the step is over."""
        assert self.transport is not None
        if self.loop.time() >= self.end or self.transport.is_closing():
            self.transport.close()
            return
        self.sent = self.loop.time()
        self.events = 0
        self.head = True
        self.tail = b""
        self.busy = True
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = self.loop.time()
        if self.head:
            if not data.startswith(b"HTTP/1.1 200 "):
                self._fail()
                return
            self.head = False
        found = (self.tail[-1:] + data).count(b"\n\n")
        if found and self.tally.counting:
            lateness = self.tally.lateness
            for index in range(max(self.events, 1), min(self.events + found, CHUNKS + 1)):
                deadline = self.sent + TTFT_S + (index - 1) * ITL_S
                lateness.record_value(max(1, round((now - deadline) * 1e6)))
        self.events += found
        self.tail = (self.tail + data)[-len(LAST_CHUNK) :]
        if self.tail == LAST_CHUNK:
            self.busy = False
            if self.tally.counting and now <= self.end:
                if self.events == EVENTS:
                    self.tally.streams += 1
                else:
                    self.tally.failures += 1
            self.begin()

    def _fail(self) -> None:
        if self.tally.counting:
            self.tally.failures += 1
        self.busy = False
        assert self.transport is not None
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy and self.tally.counting and self.loop.time() <= self.end:
            self.tally.failures += 1
        if not self.closed.done():
            self.closed.set_result(None)


def stream_request(host: str, port: int) -> bytes:
    body = orjson.dumps({"model": "nlx", "messages": [{"role": "user", "content": "hello"}], "stream": True})
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def control(host: str, port: int, method: str, path: str) -> dict[str, Any]:
    """One request to the server's /_mock/... routes, on a connection of its own; its JSON answer."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
    )
    raw = await reader.read()
    writer.close()
    _, _, body = raw.partition(b"\r\n\r\n")
    data: dict[str, Any] = orjson.loads(body)
    return data


@dataclass
class StepResult:
    streams_per_s: float
    failures: int
    late_p50: float
    late_p99: float
    srv_p50: float
    srv_p99: float
    srv_max: float
    srv_cpu: float
    srv_cpu_ms: float
    cli_cpu: float


async def drive(child: Child, concurrency: int, seconds: float, warmup: float) -> StepResult:
    """Hold `concurrency` streams for `warmup` + `seconds` once connected; count the last `seconds` on
    both sides."""
    host, port_text = child.url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    port = int(port_text)
    loop = asyncio.get_running_loop()
    tally = Tally()
    request = stream_request(host, port)
    connections: list[StreamConnection] = []
    closed: list[asyncio.Future[None]] = []
    for first in range(0, concurrency, CONNECT_BATCH):
        futures = [loop.create_future() for _ in range(first, min(first + CONNECT_BATCH, concurrency))]
        made = await asyncio.gather(
            *(
                loop.create_connection(lambda f=f: StreamConnection(request, tally, f), host, port)
                for f in futures
            )
        )
        connections += [protocol for _, protocol in made]
        closed += futures
    # Spread the first requests over one stream length, so the schedules do not move in lockstep.
    length = TTFT_S + CHUNKS * ITL_S
    for i, connection in enumerate(connections):
        loop.call_later(i / concurrency * length, connection.begin)
    await asyncio.sleep(warmup)
    await control(host, port, "POST", "/_mock/reset")
    tally.counting = True
    counted = loop.time()
    for connection in connections:
        connection.end = counted + seconds
    cpu_before, client_before = child.cpu_seconds(), time.process_time()
    await asyncio.sleep(seconds)
    server_cpu = child.cpu_seconds() - cpu_before
    elapsed = loop.time() - counted
    client_cpu = (time.process_time() - client_before) / elapsed
    stats = await control(host, port, "GET", "/_mock/stats")
    await asyncio.wait_for(asyncio.gather(*closed), timeout=10)
    schedule = stats["schedule_error_ms"]
    lateness = tally.lateness
    return StepResult(
        streams_per_s=tally.streams / elapsed,
        failures=tally.failures,
        late_p50=lateness.get_value_at_percentile(50) / 1000,
        late_p99=lateness.get_value_at_percentile(99) / 1000,
        srv_p50=float(schedule["p50"]),
        srv_p99=float(schedule["p99"]),
        srv_max=float(schedule.get("max", 0.0)),
        srv_cpu=server_cpu / elapsed,
        srv_cpu_ms=1000 * server_cpu / max(1, tally.streams),
        cli_cpu=client_cpu,
    )


# --- the report --------------------------------------------------------------------------------

HEADER = (
    f"{'server':<13}{'conc':>5}{'stream/s':>9}{'fail':>5}{'late p50':>9}{'late p99':>9}"
    f"{'srv p50':>8}{'srv p99':>8}{'srv max':>8}{'srv CPU':>8}{'ms/strm':>8}{'cli CPU':>8}"
)


def row(name: str, concurrency: int, r: StepResult) -> str:
    flag = "  CLIENT" if r.cli_cpu > SATURATED else ""
    return (
        f"{name:<13}{concurrency:>5}{r.streams_per_s:>9.0f}{r.failures:>5}{r.late_p50:>9.2f}{r.late_p99:>9.2f}"
        f"{r.srv_p50:>8.2f}{r.srv_p99:>8.2f}{r.srv_max:>8.1f}{r.srv_cpu:>8.0%}{r.srv_cpu_ms:>8.3f}"
        f"{r.cli_cpu:>8.0%}{flag}"
    )


def median(results: list[StepResult]) -> StepResult:
    fields = StepResult.__dataclass_fields__
    values = {name: statistics.median(getattr(r, name) for r in results) for name in fields}
    values["failures"] = int(values["failures"])
    return StepResult(**values)


def parse_steps(text: str) -> list[int]:
    try:
        steps = [int(s) for s in text.split(",")]
    except ValueError:
        steps = []
    if not steps or min(steps) < 1:
        print(f"mock_stack: --steps takes positive whole numbers, e.g. 600,800,1000 (got {text!r})")
        raise SystemExit(2)
    return steps


def start_stacks(
    names: list[str], cpu: int | None, mock_root: Path, baseline: Path | None, precise: bool
) -> list[Child]:
    children = []
    if baseline is not None:
        children.append(start_mock("baseline", baseline, cpu, precise))
    for name in names:
        if name == "mock":
            children.append(start_mock("mock", mock_root, cpu, precise))
        else:
            children.append(
                start_child(name, [sys.executable, __file__, f"--serve-{name}"], cpu, ROOT, READY)
            )
    return children


def check_stacks(text: str) -> list[str]:
    names = text.split(",")
    unknown = [name for name in names if name not in STACKS]
    if unknown:
        print(f"mock_stack: --stacks takes {', '.join(STACKS)}, comma-separated (got {text!r})")
        raise SystemExit(2)
    if "starlette" in names:
        try:
            import starlette  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError:
            print("mock_stack: --stacks starlette needs uvicorn and starlette: pip install uvicorn starlette")
            raise SystemExit(2) from None
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="counted per step, after the warm-up")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--steps", default="600,800,1000")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--stacks", default="mock")
    parser.add_argument("--mock-root", type=Path, default=ROOT, help="the checkout whose mock runs")
    parser.add_argument(
        "--baseline", type=Path, help="a checkout whose mock runs too, step by step beside it"
    )
    parser.add_argument("--no-precise-timers", action="store_true", help="run the mock without them")
    parser.add_argument("--serve-starlette", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_starlette:
        serve_starlette()
        return 0
    if args.serve_floor:
        serve_floor()
        return 0
    steps = parse_steps(args.steps)
    names = check_stacks(args.stacks)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    _raise_file_limit()
    baseline = args.baseline.resolve() if args.baseline is not None else None
    for root in (args.mock_root, baseline):
        if root is not None and not (root / "loadtest" / "mock" / "__main__.py").is_file():
            print(f"mock_stack: {root} holds no loadtest/mock: give a checkout (git archive HEAD loadtest)")
            return 2
    children = start_stacks(names, server_cpu, args.mock_root.resolve(), baseline, not args.no_precise_timers)
    _pin(client_cpu)
    print(
        f"server CPU {server_cpu}, client CPU {client_cpu}; {args.warmup:g} s warm-up and {args.seconds:g} s "
        f"counted per step; TTFT {TTFT_S * 1000:g} ms, {CHUNKS} chunks {ITL_S * 1000:g} ms apart; "
        f"mock from {args.mock_root}"
    )
    print(HEADER)
    print("-" * len(HEADER))
    try:
        for concurrency in steps:
            results: dict[str, list[StepResult]] = {child.name: [] for child in children}
            # Round by round, so what else the machine runs weighs on each server alike.
            for _ in range(args.repeat):
                for child in children:
                    result = asyncio.run(drive(child, concurrency, args.seconds, args.warmup))
                    results[child.name].append(result)
                    print(row(child.name, concurrency, result), flush=True)
            if args.repeat > 1:
                for name, runs in results.items():
                    print(row(f"{name} med", concurrency, median(runs)), flush=True)
    finally:
        for child in children:
            child.stop()
    print(
        "late: client-side content chunk arrival minus its schedule; srv: server-side write minus deadline;"
    )
    print("(ms). srv CPU: share of one core over the counted seconds; ms/strm: server CPU ms per stream")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
