"""The mock's fast path (loadtest/mock/fastpath.py): chat requests streamed straight from the socket,
everything else handed over to aiohttp; and the ticker's catching up (loadtest/mock/ticker.py)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from loadtest.mock.config import MockConfig, parse_config
from loadtest.mock.fastpath import ChatPaths, FastConnection, FastServer, NotOurs, read_head, serves
from loadtest.mock.routes import ChatRoutes
from loadtest.mock.state import MockState, Turn
from loadtest.mock.stream import Encoder
from loadtest.mock.ticker import Schedule, Ticker
from tests.mockthread import ThreadedMock, mock_in_thread

KEY = "fast-key"
NLX_PATH = "/dep-1/chan-en-US/chat/completions"
BODY = orjson.dumps({"model": "nlx", "messages": [{"role": "user", "content": "hello"}], "stream": True})


def request(
    path: str = NLX_PATH,
    body: bytes = BODY,
    *,
    key: str = KEY,
    line: str = "POST {path} HTTP/1.1",
    fields: str = "",
) -> bytes:
    head = (
        f"{line.format(path=path)}\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{fields}\r\n"
    )
    return head.encode() + body


def config(*args: str) -> MockConfig:
    return parse_config(["--api-key", KEY, *args], {})


# --- reading a request head ---------------------------------------------------------------------

PATHS = ChatPaths(config())


def test_a_chat_request_head_is_read_once_its_blank_line_has_come() -> None:
    raw = request()
    size = raw.index(b"\r\n\r\n") + 4
    for cut in range(size - 1):
        assert read_head(raw[:cut], PATHS) is None
    head = read_head(raw, PATHS)
    assert head is not None
    assert (head.nlx, head.deployment, head.channel) == (True, "dep-1", "chan-en-US")
    assert (head.authorization, head.size, head.content_length) == (f"Bearer {KEY}".encode(), size, len(BODY))


def test_field_names_are_read_in_any_case_and_values_trimmed() -> None:
    raw = request(fields="CONNECTION:  Keep-Alive \r\n").replace(b"Content-Length:", b"content-LENGTH:")
    head = read_head(raw, PATHS)
    assert head is not None and head.content_length == len(BODY)


def test_the_openai_route_is_read_with_or_without_a_prefix() -> None:
    head = read_head(request("/v1/chat/completions?x=1"), PATHS)
    assert head is not None and not head.nlx
    prefixed = ChatPaths(config("--prefix", "/api"))
    assert not prefixed.match(b"/api/chat/completions")[0]
    assert prefixed.match(b"/api/d/c-en-US/chat/completions") == (True, "d", "c-en-US")
    with pytest.raises(NotOurs):
        prefixed.match(b"/d/c-en-US/chat/completions")


@pytest.mark.parametrize(
    "raw",
    [
        request(line="GET {path} HTTP/1.1"),
        request(line="POST {path} HTTP/1.0"),
        request("/_mock/stats"),
        request("/a/b/c-en-US/chat/completions"),
        request("//c-en-US/chat/completions"),
        request("/./c-en-US/chat/completions"),
        request("/dep%2D1/chan-en-US/chat/completions"),
        request("/dëp/chan-en-US/chat/completions"),
        request(fields="Transfer-Encoding: chunked\r\n"),
        request(fields="Expect: 100-continue\r\n"),
        request(fields="Connection: close\r\n"),
        request(fields="Connection: Upgrade\r\nUpgrade: h2c\r\n"),
        request(fields="Content-Length: 3\r\n"),
        request(fields="Authorization: Bearer other\r\n"),
        request(fields=" folded\r\n"),
        request(fields="Bad Name: x\r\n"),
        request(fields="X-Bare: a\nb\r\n"),
        request().replace(b"Content-Length", b"X-Length"),
        request().replace(b"Content-Length: ", b"Content-Length: +"),
    ],
    ids=[
        "get",
        "http-1.0",
        "other-route",
        "three-keys",
        "empty-key",
        "dot-key",
        "percent",
        "non-ascii",
        "chunked-body",
        "expect",
        "connection-close",
        "upgrade",
        "length-twice",
        "key-twice",
        "folded-line",
        "space-in-name",
        "bare-lf",
        "no-length",
        "signed-length",
    ],
)
def test_what_the_fast_path_does_not_read_itself_is_handed_over(raw: bytes) -> None:
    with pytest.raises(NotOurs):
        read_head(raw, PATHS)


def test_a_head_that_never_ends_is_handed_over() -> None:
    assert read_head(b"POST / HTTP/1.1\r\nX: " + b"a" * 60_000, PATHS) is None
    with pytest.raises(NotOurs):
        read_head(b"POST / HTTP/1.1\r\nX: " + b"a" * 70_000, PATHS)


# --- the chunks' bytes ---------------------------------------------------------------------------


def test_framed_chunks_are_the_events_framed_for_the_chunked_encoding() -> None:
    encoder = Encoder({"id": "chatcmpl-1", "model": "m"}, usage_null=True)
    pieces = ["thinking ", 'a "quote" \\ é', "日本語 \u2028 🚀"]
    expected = []
    for i, piece in enumerate(pieces):
        event = encoder({"reasoning_content" if i < 1 else "content": piece}, None)
        expected.append(b"%x\r\n%s\r\n" % (len(event), event))
    assert encoder.frames(pieces, 1) == expected
    assert orjson.loads(expected[2].split(b"\r\n")[1][len(b"data: ") :])["usage"] is None


# --- a connection, fed by hand ------------------------------------------------------------------


class Recorder(asyncio.Transport):
    """A transport that keeps what is written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class HandedOver:
    """Stands in for aiohttp's handler: what it was given."""

    def __init__(self) -> None:
        self.data = b""
        self.transport: object = None

    def connection_made(self, transport: object) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data


def feed(connection: FastConnection, data: bytes) -> None:
    view = connection.get_buffer(len(data))
    view[: len(data)] = data
    connection.buffer_updated(len(data))


def test_a_request_fed_byte_by_byte_streams_once_its_body_is_complete() -> None:
    async def scenario() -> tuple[list[bytes], MockState]:
        cfg = config("--ttft", "const:0ms", "--itl", "const:0ms", "--chunks", "const:3")
        state = MockState()
        server = FastServer(cfg, ChatRoutes(cfg, state), handover=None)  # type: ignore[arg-type]
        connection, transport = FastConnection(server), Recorder()
        connection.connection_made(transport)
        raw = request()
        for i in range(len(raw) - 1):
            feed(connection, raw[i : i + 1])
        assert transport.writes == [] and state.requests == 0
        feed(connection, raw[-1:])
        assert len(transport.writes) == 1 and connection.streaming
        while connection.streaming:
            await asyncio.sleep(0)
        return transport.writes, state

    writes, state = asyncio.run(scenario())
    head, _, role = writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nTransfer-Encoding: chunked" in head
    assert b'"delta":{"role":"assistant","content":""}' in role
    # The finish, [DONE] and the end of the body go with the last chunk.
    assert len(writes) >= 2 and writes[-1].endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
    assert (state.requests, state.turns_completed, state.chunks) == (1, 1, 3)


def test_a_request_not_ours_hands_the_connection_over_with_all_it_read() -> None:
    async def scenario() -> tuple[HandedOver, Recorder, MockState]:
        cfg = config()
        state = MockState()
        handler = HandedOver()
        server = FastServer(cfg, ChatRoutes(cfg, state), handover=lambda: handler)  # type: ignore[arg-type]
        connection, transport = FastConnection(server), Recorder()
        transport.set_protocol = lambda protocol: None  # type: ignore[method-assign]
        connection.connection_made(transport)
        feed(connection, request(key="wrong") + b"GET /_mock/stats HTTP/1.1\r\n")
        return handler, transport, state

    handler, transport, state = asyncio.run(scenario())
    assert handler.transport is transport
    assert handler.data == request(key="wrong") + b"GET /_mock/stats HTTP/1.1\r\n"
    assert transport.writes == [] and state.requests == 0  # aiohttp answers and counts it


def test_serves_only_without_faults_and_without_max_concurrent() -> None:
    assert serves(config())
    assert not serves(config("--fault", "http_500=1%"))
    assert not serves(config("--fault", "keepalive_timeout=2s"))
    assert not serves(config("--max-concurrent", "10"))


# --- the real mock, over a socket ---------------------------------------------------------------


@pytest.fixture(scope="module")
def mock() -> Iterator[ThreadedMock]:
    with mock_in_thread("--ttft", "const:2ms", "--itl", "const:1ms", "--chunks", "const:3", api_key=KEY) as m:
        yield m


def exchange(mock: ThreadedMock, data: bytes, count: int) -> list[bytes]:
    """Send `data` on one connection; the first `count` responses, each head and body."""
    host, port = mock.base.removeprefix("http://").split(":")
    received = b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        while len(responses(received)) < count and (piece := sock.recv(65536)):
            received += piece
    return responses(received)[:count]


def responses(received: bytes) -> list[bytes]:
    """The complete responses in `received`: a chunked one ends with its last chunk, others are sized."""
    found = []
    while b"\r\n\r\n" in received:
        head, _, rest = received.partition(b"\r\n\r\n")
        if b"Transfer-Encoding: chunked" in head:
            body, end, received = rest.partition(b"\r\n0\r\n\r\n")
            if not end:
                break
        else:
            size = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            if len(rest) < size:
                break
            body, received = rest[:size], rest[size:]
        found.append(head + b"\r\n\r\n" + body)
    return found


def test_pipelined_requests_on_one_connection_stream_one_after_the_other(mock: ThreadedMock) -> None:
    first, second = exchange(mock, request() + request(), 2)
    for response in (first, second):
        assert response.startswith(b"HTTP/1.1 200 OK\r\n")
        assert response.endswith(b"data: [DONE]\n\n")
    assert first.split(b"X-Conversation-Id: ")[1][:36] != second.split(b"X-Conversation-Id: ")[1][:36]


def test_after_a_stream_a_request_not_ours_is_answered_by_aiohttp_on_the_same_connection(
    mock: ThreadedMock,
) -> None:
    before = mock.stats()["status"]
    stream, refused, stats = exchange(
        mock, request() + request(key="wrong") + b"GET /_mock/stats HTTP/1.1\r\nHost: x\r\n\r\n", 3
    )
    assert stream.startswith(b"HTTP/1.1 200 OK") and stream.endswith(b"data: [DONE]\n\n")
    assert refused.startswith(b"HTTP/1.1 401 ") and b"Invalid Bearer Token" in refused
    counted = orjson.loads(stats.partition(b"\r\n\r\n")[2])["status"]
    assert (counted["200"] - before["200"], counted["401"] - before["401"]) == (1, 1)


def test_the_fast_head_has_the_fields_aiohttps_has(mock: ThreadedMock) -> None:
    (fast,) = exchange(mock, request(), 1)
    with mock_in_thread("--ttft", "const:2ms", "--max-concurrent", "5", api_key=KEY) as through_aiohttp:
        (slow,) = exchange(through_aiohttp, request(), 1)

    def fields(response: bytes) -> dict[bytes, bytes]:
        lines = response.partition(b"\r\n\r\n")[0].split(b"\r\n")
        named = dict(line.split(b": ", 1) for line in lines[1:])
        return {name: value for name, value in named.items() if name not in (b"Date", b"X-Conversation-Id")}

    assert fast.split(b"\r\n")[0] == slow.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    assert fields(fast) == fields(slow)


# --- the ticker ----------------------------------------------------------------------------------


class Timer:
    def __init__(self, when: float, callback: Any) -> None:
        self.when, self.callback = when, callback

    def cancel(self) -> None:
        self.callback = None


class Clock:
    """The loop of a ticker driven by hand: its time, and its one timer, fired by `advance`."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timer: Timer | None = None

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any) -> Timer:
        self.timer = Timer(when, callback)
        return self.timer

    def advance(self, now: float) -> None:
        """Move to `now` and fire the timer if it has fallen due, as the event loop would."""
        self.now = now
        timer = self.timer
        if timer is not None and timer.callback is not None and timer.when <= now:
            self.timer = None
            timer.callback()


def test_chunks_already_due_go_out_in_one_write_each_counted_late() -> None:
    clock = Clock()
    ticker = Ticker(clock)  # type: ignore[arg-type]
    state, transport, ended = MockState(), Recorder(), []
    frames, pieces = [b"f0", b"f1", b"f2", b"f3"], ["a", "b", "c", "d"]
    deadlines = [99.997, 99.998, 99.999, 100.5]  # three due, one a half second away
    Schedule(
        ticker, state, transport, frames, pieces, 0, deadlines, ([Turn(b"[]", "abcd")], 0), 0, ended.append
    ).start()
    clock.advance(100.0)
    assert transport.writes == [b"f0f1f2"] and state.chunks == 3 and ended == []
    assert state.schedule_error_us.hdr.get_max_value() >= 2999  # the first one, 3 ms late
    clock.advance(100.4)
    assert transport.writes == [b"f0f1f2"]
    clock.advance(100.5)
    assert transport.writes == [b"f0f1f2", b"f3"] and state.chunks == 4 and ended == [True]
