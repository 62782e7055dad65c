"""The chat routes served straight from the socket: how the mock streams when it injects no faults.

Through aiohttp a stream costs a parsed `Request`, a `StreamResponse` and their header multidicts, a
task for the handler and a writer call per write: at thousands of streams a second that was half of
the mock's CPU. A `FastConnection` reads an HTTP/1.1 chat request itself, writes the response head
with the role chunk in one write, and leaves the chunks to the ticker (`Streamer.stream_raw`: one
write each, the last one with the finish, [DONE] and the end of the chunked body), with no task.

Whatever it does not stream this way it hands over, with the bytes it has read, to aiohttp's own
handler, which keeps the connection from then on and answers as it always has: another route or
method, HTTP/1.0, a body not sized by Content-Length, `Expect`, `Connection` other than keep-alive, a
percent-encoded or non-ASCII path, a wrong key, a body the routes would refuse, anything it does not
parse. So every answer but a good stream is aiohttp's, and the mock's state has not counted a request
when it is handed over. With faults or --max-concurrent the mock does not use it (`serves`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
import time
from typing import Any, NamedTuple

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE

from loadtest import nlx
from loadtest.mock.config import MockConfig
from loadtest.mock.routes import ChatRoutes
from loadtest.mock.stream import TurnPlan
from loadtest.mock.validation import BadRequest, check_channel_key, parse_nlx_body, parse_openai_body

_READ_SIZE = 64 * 1024
# A head not complete within this many bytes is aiohttp's to refuse.
_MAX_HEAD = 64 * 1024
# While a stream is written, requests pipelined behind it are buffered up to this much, then read no more.
_MAX_PIPELINED = 256 * 1024
_COMPLETIONS = b"/chat/completions"
_NOT_KEYS = {b"", b".", b".."}


def serves(config: MockConfig) -> bool:
    """Whether the mock streams through fast connections: not when it injects faults (aiohttp's
    handlers draw and play them) nor with --max-concurrent (a stream may have to wait for a slot)."""
    return not config.faults and config.max_concurrent is None


class NotOurs(Exception):
    """The request is not one a fast connection streams: aiohttp's handler takes the connection."""


class Head(NamedTuple):
    """A chat request's head: its route, what its path names, its key and where its body is."""

    nlx: bool  # the NLX route; else the generic OpenAI one
    deployment: str  # NLX: the path's deployment key (the chunks' model) and channel key
    channel: str
    authorization: bytes
    size: int  # of the head, up to and with the blank line
    content_length: int


class ChatPaths:
    """Matches a request path to the chat routes as aiohttp's router does for plain paths."""

    def __init__(self, config: MockConfig) -> None:
        self.openai = config.openai_path.encode()
        self.prefix = config.prefix.encode() + b"/"

    def match(self, path: bytes) -> tuple[bool, str, str]:
        """(nlx, deployment, channel) for a chat route's path; NotOurs for any other."""
        if path == self.openai:
            return False, "", ""
        if not (path.startswith(self.prefix) and path.endswith(_COMPLETIONS)):
            raise NotOurs
        keys = path[len(self.prefix) : -len(_COMPLETIONS)]
        deployment, _, channel = keys.partition(b"/")
        # aiohttp's {name} matches one non-empty segment; braces and dot segments are left to it.
        if b"/" in channel or b"{" in keys or b"}" in keys or {deployment, channel} & _NOT_KEYS:
            raise NotOurs
        return True, deployment.decode("ascii"), channel.decode("ascii")


# The request line of a chat request as served here, and well-formed fields: a path of visible ASCII
# but `%` (no percent-decoding here) and `#`, HTTP/1.1, a token before each colon. Anything else goes to
# aiohttp's parser, which answers or refuses it.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_HEAD = re.compile(rb'POST (/[!"$&-~]*) HTTP/1\.1(\r\n(?:' + _TOKEN + rb":[^\r\n]*\r\n)*)\r\n")
_CONTENT_LENGTH = b"\r\ncontent-length:"
_AUTHORIZATION = b"\r\nauthorization:"
_CONNECTION = b"\r\nconnection:"
# Fields after which aiohttp reads the body or the connection otherwise.
_NOT_OURS = (b"\r\ntransfer-encoding:", b"\r\nexpect:", b"\r\nupgrade:")


def read_head(buffer: bytes | bytearray, paths: ChatPaths) -> Head | None:
    """The head at the start of `buffer`; None until its blank line has come; NotOurs for a request
    a fast connection does not stream."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > _MAX_HEAD:
            raise NotOurs
        return None
    match = _HEAD.match(buffer, 0, end + 4)
    if match is None:
        raise NotOurs
    nlx_route, deployment, channel = paths.match(match.group(1).partition(b"?")[0])
    fields = match.group(2)
    names = fields.lower()
    if any(name in names for name in _NOT_OURS):
        raise NotOurs
    length = _field(fields, names, _CONTENT_LENGTH)
    if length is None or not length.isdigit() or len(length) > 12:
        raise NotOurs
    connection = _field(fields, names, _CONNECTION)
    if connection is not None and connection.lower() != b"keep-alive":
        raise NotOurs
    authorization = _field(fields, names, _AUTHORIZATION) or b""
    return Head(nlx_route, deployment, channel, authorization, end + 4, int(length))


def _field(fields: bytes, names: bytes, name: bytes) -> bytes | None:
    """The value of field `name` (lower case, between CRLF and colon) in `fields` (from the CRLF after
    the request line on, `names` the same in lower case); None if absent; NotOurs if repeated."""
    start = names.find(name)
    if start < 0:
        return None
    if names.find(name, start + 1) >= 0:
        raise NotOurs
    start += len(name)
    return fields[start : fields.index(b"\r\n", start)].strip(b" \t")


class _Date:
    """The Date header's value, made once a second."""

    def __init__(self) -> None:
        self.second = -1
        self.value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self.second:
            self.second = second
            self.value = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(second)).encode()
        return self.value


def response_head(conversation_id: str, date: bytes) -> bytes:
    """The head aiohttp writes for a stream, field for field."""
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"X-Conversation-Id: %s\r\nTransfer-Encoding: chunked\r\nDate: %s\r\nServer: %s\r\n\r\n"
        % (conversation_id.encode(), date, SERVER_SOFTWARE.encode())
    )


class FastServer:
    """What the fast connections of one mock share, and their shutdown."""

    def __init__(self, config: MockConfig, chat: ChatRoutes, handover: web.Server) -> None:
        self.config = config
        self.chat = chat
        self.handover = handover  # makes aiohttp's handler for a connection handed over
        self.loop = asyncio.get_running_loop()
        self.paths = ChatPaths(config)
        self.bearer = f"Bearer {config.api_key}".encode()
        self.date = _Date()
        self.connections: set[FastConnection] = set()
        # Every fast connection reads into this, then keeps what it read: one read at a time.
        self.read_buffer = memoryview(bytearray(_READ_SIZE))
        self.closing = False
        self._drained: asyncio.Future[None] | None = None

    def connection(self) -> FastConnection:
        return FastConnection(self)

    def admit(self, head: Head, body: bytes, started_ns: int) -> tuple[TurnPlan, bytes]:
        """Check a chat request and plan its stream, as the routes would; NotOurs when they would
        answer it otherwise."""
        if not hmac.compare_digest(head.authorization, self.bearer):
            raise NotOurs
        try:
            if head.nlx:
                check_channel_key(head.channel)
                conversation_id, messages = parse_nlx_body(body)
                model, include_usage = head.deployment, False
            else:
                model, messages, include_usage = parse_openai_body(body)
                conversation_id = None
        except BadRequest:
            raise NotOurs from None
        if conversation_id is not None and not (conversation_id.isascii() and conversation_id.isprintable()):
            raise NotOurs  # aiohttp's to write in a header, or to refuse
        return self._plan(head, conversation_id, messages, model, include_usage, started_ns)

    def _plan(
        self,
        head: Head,
        conversation_id: str | None,
        messages: list[dict[str, Any]],
        model: str,
        include_usage: bool,
        started_ns: int,
    ) -> tuple[TurnPlan, bytes]:
        state = self.chat.state
        state.requests += 1
        if head.nlx:
            conversation_id = conversation_id or nlx.new_conversation_id()
            turns = state.begin_turn(conversation_id, messages)
        else:
            conversation_id = nlx.new_conversation_id()
            turns = state.begin_stateless_turn(messages)
        start = self.loop.time() - (time.perf_counter_ns() - started_ns) / 1e9
        plan = self.chat.streamer.plan(
            start, started_ns, conversation_id, turns, messages, model, include_usage=include_usage
        )
        return plan, response_head(conversation_id, self.date.now())

    def stream_ended(self, connection: FastConnection) -> None:
        if self.closing:
            connection.close()

    def lost(self, connection: FastConnection) -> None:
        self.connections.discard(connection)
        if self._drained is not None and not self._drained.done() and not self._streaming():
            self._drained.set_result(None)

    def _streaming(self) -> bool:
        return any(connection.streaming for connection in self.connections)

    async def shutdown(self, grace_s: float) -> None:
        """Close the idle connections, give the streams `grace_s` to end, then cut them."""
        self.closing = True
        for connection in list(self.connections):
            if not connection.streaming:
                connection.close()
        if self._streaming():
            self._drained = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained, grace_s)
        for connection in list(self.connections):
            connection.abort()


class FastConnection(asyncio.BufferedProtocol):
    """One client connection: chat requests streamed here, one after the other, until one is not ours.

    Reads go into the server's one read buffer (a buffered protocol): no new bytes object for each
    read, which asyncio makes at 256 KiB and cuts to size.
    """

    def __init__(self, server: FastServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.streaming = False
        self.paused = False
        self.head_ns = 0  # when the head of the request being read was complete

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections.add(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.server.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.buffer += self.server.read_buffer[:nbytes]
        if not self.streaming:
            self._serve()
        elif len(self.buffer) > _MAX_PIPELINED and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def _serve(self) -> None:
        """Stream the request at the start of the buffer once it is all there, or hand over."""
        transport = self.transport
        if transport is None or not self.buffer or self.server.closing:
            return
        try:
            head = read_head(self.buffer, self.server.paths)
            if head is None:
                return
            if self.head_ns == 0:
                self.head_ns = time.perf_counter_ns()
            end = head.size + head.content_length
            if len(self.buffer) < end:
                return
            admitted = self.server.admit(head, bytes(self.buffer[head.size : end]), self.head_ns)
        except NotOurs:
            self._hand_over(transport)
            return
        plan, response_head = admitted
        del self.buffer[:end]
        self.head_ns = 0
        self.server.chat.state.saw_connection(transport)
        self.streaming = True
        self.server.chat.streamer.stream_raw(transport, response_head, plan, self._stream_ended)

    def _stream_ended(self, completed: bool) -> None:
        self.streaming = False
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        self.server.stream_ended(self)
        if completed:
            self._serve()

    def _hand_over(self, transport: asyncio.Transport) -> None:
        """Give the connection, and what was read of it, to aiohttp's handler for good."""
        self.server.connections.discard(self)
        self.transport = None
        handler = self.server.handover()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self.paused:
            transport.resume_reading()
        data, self.buffer = bytes(self.buffer), bytearray()
        handler.data_received(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.server.lost(self)


class FastSite(web.TCPSite):
    """aiohttp's TCP site, listening with fast connections that hand over to its runner's handlers."""

    def __init__(self, runner: web.AppRunner, fast: FastServer, host: str, port: int, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.fast = fast

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.fast.connection, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog
        )
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]
