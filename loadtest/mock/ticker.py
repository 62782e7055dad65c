"""Writing chunks at their deadlines: one heap of deadlines and one event-loop timer for every stream."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math

from loadtest.mock.state import MockState, Turn


async def sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    """Wait until the loop's clock reaches `deadline` (at once if it has)."""
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


class Ticker:
    """Runs the chunk writes of every stream from one heap of deadlines and one event-loop timer.

    An event-loop timer per chunk cost a TimerHandle and Python-level comparisons in asyncio's heap;
    tuples in `heapq` compare in C, and every chunk due at a wake-up is written in the same callback.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.heap: list[tuple[float, int, Schedule, int]] = []
        self.seq = itertools.count()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf
        self.firing = False

    def add(self, when: float, schedule: Schedule, i: int) -> None:
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


class Schedule:
    """The reasoning and content chunks of one turn, each written by the ticker at its deadline.

    `frames` are the chunks already framed for the transport, the first `reasoning` of them reasoning;
    `finished` is True once the last one is written, False if the client went away first.
    """

    def __init__(
        self,
        ticker: Ticker,
        state: MockState,
        writer: asyncio.WriteTransport,
        frames: list[bytes],
        pieces: list[str],
        reasoning: int,
        deadlines: list[float],
        slot: tuple[list[Turn], int],
        started_ns: int,
    ) -> None:
        self.ticker = ticker
        self.state = state
        self.writer = writer
        self.frames = frames
        self.pieces = pieces
        self.reasoning = reasoning
        self.deadlines = deadlines
        self.slot = slot
        self.started_ns = started_ns
        self.finished: asyncio.Future[bool] = ticker.loop.create_future()

    def start(self) -> None:
        self.ticker.add(self.deadlines[0], self, 0)

    def send(self, i: int) -> None:
        if self.finished.done():
            return  # the handler gave up (cancelled): what is left in the heap goes quietly
        if self.writer.is_closing():
            self.finished.set_result(False)
            return
        self.writer.write(self.frames[i])
        state = self.state
        late_s = self.ticker.loop.time() - self.deadlines[i]
        if i < self.reasoning:
            state.reasoning_written(self.pieces[i], late_s)
        else:
            # The server-side TTFT is the answer's first chunk's, as a client's.
            state.chunk_written(self.pieces[i], late_s, self.started_ns if i == self.reasoning else None)
        if i == len(self.frames) - 1:
            state.delivered(*self.slot)
            self.finished.set_result(True)
        else:
            self.ticker.add(self.deadlines[i + 1], self, i + 1)
