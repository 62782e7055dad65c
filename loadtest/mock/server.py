"""The NLX OpenAI Connect mock: an aiohttp server streaming chat.completion.chunk events on a schedule.

    POST {prefix}/{deploymentKey}/{channelKey}/chat/completions   the contract's endpoint
    POST {prefix}/v1/chat/completions                             generic OpenAI route (any model, stateless)
    GET  [{prefix}]/_mock/stats                                   counters and server-side histograms
    POST [{prefix}]/_mock/reset                                   forget everything
    GET  [{prefix}]/_mock/conversations                           the conversation ids seen, in order
    GET  [{prefix}]/_mock/conversations/{id}                      what one conversation sent and got

Timings are scheduled against absolute deadlines from the handler's start, so a slow event loop
shows up as schedule error (recorded) rather than as drift that silently stretches every turn.

With `--fault KIND=RATE` a chat request may get one fault instead of its normal answer (see
`faults.py`); the fault is drawn after the key and the body are checked, so a bad request is still
answered 401 or 400, and counted in the stats under `faults`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import heapq
import hmac
import itertools
import math
import os
import random
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import orjson
from aiohttp import web

from loadtest import nlx
from loadtest.mock.dist import Distribution, parse_count_dist, parse_duration_dist
from loadtest.mock.faults import FAULT_KINDS, HTTP_FAULTS, NO_STREAM_FAULTS, FaultPlan, parse_faults
from loadtest.mock.state import MockState, Turn, conversation_json, record_us
from loadtest.mock.text import reply_pieces

DEFAULT_API_KEY = "nlx-mock-key"
DEFAULT_TTFT = "lognormal:300ms:0.3"
DEFAULT_ITL = "uniform:10ms:40ms"
DEFAULT_CHUNKS = "uniform:5:20"
DEFAULT_FINGERPRINT = "loadtest-mock"
DEFAULT_STALL_S = 120.0
API_KEY_ENV = "NLX_API_KEY"

_ROLES = frozenset({"system", "user", "assistant"})
_UNAUTHORIZED = {
    "error": {
        "message": "Unauthorized - Invalid Bearer Token",
        "type": "invalid_request_error",
        "code": "unauthorized",
    }
}
# Open streams get this long to finish after SIGTERM before they are cut.
_SHUTDOWN_GRACE_S = 1.0
_MAX_BODY = 64 * 1024 * 1024
# Faults in the middle of a stream come after this many content chunks (fewer if the reply is shorter).
_CHUNKS_BEFORE_FAULT = 2
_MID_STREAM_FAULTS = frozenset({"cut", "error_event", "bad_json"})
# Faults that end the stream with an event of their own (see MockHandlers._inject).
_EVENT_FAULTS = _MID_STREAM_FAULTS | {"huge_event"}
# Twice the client's default event cap (1 MiB).
_HUGE_EVENT_CHARS = 2 * 1024 * 1024
# How often a stalled stream looks whether its client is still there.
_STALL_POLL_S = 0.1
_FAULT_ERRORS: dict[int, dict[str, Any]] = {
    400: {"message": "Bad request", "type": "invalid_request_error", "code": "bad_request"},
    401: _UNAUTHORIZED["error"],
    429: {
        "message": "Rate limit exceeded, retry later",
        "type": "rate_limit_error",
        "code": "rate_limit_exceeded",
    },
    500: {"message": "Internal server error", "type": "server_error", "code": "internal_error"},
    503: {
        "message": "Service unavailable, retry later",
        "type": "server_error",
        "code": "service_unavailable",
    },
}

STATE_KEY = web.AppKey("state", MockState)


@dataclass(frozen=True)
class MockConfig:
    host: str = "127.0.0.1"
    port: int = 0
    api_key: str = field(default=DEFAULT_API_KEY, repr=False)
    prefix: str = ""
    ttft: Distribution = field(default_factory=lambda: parse_duration_dist(DEFAULT_TTFT))
    itl: Distribution = field(default_factory=lambda: parse_duration_dist(DEFAULT_ITL))
    chunks: Distribution = field(default_factory=lambda: parse_count_dist(DEFAULT_CHUNKS))
    send_done: bool = True
    seed: int = 0
    fingerprint: str = DEFAULT_FINGERPRINT
    faults: FaultPlan = field(default_factory=FaultPlan)
    stall_s: float = DEFAULT_STALL_S
    precise_timers: bool = False


class _BadRequest(Exception):
    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def _json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def _injected(error: dict[str, Any]) -> dict[str, Any]:
    return {"error": {**error, "message": f"{error['message']} (fault injected by the mock)"}}


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest("request body must be a JSON object")
    return body


def _parse_body(raw: bytes) -> tuple[str | None, list[dict[str, Any]]]:
    """The conversation id (None for a new one) and the messages, or _BadRequest."""
    body = _json_object(raw)
    model = body.get("model")
    if not isinstance(model, str):
        raise _BadRequest("model is required: 'nlx' or 'nlx:{conversationId}'", param="model")
    try:
        conversation_id = nlx.conversation_id_from_model(model)
    except ValueError as exc:
        raise _BadRequest(str(exc), param="model") from None
    return conversation_id, _check_messages_and_stream(body)


def _check_messages_and_stream(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("messages must be a non-empty array", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise _BadRequest(f"messages[{i}].role must be one of system, user, assistant", param="messages")
        if not isinstance(message.get("content"), str):
            raise _BadRequest(f"messages[{i}].content must be a string", param="messages")
    stream = body.get("stream", True)
    if not isinstance(stream, bool):
        raise _BadRequest("stream must be a boolean", param="stream")
    if not stream:
        raise _BadRequest("only stream=true is supported by the mock", param="stream")
    return messages


def _parse_openai_body(raw: bytes) -> tuple[str, list[dict[str, Any]]]:
    body = _json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest("model is required", param="model")
    return model, _check_messages_and_stream(body)


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    if deadline <= loop.time():
        return
    waiter = loop.create_future()
    handle = loop.call_at(deadline, _wake, waiter)
    try:
        await waiter
    finally:
        handle.cancel()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _reset(request: web.Request) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0), before anything is sent."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _abort(request: web.Request) -> None:
    """Abort the connection once what was written has left for the socket."""
    transport = request.transport
    if transport is None:
        return
    for _ in range(100):
        if transport.is_closing() or transport.get_write_buffer_size() == 0:
            break
        await asyncio.sleep(0.01)
    transport.abort()


async def _stall(request: web.Request, seconds: float) -> bool:
    """Send nothing for `seconds`; False as soon as the client has closed the connection."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            return False
        await asyncio.sleep(min(_STALL_POLL_S, deadline - loop.time()))
    return True


class _Ticker:
    """Runs the chunk writes of every stream from one heap of deadlines and one event-loop timer.

    An event-loop timer per chunk cost a TimerHandle and Python-level comparisons in asyncio's heap;
    tuples in `heapq` compare in C, and every chunk due at a wake-up is written in the same callback.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.heap: list[tuple[float, int, _Schedule, int]] = []
        self.seq = itertools.count()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf
        self.firing = False

    def add(self, when: float, schedule: _Schedule, i: int) -> None:
        heapq.heappush(self.heap, (when, next(self.seq), schedule, i))
        if when < self.timer_at and not self.firing:
            self._arm(when)

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = when
        self.timer = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self.timer, self.timer_at = None, math.inf
        heap = self.heap
        now = self.loop.time()
        self.firing = True
        try:
            while heap and heap[0][0] <= now:
                _, _, schedule, i = heapq.heappop(heap)
                schedule.send(i)
        finally:
            self.firing = False
            if heap:
                self._arm(heap[0][0])


class _Schedule:
    """The content chunks of one turn, each written by the ticker at its deadline."""

    def __init__(
        self,
        ticker: _Ticker,
        state: MockState,
        writer: asyncio.WriteTransport,
        frames: list[bytes],
        pieces: list[str],
        deadlines: list[float],
        slot: tuple[list[Turn], int],
        started_ns: int,
    ) -> None:
        self.ticker = ticker
        self.state = state
        self.writer = writer
        self.frames = frames
        self.pieces = pieces
        self.deadlines = deadlines
        self.slot = slot
        self.started_ns = started_ns
        self.finished: asyncio.Future[bool] = ticker.loop.create_future()

    def send(self, i: int) -> None:
        if self.finished.done():
            return  # the handler gave up (cancelled): what is left in the heap goes quietly
        if self.writer.is_closing():
            self.finished.set_result(False)
            return
        self.writer.write(self.frames[i])
        state = self.state
        late_s = self.ticker.loop.time() - self.deadlines[i]
        state.chunk_written(self.pieces[i], late_s, self.started_ns if i == 0 else None)
        if i == len(self.frames) - 1:
            state.delivered(*self.slot)
            self.finished.set_result(True)
        else:
            self.ticker.add(self.deadlines[i + 1], self, i + 1)


class MockHandlers:
    """The request handlers of one mock app, sharing its config, state and random generator."""

    def __init__(self, config: MockConfig, state: MockState) -> None:
        self.config = config
        self.state = state
        self.rng = random.Random(config.seed)
        # A generator of its own, so faults leave the timings of a seeded run unchanged.
        self.fault_rng = random.Random(f"{config.seed}:faults")
        self._bearer = f"Bearer {config.api_key}".encode()
        self._ticker: _Ticker | None = None

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return hmac.compare_digest(header.encode("utf-8", "surrogateescape"), self._bearer)

    def _error(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
        self.state.status[status] += 1
        return _json_response(body, status, headers)

    def _draw_fault(self) -> str | None:
        fault = self.config.faults.draw(self.fault_rng)
        if fault is not None:
            self.state.faults[fault] += 1
        return fault

    def _answer_fault(self, request: web.Request, fault: str) -> web.Response:
        """The answer of a fault that replaces the whole stream."""
        if fault in HTTP_FAULTS:
            status = HTTP_FAULTS[fault]
            headers = {"Retry-After": "1"} if status == 429 else None
            return self._error(status, _injected(_FAULT_ERRORS[status]), headers)
        if fault == "reset":
            _reset(request)
            return web.Response()  # never sent: aiohttp finds the transport closed
        self.state.status[200] += 1
        if fault == "content_type":
            html = "<!doctype html><html><body><h1>Gateway maintenance</h1></body></html>"
            return web.Response(text=html, content_type="text/html")
        return _json_response(_injected(_FAULT_ERRORS[500]))  # error_body

    def _bad_request(self, exc: _BadRequest) -> web.Response:
        error = {"message": exc.message, "type": "invalid_request_error", "param": exc.param}
        return self._error(400, {"error": {**error, "code": "bad_request"}})

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        started_ns = time.perf_counter_ns()
        self.state.requests += 1
        self.state.saw_connection(request.transport)
        if not self._authorized(request):
            return self._error(401, _UNAUTHORIZED)
        deployment_key = request.match_info["deployment"]
        channel_key = request.match_info["channel"]
        try:
            if not nlx.has_language_suffix(channel_key):
                raise _BadRequest(
                    f"channel key {channel_key!r} must end with a language suffix such as -en-US",
                    param="channelKey",
                )
            conversation_id, messages = _parse_body(await request.read())
        except _BadRequest as exc:
            return self._bad_request(exc)

        fault = self._draw_fault()
        if fault is not None and fault in NO_STREAM_FAULTS:
            return self._answer_fault(request, fault)
        if conversation_id is None:
            conversation_id = nlx.new_conversation_id()
        turns = self.state.begin_turn(conversation_id, messages)
        return await self._stream(
            request, started_ns, conversation_id, turns, messages, deployment_key, fault
        )

    async def openai_chat_completions(self, request: web.Request) -> web.StreamResponse:
        """The generic OpenAI route: any model name, no server-side state, so each request is new."""
        started_ns = time.perf_counter_ns()
        self.state.requests += 1
        self.state.saw_connection(request.transport)
        if not self._authorized(request):
            return self._error(401, _UNAUTHORIZED)
        try:
            model, messages = _parse_openai_body(await request.read())
        except _BadRequest as exc:
            return self._bad_request(exc)
        fault = self._draw_fault()
        if fault is not None and fault in NO_STREAM_FAULTS:
            return self._answer_fault(request, fault)
        turns = self.state.begin_stateless_turn(messages)
        return await self._stream(
            request, started_ns, nlx.new_conversation_id(), turns, messages, model, fault
        )

    async def _stream(
        self,
        request: web.Request,
        started_ns: int,
        conversation_id: str,
        turns: list[Turn],
        messages: list[dict[str, Any]],
        model: str,
        fault: str | None = None,
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        start = loop.time() - (time.perf_counter_ns() - started_ns) / 1e9
        state = self.state
        index = len(turns)
        pieces = reply_pieces(self.config.seed, conversation_id, index, self.config.chunks)
        turns.append(Turn(orjson.dumps(messages), "".join(pieces), fault=fault))
        slot = (turns, index)  # where state.delivered() marks the turn
        deadlines = [start + self.config.ttft.sample(self.rng)]
        for _ in pieces[1:]:
            deadlines.append(deadlines[-1] + self.config.itl.sample(self.rng))
        if fault in _MID_STREAM_FAULTS:
            # The fault takes the place of the next chunk, on that chunk's schedule.
            pieces = pieces[:_CHUNKS_BEFORE_FAULT]
            if len(deadlines) == len(pieces):
                deadlines.append(deadlines[-1] + self.config.itl.sample(self.rng))
            deadlines = deadlines[: len(pieces) + 1]
        elif fault == "huge_event":
            pieces = []

        base = {
            "id": f"chatcmpl-{os.urandom(16).hex()}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": self.config.fingerprint,
        }

        # The bytes orjson.dumps({**base, "choices": [choice]}) gives, with only the delta encoded per event.
        head = b"data: " + orjson.dumps(base)[:-1] + b',"choices":[{"index":0,"delta":'

        def event(delta: dict[str, str], finish_reason: str | None) -> bytes:
            tail = b',"logprobs":null,"finish_reason":' + orjson.dumps(finish_reason) + b"}]}\n\n"
            return head + orjson.dumps(delta) + tail

        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Conversation-Id": conversation_id,
            },
        )
        if fault == "idle_close":
            response.force_close()  # sends Connection: close, and closes once the response is written
        state.status[200] += 1
        state.turns += 1
        try:
            await response.prepare(request)
            await response.write(event({"role": "assistant", "content": ""}, None))
            transport = request.transport
            # The fast path frames chunks itself: only where aiohttp chose the chunked encoding
            # (HTTP/1.1; an HTTP/1.0 client gets the body to the close, unframed).
            chunked = response.headers.get("Transfer-Encoding") == "chunked"
            if fault is None and transport is not None and chunked:
                ended = await self._write_on_schedule(transport, pieces, deadlines, event, slot, started_ns)
            else:
                ended = await self._write_with_fault(
                    request, response, pieces, deadlines, event, slot, started_ns, fault
                )
            if not ended:
                return response
            await response.write(event({}, "stop"))
            if self.config.send_done:
                await response.write(b"data: [DONE]\n\n")
            record_us(state.turn_us, (time.perf_counter_ns() - started_ns) // 1000)
            state.turns_completed += 1
            await response.write_eof()
        except ConnectionResetError:
            pass  # The client went away; what was written before is already counted.
        return response

    async def _write_with_fault(
        self,
        request: web.Request,
        response: web.StreamResponse,
        pieces: list[str],
        deadlines: list[float],
        event: Callable[[dict[str, str], str | None], bytes],
        slot: tuple[list[Turn], int],
        started_ns: int,
        fault: str | None,
    ) -> bool:
        """Write the content chunks of a turn with a fault in it; False when the response ends here."""
        loop = asyncio.get_running_loop()
        state = self.state
        # Shifted by a stall, so the chunks after it keep their gaps.
        delay = 0.0
        for i, (piece, deadline) in enumerate(zip(pieces, deadlines, strict=False)):
            await _sleep_until(loop, deadline + delay)
            await response.write(event({"content": piece}, None))
            written = loop.time()
            state.chunk_written(piece, written - deadline - delay, started_ns if i == 0 else None)
            if i == len(pieces) - 1 and fault not in _MID_STREAM_FAULTS:
                state.delivered(*slot)
            if i == 0 and fault == "stall":
                if not await _stall(request, self.config.stall_s):
                    return False  # the client gave up waiting
                delay = loop.time() - written
        if fault is not None and fault in _EVENT_FAULTS:
            await _sleep_until(loop, deadlines[len(pieces)] + delay)
            await self._inject(request, response, fault, event)
            return False
        return True

    async def _write_on_schedule(
        self,
        transport: asyncio.Transport,
        pieces: list[str],
        deadlines: list[float],
        event: Callable[[dict[str, str], str | None], bytes],
        slot: tuple[list[Turn], int],
        started_ns: int,
    ) -> bool:
        """Write the content chunks of a turn without faults; False if the client went away first.

        Each chunk goes out from a timer callback straight to the transport, framed for the chunked
        encoding aiohttp set up: no task wake-up and no writer call per chunk. That halves the mock's
        CPU per chunk, which keeps its schedule error small at the loads the benchmarks measure.
        """
        if not pieces:
            return True
        loop = asyncio.get_running_loop()
        frames = []
        for piece in pieces:
            data = event({"content": piece}, None)
            frames.append(b"%x\r\n%s\r\n" % (len(data), data))
        if self._ticker is None:
            self._ticker = _Ticker(loop)
        schedule = _Schedule(self._ticker, self.state, transport, frames, pieces, deadlines, slot, started_ns)
        self._ticker.add(deadlines[0], schedule, 0)
        try:
            return await schedule.finished
        finally:
            # A handler cancelled mid-stream: its chunks still in the heap are dropped when they fall due.
            schedule.finished.cancel()

    async def _inject(
        self,
        request: web.Request,
        response: web.StreamResponse,
        fault: str,
        event: Callable[[dict[str, str], str | None], bytes],
    ) -> None:
        """Write a mid-stream fault in place of the next chunk, and end the response."""
        if fault == "cut":
            half = event({"content": "this event is never finished"}, None)
            await response.write(half[: len(half) // 2])
            await _abort(request)
            return
        if fault == "huge_event":
            filler = "lorem ipsum " * (_HUGE_EVENT_CHARS // 12 + 1)
            await response.write(event({"content": filler[:_HUGE_EVENT_CHARS]}, None))
        elif fault == "error_event":
            error = {"message": "The model failed mid-stream", "type": "server_error", "code": "stream_error"}
            await response.write(b"data: " + orjson.dumps(_injected(error)) + b"\n\n")
        else:  # bad_json: a chunk cut short, as a broken proxy might pass it on
            await response.write(event({"content": "truncated"}, None)[:40] + b"\n\n")
        await response.write_eof()

    async def stats(self, request: web.Request) -> web.Response:
        return _json_response(self.state.snapshot())

    async def reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        return _json_response({"reset": True})

    async def conversation_ids(self, request: web.Request) -> web.Response:
        return _json_response({"ids": list(self.state.conversations)})

    async def conversation(self, request: web.Request) -> web.Response:
        conversation_id = request.match_info["conversation_id"]
        turns = self.state.conversations.get(conversation_id)
        if turns is None:
            return _json_response({"error": {"message": "no such conversation", "code": "not_found"}}, 404)
        return _json_response(conversation_json(conversation_id, turns))


def create_app(config: MockConfig, state: MockState | None = None) -> web.Application:
    """The aiohttp application; `app[STATE_KEY]` is its MockState."""
    state = state if state is not None else MockState()
    state.fault_kinds = tuple(config.faults.rates)
    handlers = MockHandlers(config, state)
    app = web.Application(client_max_size=_MAX_BODY)
    app[STATE_KEY] = state
    prefix = config.prefix
    app.router.add_post(f"{prefix}/v1/chat/completions", handlers.openai_chat_completions)
    app.router.add_post(f"{prefix}/{{deployment}}/{{channel}}/chat/completions", handlers.chat_completions)
    for root in dict.fromkeys([prefix, ""]):
        app.router.add_get(f"{root}/_mock/stats", handlers.stats)
        app.router.add_post(f"{root}/_mock/reset", handlers.reset)
        app.router.add_get(f"{root}/_mock/conversations", handlers.conversation_ids)
        app.router.add_get(f"{root}/_mock/conversations/{{conversation_id:.+}}", handlers.conversation)
    return app


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


READY_PREFIX = "loadtest-mock listening on "


async def serve(
    config: MockConfig,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Listen, announce the URL, and run until `stop` is set or (in the main thread) SIGTERM/SIGINT.

    The URL goes to `ready`, or by default to stdout as the single line `READY_PREFIX + url`.
    """
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT) if threading.current_thread() is threading.main_thread() else ()
    # Installed before the ready line, so a parent may signal as soon as it has read it.
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=_SHUTDOWN_GRACE_S)
    try:
        await runner.setup()
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        url = f"http://{_url_host(config.host)}:{runner.addresses[0][1]}{config.prefix}"
        if ready is None:
            print(READY_PREFIX + url, flush=True)
        else:
            ready(url)
        await stop.wait()
    finally:
        await runner.cleanup()
        for signum in signals:
            loop.remove_signal_handler(signum)


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="loadtest mock",
        description="Serve a mock NLX OpenAI Connect endpoint that streams replies on a schedule.",
        epilog="DIST: const:100ms (or 100ms, 0.1s, 100 = ms), uniform:A:B, normal:MEAN:SD, "
        "lognormal:MEDIAN:SIGMA, exp:MEAN. Counts take the same forms without units. "
        f"FAULT KINDS: {', '.join(FAULT_KINDS)} (disconnect = cut); "
        "at most one per request, drawn from --seed.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 lets the OS pick (default: 0)")
    parser.add_argument(
        "--api-key", help=f"the accepted bearer token (default: ${API_KEY_ENV}, else {DEFAULT_API_KEY})"
    )
    parser.add_argument("--prefix", default="", help="path prefix such as /v1 (default: none)")
    parser.add_argument(
        "--ttft",
        default=DEFAULT_TTFT,
        metavar="DIST",
        help="time to first content chunk (default: %(default)s)",
    )
    parser.add_argument(
        "--itl",
        default=DEFAULT_ITL,
        metavar="DIST",
        help="time between content chunks (default: %(default)s)",
    )
    parser.add_argument(
        "--chunks",
        default=DEFAULT_CHUNKS,
        metavar="DIST",
        help="content chunks per reply (default: %(default)s)",
    )
    parser.add_argument("--no-done", action="store_true", help="do not send the final data: [DONE]")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--fingerprint", default=DEFAULT_FINGERPRINT, help="system_fingerprint value")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help="inject a fault into this share of chat requests, e.g. http_429=10%% or stall=0.01 (repeatable)",
    )
    parser.add_argument(
        "--faults",
        action="append",
        default=[],
        metavar="LIST",
        help='several faults at once, e.g. "http_500=5%%,stall=1%%"',
    )
    parser.add_argument(
        "--stall-seconds",
        type=float,
        default=DEFAULT_STALL_S,
        metavar="S",
        help="how long the stall fault sends nothing (default: %(default)g)",
    )
    parser.add_argument(
        "--precise-timers",
        action="store_true",
        help="send each chunk within microseconds of its deadline rather than up to a millisecond late, "
        "by polling through the last millisecond before it; keeps a CPU busy while streams are open "
        "(for benchmarks, with the mock on a CPU of its own)",
    )
    return parser


def _normalize_prefix(prefix: str) -> str:
    prefix = prefix.strip().strip("/")
    if any(ch in prefix for ch in "{}?#"):
        raise ValueError(f"--prefix {prefix!r} must be a plain path such as /v1")
    return f"/{prefix}" if prefix else ""


def _option_dist(option: str, text: str, parse: Callable[[str], Distribution]) -> Distribution:
    try:
        return parse(text)
    except ValueError as exc:
        raise ValueError(f"{option}: {exc}") from None


def parse_config(argv: Sequence[str], environ: Mapping[str, str]) -> MockConfig:
    """Build the config from command-line arguments; ValueError carries a one-line message."""
    args = build_parser().parse_args(list(argv))
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port} is not a port number (0-65535)")
    api_key = args.api_key if args.api_key is not None else environ.get(API_KEY_ENV) or DEFAULT_API_KEY
    if not api_key:
        raise ValueError("--api-key must not be empty")
    if not (math.isfinite(args.stall_seconds) and args.stall_seconds > 0):
        raise ValueError(f"--stall-seconds {args.stall_seconds:g} must be a positive number of seconds")
    try:
        faults = parse_faults([*args.fault, *args.faults])
    except ValueError as exc:
        raise ValueError(f"--fault: {exc}") from None
    return MockConfig(
        host=args.host,
        port=args.port,
        api_key=api_key,
        prefix=_normalize_prefix(args.prefix),
        ttft=_option_dist("--ttft", args.ttft, parse_duration_dist),
        itl=_option_dist("--itl", args.itl, parse_duration_dist),
        chunks=_option_dist("--chunks", args.chunks, parse_count_dist),
        send_done=not args.no_done,
        seed=args.seed,
        fingerprint=args.fingerprint,
        faults=faults,
        stall_s=args.stall_seconds,
        precise_timers=args.precise_timers,
    )


class _PreciseSelector(selectors.DefaultSelector):
    """Waits in epoll for the whole milliseconds before the next deadline, then polls.

    epoll waits in whole milliseconds and the selectors round a timeout up, so a chunk due in 2.3 ms
    went out at 3 ms or later; waiting 2 ms and polling through the rest sends it on time.
    """

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout > 0:
            whole_ms = math.floor(timeout * 1e3)
            # Half a millisecond under, so the selector's own rounding up lands on the whole one.
            timeout = (whole_ms - 0.5) * 1e-3 if whole_ms else 0
        return super().select(timeout)


def _precise_loop() -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop(_PreciseSelector())


def _run(main: Coroutine[Any, Any, None], *, precise_timers: bool = False) -> None:
    """Run the mock's event loop, without the garbage collector.

    The collector paused the mock for milliseconds, with 10,000 connections open for hundreds: each
    collection looks through the live objects of every stream and connection. The mock makes no
    reference cycles when it serves a request (a test keeps it so), so reference counting frees
    what it makes; the modules' objects are frozen, and the collector stays off. What is left over
    is asyncio's own: a closed connection's transport and socket hold each other, about a kilobyte
    that stays until the mock exits.

    (Not uvloop, though its C loop costs less CPU: its clock and timers have millisecond resolution,
    so chunks would go out up to a millisecond early and the schedule error could not be measured.)
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    with asyncio.Runner(loop_factory=_precise_loop if precise_timers else None) as runner:
        runner.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the mock until SIGTERM/SIGINT; 0 on a clean stop, 2 on bad options, 1 if it cannot listen."""
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv, os.environ)
    except ValueError as exc:
        print(f"loadtest mock: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    try:
        _run(serve(config), precise_timers=config.precise_timers)
    except OSError as exc:
        print(f"loadtest mock: error: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0
