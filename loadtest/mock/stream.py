"""The stream of one turn: a role chunk, reasoning chunks (`--reasoning`) and content chunks on their
deadlines, the finish, the usage chunk (when the request asks) and [DONE].

Timings are scheduled against absolute deadlines from the request's arrival, so a slow event loop
shows up as schedule error (recorded) rather than as drift that silently stretches every turn. A
fault inside the stream (`faults.Stage.MID_STREAM`, `EVENT`, `STREAM`) is written here too.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from loadtest.mock import connection
from loadtest.mock.answers import injected
from loadtest.mock.config import MockConfig
from loadtest.mock.faults import EVENT_FAULTS, MID_STREAM_FAULTS
from loadtest.mock.state import MockState, Turn
from loadtest.mock.text import reply_pieces
from loadtest.mock.ticker import Schedule, Ticker, sleep_until
from loadtest.mock.usage import Usage, count_usage

# Faults in the middle of a stream come after this many content chunks (fewer if the reply is shorter),
# after any reasoning.
_CHUNKS_BEFORE_FAULT = 2
# Twice the client's default event cap (1 MiB).
_HUGE_EVENT_CHARS = 2 * 1024 * 1024

# One event's bytes, from its delta and finish_reason.
Encoder = Callable[[dict[str, str], str | None], bytes]


def _encoder(base: dict[str, Any], *, usage_null: bool = False) -> Encoder:
    """The bytes orjson.dumps({**base, "choices": [choice]}) gives, with only the delta encoded per event;
    with `"usage": null` after the choices when the request asked for usage, as OpenAI sends them."""
    head = b"data: " + orjson.dumps(base)[:-1] + b',"choices":[{"index":0,"delta":'
    end = b'}],"usage":null}\n\n' if usage_null else b"}]}\n\n"

    def event(delta: dict[str, str], finish_reason: str | None) -> bytes:
        return (
            head
            + orjson.dumps(delta)
            + b',"logprobs":null,"finish_reason":'
            + orjson.dumps(finish_reason)
            + end
        )

    return event


def _usage_event(base: dict[str, Any], usage: Usage) -> bytes:
    """The last chunk before [DONE] when the request asked for usage: no choices, the counts."""
    return b"data: " + orjson.dumps({**base, "choices": [], "usage": usage.json()}) + b"\n\n"


def _delta(pieces: list[str], reasoning: int, i: int) -> dict[str, str]:
    """The delta of piece `i`: the first `reasoning` pieces are reasoning, the others the answer."""
    return {"reasoning_content" if i < reasoning else "content": pieces[i]}


class Streamer:
    """Streams turns for one mock app: its config, its state, the generator of its timings, its ticker."""

    def __init__(self, config: MockConfig, state: MockState) -> None:
        self.config = config
        self.state = state
        self.rng = random.Random(config.seed)
        self._ticker: Ticker | None = None
        seconds = config.faults.keepalive_timeout_s
        self._idle = connection.IdleCloser(seconds, self._closed_idle) if seconds is not None else None
        # --max-concurrent: a slot per stream served at once; asyncio's semaphore wakes waiters in order.
        limit = config.max_concurrent
        self._slots = asyncio.Semaphore(limit) if limit is not None else None
        self._waiting = 0

    def _closed_idle(self) -> None:
        self.state.faults["keepalive_timeout"] += 1

    def _thoughts(self, conversation_id: str, index: int) -> list[str]:
        """The reasoning pieces of turn `index` (none without --reasoning)."""
        if self.config.reasoning is None:
            return []
        # Drawn under a key of their own, so the answer and its pieces are the same as without them.
        return reply_pieces(self.config.seed, f"{conversation_id}:reasoning", index, self.config.reasoning)

    def _deadlines(
        self, start: float, pieces: list[str], reasoning: int, fault: str | None
    ) -> tuple[list[str], list[float]]:
        """The pieces to send (the first `reasoning` of them reasoning) and their deadlines: the first at
        --ttft, the others --itl apart. A fault's event takes the place of the next chunk, on that
        chunk's schedule (its deadline is the one after the last piece's)."""
        config = self.config
        deadlines = [start + config.ttft.sample(self.rng)]
        for _ in pieces[1:]:
            deadlines.append(deadlines[-1] + config.itl.sample(self.rng))
        if fault in MID_STREAM_FAULTS:
            pieces = pieces[: reasoning + _CHUNKS_BEFORE_FAULT]
        elif fault == "huge_event":
            pieces = pieces[:reasoning]
        if fault in EVENT_FAULTS:
            if len(deadlines) == len(pieces):
                deadlines.append(deadlines[-1] + config.itl.sample(self.rng))
            deadlines = deadlines[: len(pieces) + 1]
        return pieces, deadlines

    async def stream(
        self,
        request: web.Request,
        started_ns: int,
        conversation_id: str,
        turns: list[Turn],
        messages: list[dict[str, Any]],
        model: str,
        fault: str | None = None,
        *,
        include_usage: bool = False,
    ) -> web.StreamResponse:
        """Stream turn number len(turns) of the conversation, recorded in `turns` as it goes, with the
        usage chunk if `include_usage`; with `--max-concurrent`, once a slot is free."""
        loop = asyncio.get_running_loop()
        if self._slots is None:
            start = loop.time() - (time.perf_counter_ns() - started_ns) / 1e9
            return await self._serve(
                request, start, started_ns, conversation_id, turns, messages, model, fault, include_usage
            )
        if self._slots.locked():
            self._waiting += 1
            self.state.queued += 1
            self.state.queue_peak = max(self.state.queue_peak, self._waiting)
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        try:
            # Served from now: the wait comes before its TTFT and delays, as at a saturated server.
            return await self._serve(
                request,
                loop.time(),
                started_ns,
                conversation_id,
                turns,
                messages,
                model,
                fault,
                include_usage,
            )
        finally:
            self._slots.release()

    async def _serve(
        self,
        request: web.Request,
        start: float,
        started_ns: int,
        conversation_id: str,
        turns: list[Turn],
        messages: list[dict[str, Any]],
        model: str,
        fault: str | None,
        include_usage: bool,
    ) -> web.StreamResponse:
        """Stream the turn with its deadlines counted from `start` (the event loop's clock)."""
        state = self.state
        index = len(turns)
        config = self.config
        if config.bot is not None:
            pieces = config.bot.pieces(config.seed, conversation_id, index, config.chunks, messages)
        else:
            pieces = reply_pieces(config.seed, conversation_id, index, config.chunks)
        reply = "".join(pieces)
        turns.append(Turn(orjson.dumps(messages), reply, fault=fault))
        slot = (turns, index)  # where state.delivered() marks the turn
        thoughts = self._thoughts(conversation_id, index)
        reasoning = len(thoughts)
        pieces, deadlines = self._deadlines(start, [*thoughts, *pieces], reasoning, fault)
        base = {
            "id": f"chatcmpl-{os.urandom(16).hex()}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": self.config.fingerprint,
        }
        event = _encoder(base, usage_null=include_usage)
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
        if self._idle is not None:
            self._idle.busy(request.transport)
        try:
            await response.prepare(request)
            await response.write(event({"role": "assistant", "content": ""}, None))
            transport = request.transport
            # The fast path frames chunks itself: only where aiohttp chose the chunked encoding
            # (HTTP/1.1; an HTTP/1.0 client gets the body to the close, unframed).
            chunked = response.headers.get("Transfer-Encoding") == "chunked"
            if fault is None and transport is not None and chunked:
                ended = await self._write_on_schedule(
                    transport, pieces, reasoning, deadlines, event, slot, started_ns
                )
            else:
                ended = await self._write_with_fault(
                    request, response, pieces, reasoning, deadlines, event, slot, started_ns, fault
                )
            if not ended:
                return response
            await response.write(event({}, "stop"))
            if include_usage:
                usage = count_usage(messages, reply, "".join(thoughts) if thoughts else None)
                await response.write(_usage_event(base, usage))
                state.usage_sent(usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens or 0)
            if self.config.send_done:
                await response.write(b"data: [DONE]\n\n")
            state.turn_us.record_us((time.perf_counter_ns() - started_ns) // 1000)
            state.turns_completed += 1
            await response.write_eof()
        except ConnectionResetError:
            pass  # The client went away; what was written before is already counted.
        finally:
            if self._idle is not None:
                self._idle.idle(request.transport)
        return response

    async def _write_on_schedule(
        self,
        transport: asyncio.Transport,
        pieces: list[str],
        reasoning: int,
        deadlines: list[float],
        event: Encoder,
        slot: tuple[list[Turn], int],
        started_ns: int,
    ) -> bool:
        """Write the reasoning and content chunks of a turn without faults; False if the client went
        away first.

        Each chunk goes out from a timer callback straight to the transport, framed for the chunked
        encoding aiohttp set up: no task wake-up and no writer call per chunk. That halves the mock's
        CPU per chunk, which keeps its schedule error small at the loads the benchmarks measure.
        """
        if not pieces:
            return True
        frames = []
        for i in range(len(pieces)):
            data = event(_delta(pieces, reasoning, i), None)
            frames.append(b"%x\r\n%s\r\n" % (len(data), data))
        if self._ticker is None:
            self._ticker = Ticker(asyncio.get_running_loop())
        schedule = Schedule(
            self._ticker, self.state, transport, frames, pieces, reasoning, deadlines, slot, started_ns
        )
        schedule.start()
        try:
            return await schedule.finished
        finally:
            # A handler cancelled mid-stream: its chunks still in the heap are dropped when they fall due.
            schedule.finished.cancel()

    async def _write_with_fault(
        self,
        request: web.Request,
        response: web.StreamResponse,
        pieces: list[str],
        reasoning: int,
        deadlines: list[float],
        event: Encoder,
        slot: tuple[list[Turn], int],
        started_ns: int,
        fault: str | None,
    ) -> bool:
        """Write the reasoning and content chunks of a turn with a fault in it; False when the response
        ends here."""
        loop = asyncio.get_running_loop()
        state = self.state
        # Shifted by a stall, so the chunks after it keep their gaps.
        delay = 0.0
        for i, (piece, deadline) in enumerate(zip(pieces, deadlines, strict=False)):
            await sleep_until(loop, deadline + delay)
            await response.write(event(_delta(pieces, reasoning, i), None))
            written = loop.time()
            if i < reasoning:
                state.reasoning_written(piece, written - deadline - delay)
            else:
                state.chunk_written(piece, written - deadline - delay, started_ns if i == reasoning else None)
            # A fault's event ends the stream before the reply's end (or in place of all of it).
            if i == len(pieces) - 1 and fault not in EVENT_FAULTS:
                state.delivered(*slot)
            if i == reasoning and fault == "stall":
                if not await connection.stall(request, self.config.stall_s):
                    return False  # the client gave up waiting
                delay = loop.time() - written
        if fault is not None and fault in EVENT_FAULTS:
            await sleep_until(loop, deadlines[len(pieces)] + delay)
            await _inject(request, response, fault, event)
            return False
        return True


async def _inject(request: web.Request, response: web.StreamResponse, fault: str, event: Encoder) -> None:
    """Write a fault's own event in place of the next chunk, and end the response."""
    if fault == "truncate":
        half = event({"content": "this event is never finished"}, None)
        await response.write(half[: len(half) // 2])
        await connection.abort(request)
        return
    if fault == "huge_event":
        filler = "lorem ipsum " * (_HUGE_EVENT_CHARS // 12 + 1)
        await response.write(event({"content": filler[:_HUGE_EVENT_CHARS]}, None))
    elif fault == "error_event":
        error = {"message": "The model failed mid-stream", "type": "server_error", "code": "stream_error"}
        await response.write(b"data: " + orjson.dumps(injected(error)) + b"\n\n")
    else:  # bad_json: a chunk cut short, as a broken proxy might pass it on
        await response.write(event({"content": "truncated"}, None)[:40] + b"\n\n")
    await response.write_eof()
