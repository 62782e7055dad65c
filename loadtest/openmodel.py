"""The open model's queue of arrivals (`--arrival-rate`): a greenlet puts each conversation's intended
start in it on schedule, users take them as they come free (see `loadtest.arrivals`)."""

from __future__ import annotations

import random
import time

import gevent
import gevent.queue

from loadtest.arrivals import LATE_NS, ArrivalRate, Schedule
from loadtest.recorder import TurnRecorder


class ArrivalQueue:
    """This process's arrivals; without a rate (the closed model) a conversation starts now."""

    def __init__(self, recorder: TurnRecorder) -> None:
        self.recorder = recorder
        self.max_wait_s = 10.0
        self._queue: gevent.queue.Queue[int] | None = None
        self._generator: gevent.Greenlet | None = None

    def start(self, rate: ArrivalRate | None, max_wait_s: float, processes: int = 1) -> None:
        """At test start: `rate` is the whole run's, shared evenly by `processes` generating processes."""
        self.stop()
        self.max_wait_s = max_wait_s
        if rate is None:
            return
        self._queue = gevent.queue.Queue()
        self._generator = gevent.spawn(self._generate, rate.share(processes), self._queue)

    def take(self) -> int:
        """The intended start (perf_counter_ns) of the next conversation: waits for an arrival in the
        open model, is now in the closed one."""
        queue = self._queue
        if queue is None:
            return time.perf_counter_ns()
        while True:
            intended_ns: int = queue.get()
            waited_ns = time.perf_counter_ns() - intended_ns
            if waited_ns > self.max_wait_s * 1e9:
                self.recorder.count("arrivals_dropped")
                continue
            if waited_ns > LATE_NS:
                self.recorder.count("arrivals_late")
            return intended_ns

    def stop(self) -> None:
        """At test stop: arrivals still waiting for a user are dropped if they had waited too long
        already, else cut by the end of the run."""
        if self._generator is not None:
            # Blocking: a wake-up already due would otherwise count one more arrival after the count
            # below, into a queue nobody reads.
            self._generator.kill(block=True)
            self._generator = None
        queue, self._queue = self._queue, None
        if queue is None:
            return
        now_ns = time.perf_counter_ns()
        while not queue.empty():
            waited_ns = now_ns - queue.get_nowait()
            self.recorder.count("arrivals_dropped" if waited_ns > self.max_wait_s * 1e9 else "arrivals_cut")

    def _generate(self, rate: ArrivalRate, queue: gevent.queue.Queue[int]) -> None:
        for intended_ns in Schedule(rate, time.perf_counter_ns(), random.Random()):
            delay_s = (intended_ns - time.perf_counter_ns()) / 1e9
            if delay_s > 0:
                gevent.sleep(delay_s)
            self.recorder.count("arrivals")
            queue.put(intended_ns)
