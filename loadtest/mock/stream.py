"""The stream of one turn: a role chunk, reasoning chunks (`--reasoning`) and content chunks on their
deadlines, the finish, the usage chunk (when the request asks) and [DONE].

Timings are scheduled against absolute deadlines from the request's arrival, so a slow event loop
shows up as schedule error (recorded) rather than as drift that silently stretches every turn. A
fault inside the stream (`faults.Stage.MID_STREAM`, `EVENT`, `STREAM`) is written here too.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable
from typing import Any, NamedTuple

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

# The delta of the first chunk of every stream.
_ROLE = {"role": "assistant", "content": ""}


class Encoder:
    """The bytes orjson.dumps({**base, "choices": [choice]}) gives, with only the delta encoded per event;
    with `"usage": null` after the choices when the request asked for usage, as OpenAI sends them."""

    __slots__ = ("head", "end", "open_tail")

    def __init__(self, base: dict[str, Any], *, usage_null: bool = False) -> None:
        self.head = b"data: " + orjson.dumps(base)[:-1] + b',"choices":[{"index":0,"delta":'
        self.end = b'}],"usage":null}\n\n' if usage_null else b"}]}\n\n"
        # What follows the delta of every chunk but the finish.
        self.open_tail = b',"logprobs":null,"finish_reason":null' + self.end

    def __call__(self, delta: dict[str, str], finish_reason: str | None) -> bytes:
        """One event's bytes, from its delta and finish_reason."""
        return (
            self.head
            + orjson.dumps(delta)
            + b',"logprobs":null,"finish_reason":'
            + orjson.dumps(finish_reason)
            + self.end
        )

    def frames(self, pieces: list[str], reasoning: int) -> list[bytes]:
        """The events of `pieces` (the first `reasoning` of them reasoning), each framed as a chunk of
        the chunked encoding: one formatting per chunk, no dict."""
        head, tail = self.head, self.open_tail
        size = len(head) + len(tail) + 1  # and the delta's closing brace
        frames = []
        for i, piece in enumerate(pieces):
            key = _REASONING_KEY if i < reasoning else _CONTENT_KEY
            text = orjson.dumps(piece)
            frames.append(b"%x\r\n%s%s%s}%s\r\n" % (size + len(key) + len(text), head, key, text, tail))
        return frames


_CONTENT_KEY = b'{"content":'
_REASONING_KEY = b'{"reasoning_content":'


def _usage_event(base: dict[str, Any], usage: Usage) -> bytes:
    """The last chunk before [DONE] when the request asked for usage: no choices, the counts."""
    return b"data: " + orjson.dumps({**base, "choices": [], "usage": usage.json()}) + b"\n\n"


def _delta(pieces: list[str], reasoning: int, i: int) -> dict[str, str]:
    """The delta of piece `i`: the first `reasoning` pieces are reasoning, the others the answer."""
    return {"reasoning_content" if i < reasoning else "content": pieces[i]}


class TurnPlan(NamedTuple):
    """What one turn sends and when: the pieces (the first `reasoning` of them reasoning, cut short by
    a fault), their deadlines on the event loop's clock, and how its events are encoded."""

    conversation_id: str
    pieces: list[str]
    reasoning: int
    deadlines: list[float]
    event: Encoder
    base: dict[str, Any]  # the fields every chunk of the stream has
    messages: list[dict[str, Any]]
    reply: str
    thoughts: list[str]
    slot: tuple[list[Turn], int]  # where state.delivered() marks the turn
    started_ns: int  # when the request came in (perf_counter_ns)
    include_usage: bool
    fault: str | None


class Streamer:
    """Streams turns for one mock app: its config, its state, the generator of its timings, its ticker."""

    def __init__(self, config: MockConfig, state: MockState) -> None:
        self.config = config
        self.state = state
        self.rng = random.Random(config.seed)
        # The chunks' ids: unique, not secret, so drawn here rather than with a system call each.
        self._ids = random.Random()
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
        first = start + config.ttft.sample(self.rng)
        if config.itl.kind == "const":
            # The same sums as the loop's, without a call per chunk; a constant draws nothing from rng.
            deadlines = list(
                itertools.accumulate(itertools.repeat(config.itl.a, len(pieces) - 1), initial=first)
            )
        else:
            deadlines = [first]
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

    def plan(
        self,
        start: float,
        started_ns: int,
        conversation_id: str,
        turns: list[Turn],
        messages: list[dict[str, Any]],
        model: str,
        fault: str | None = None,
        *,
        include_usage: bool = False,
    ) -> TurnPlan:
        """What turn number len(turns) sends and when, its deadlines counted from `start` (the event
        loop's clock); recorded in `turns`, and counted as a turn answered 200."""
        state = self.state
        index = len(turns)
        config = self.config
        if config.bot is not None:
            pieces = config.bot.pieces(config.seed, conversation_id, index, config.chunks, messages)
        else:
            pieces = reply_pieces(config.seed, conversation_id, index, config.chunks)
        reply = "".join(pieces)
        turns.append(Turn(orjson.dumps(messages), reply, fault=fault))
        thoughts = self._thoughts(conversation_id, index)
        reasoning = len(thoughts)
        pieces, deadlines = self._deadlines(start, [*thoughts, *pieces], reasoning, fault)
        base = {
            "id": f"chatcmpl-{self._ids.getrandbits(128):032x}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": config.fingerprint,
        }
        state.status[200] += 1
        state.turns += 1
        return TurnPlan(
            conversation_id,
            pieces,
            reasoning,
            deadlines,
            Encoder(base, usage_null=include_usage),
            base,
            messages,
            reply,
            thoughts,
            (turns, index),
            started_ns,
            include_usage,
            fault,
        )

    def ending(self, plan: TurnPlan) -> tuple[bytes, Usage | None]:
        """The events after the last chunk: the finish, the usage chunk when asked, [DONE]; the usage."""
        events = [plan.event({}, "stop")]
        usage = None
        if plan.include_usage:
            thoughts = "".join(plan.thoughts) if plan.thoughts else None
            usage = count_usage(plan.messages, plan.reply, thoughts)
            events.append(_usage_event(plan.base, usage))
        if self.config.send_done:
            events.append(b"data: [DONE]\n\n")
        return b"".join(events), usage

    def finished(self, plan: TurnPlan, usage: Usage | None) -> None:
        """Count a turn whose ending was written."""
        state = self.state
        if usage is not None:
            state.usage_sent(usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens or 0)
        state.turn_us.record_us((time.perf_counter_ns() - plan.started_ns) // 1000)
        state.turns_completed += 1

    def schedule(
        self, transport: asyncio.Transport, plan: TurnPlan, frames: list[bytes], done: Callable[[bool], None]
    ) -> Schedule:
        """The ticker's schedule of `frames`, the plan's chunks as written (not started)."""
        if self._ticker is None:
            self._ticker = Ticker(asyncio.get_running_loop())
        return Schedule(
            self._ticker,
            self.state,
            transport,
            frames,
            plan.pieces,
            plan.reasoning,
            plan.deadlines,
            plan.slot,
            plan.started_ns,
            done,
        )

    def stream_raw(
        self, transport: asyncio.Transport, head: bytes, plan: TurnPlan, done: Callable[[bool], None]
    ) -> None:
        """Stream a turn without faults straight to an HTTP/1.1 transport, after the response `head`;
        `done(True)` once it has all been written, `done(False)` if the client went away first.

        One write a chunk and no more: the head goes with the role chunk, and the finish, [DONE] and
        the end of the chunked body with the last chunk.
        """
        ending, usage = self.ending(plan)
        role = plan.event(_ROLE, None)
        frames = plan.event.frames(plan.pieces, plan.reasoning)
        tail = b"%x\r\n%s\r\n0\r\n\r\n" % (len(ending), ending)

        def ended(completed: bool) -> None:
            if completed:
                self.finished(plan, usage)
            done(completed)

        if not frames:
            transport.write(b"%s%x\r\n%s\r\n%s" % (head, len(role), role, tail))
            # Later, as a schedule would: `done` may start the next request pipelined behind this one.
            asyncio.get_running_loop().call_soon(ended, True)
            return
        transport.write(b"%s%x\r\n%s\r\n" % (head, len(role), role))
        frames[-1] += tail
        self.schedule(transport, plan, frames, ended).start()

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
        """Stream the turn through aiohttp, its deadlines counted from `start` (the event loop's clock)."""
        plan = self.plan(
            start, started_ns, conversation_id, turns, messages, model, fault, include_usage=include_usage
        )
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
        if self._idle is not None:
            self._idle.busy(request.transport)
        try:
            await response.prepare(request)
            await response.write(plan.event(_ROLE, None))
            transport = request.transport
            # The fast path frames chunks itself: only where aiohttp chose the chunked encoding
            # (HTTP/1.1; an HTTP/1.0 client gets the body to the close, unframed).
            chunked = response.headers.get("Transfer-Encoding") == "chunked"
            if fault is None and transport is not None and chunked:
                ended = await self._write_on_schedule(transport, plan)
            else:
                ended = await self._write_with_fault(request, response, plan)
            if not ended:
                return response
            ending, usage = self.ending(plan)
            await response.write_eof(ending)
            self.finished(plan, usage)
        except ConnectionResetError:
            pass  # The client went away; what was written before is already counted.
        finally:
            if self._idle is not None:
                self._idle.idle(request.transport)
        return response

    async def _write_on_schedule(self, transport: asyncio.Transport, plan: TurnPlan) -> bool:
        """Write the reasoning and content chunks of a turn without faults; False if the client went
        away first.

        Each chunk goes out from a timer callback straight to the transport, framed for the chunked
        encoding aiohttp set up: no task wake-up and no writer call per chunk. That halves the mock's
        CPU per chunk, which keeps its schedule error small at the loads the benchmarks measure.
        """
        if not plan.pieces:
            return True
        finished: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def done(completed: bool) -> None:
            if not finished.done():
                finished.set_result(completed)

        schedule = self.schedule(transport, plan, plan.event.frames(plan.pieces, plan.reasoning), done)
        schedule.start()
        try:
            return await finished
        finally:
            # A handler cancelled mid-stream: its chunks still in the heap are dropped when they fall due.
            schedule.cancel()

    async def _write_with_fault(
        self, request: web.Request, response: web.StreamResponse, plan: TurnPlan
    ) -> bool:
        """Write the reasoning and content chunks of a turn with a fault in it (or to an HTTP/1.0
        client, unframed); False when the response ends here."""
        loop = asyncio.get_running_loop()
        state = self.state
        pieces, reasoning, deadlines, event = plan.pieces, plan.reasoning, plan.deadlines, plan.event
        started_ns, fault = plan.started_ns, plan.fault
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
                state.delivered(*plan.slot)
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
