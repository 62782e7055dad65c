"""Writing chunks at their deadlines: one heap of deadlines and one event-loop timer for every stream."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable

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
        self.heap: list[tuple[float, int, Schedule]] = []
        self.seq = itertools.count()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf
        self.firing = False

    def add(self, when: float, schedule: Schedule) -> None:
        heapq.heappush(self.heap, (when, next(self.seq), schedule))
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
        pop = heapq.heappop
        time = self.loop.time
        now = time()
        self.firing = True
        try:
            while heap and heap[0][0] <= now:
                pop(heap)[2].send()
        finally:
            self.firing = False
            if heap:
                self._arm(heap[0][0])


class Schedule:
    """The reasoning and content chunks of one turn, each written by the ticker at its deadline.

    `frames` are the chunks as the transport takes them, the first `reasoning` of them reasoning;
    `done(True)` is called once the last one is written, `done(False)` if the client went away first,
    and neither once `cancel()`ed (what is left of it in the heap then goes quietly).
    """

    __slots__ = (
        "ticker",
        "state",
        "writer",
        "frames",
        "pieces",
        "reasoning",
        "deadlines",
        "slot",
        "started_ns",
        "done",
        "next",
    )

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
        done: Callable[[bool], None],
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
        self.done: Callable[[bool], None] | None = done
        self.next = 0  # the index of the frame to write next

    def start(self) -> None:
        self.ticker.add(self.deadlines[0], self)

    def cancel(self) -> None:
        self.done = None

    def send(self) -> None:
        """Write the next chunk, with the ones after it that are due too (a loop running late catches
        up with one write); called by the ticker's wake-up only, which arms its timer afterwards."""
        if self.done is None:
            return
        writer = self.writer
        if writer.is_closing():
            self._end(False)
            return
        clock = self.ticker.loop.time
        i = self.next
        end = i + 1
        deadlines = self.deadlines
        if end < len(deadlines) and deadlines[end] <= clock():
            end = self._write_due(end, clock())
        else:
            writer.write(self.frames[i])
        late_s = clock() - deadlines[i]
        state = self.state
        if i < self.reasoning:
            state.reasoning_written(self.pieces[i], late_s)
        else:
            # The server-side TTFT is the answer's first chunk's, as a client's.
            state.chunk_written(self.pieces[i], late_s, self.started_ns if i == self.reasoning else None)
        if end > i + 1:
            self._count_after(i + 1, end)
        if end == len(self.frames):
            state.delivered(*self.slot)
            self._end(True)
        else:
            self.next = end
            heapq.heappush(self.ticker.heap, (deadlines[end], next(self.ticker.seq), self))

    def _write_due(self, end: int, now: float) -> int:
        """Write the next frame and those after it due by `now`, in one write; the index after them."""
        deadlines = self.deadlines
        while end < len(deadlines) and deadlines[end] <= now:
            end += 1
        self.writer.write(b"".join(self.frames[self.next : end]))
        return end

    def _count_after(self, first: int, end: int) -> None:
        """Count the chunks from `first` up to `end` written with the one before them."""
        now = self.ticker.loop.time()
        state = self.state
        for i in range(first, end):
            if i < self.reasoning:
                state.reasoning_written(self.pieces[i], now - self.deadlines[i])
            else:
                state.chunk_written(
                    self.pieces[i], now - self.deadlines[i], self.started_ns if i == self.reasoning else None
                )

    def _end(self, completed: bool) -> None:
        done = self.done
        # Dropped first: `done` may belong to what holds this schedule, and the cycle would outlive it.
        self.done = None
        if done is not None:
            done(completed)
