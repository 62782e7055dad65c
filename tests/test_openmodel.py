"""The open model's arrival queue: arrivals on schedule, taken by free users, dropped or cut."""

from __future__ import annotations

import time

import gevent

from loadtest.arrivals import LATE_NS, ArrivalRate
from loadtest.openmodel import ArrivalQueue
from loadtest.recorder import TurnRecorder
from tests.harness import wait_for


def counts(recorder: TurnRecorder) -> dict[str, int]:
    return {
        k: recorder.metrics.counts[k]
        for k in ("arrivals", "arrivals_late", "arrivals_dropped", "arrivals_cut")
    }


def test_the_closed_model_starts_a_conversation_now() -> None:
    queue = ArrivalQueue(TurnRecorder())
    queue.start(None, max_wait_s=10)
    before = time.perf_counter_ns()
    assert before <= queue.take() <= time.perf_counter_ns()


def test_arrivals_come_on_schedule_and_are_counted() -> None:
    recorder = TurnRecorder()
    queue = ArrivalQueue(recorder)
    queue.start(ArrivalRate(200.0, "constant"), max_wait_s=10)
    taken = [queue.take() for _ in range(5)]
    queue.stop()
    gaps = [b - a for a, b in zip(taken, taken[1:], strict=False)]
    assert gaps == [5_000_000] * 4  # intended starts 1/200 s apart, whenever they were taken
    assert counts(recorder)["arrivals"] >= 5


def test_the_rate_is_shared_by_the_processes() -> None:
    queue = ArrivalQueue(TurnRecorder())
    queue.start(ArrivalRate(400.0, "constant"), max_wait_s=10, processes=2)
    a, b = queue.take(), queue.take()
    queue.stop()
    assert b - a == 5_000_000


def test_an_arrival_that_waited_too_long_is_dropped() -> None:
    recorder = TurnRecorder()
    queue = ArrivalQueue(recorder)
    queue.start(ArrivalRate(1000.0, "constant"), max_wait_s=0.02)
    gevent.sleep(0.05)  # no user free for 50 ms: the first arrivals wait past 20 ms
    intended = queue.take()
    taken_ns = time.perf_counter_ns()
    queue.stop()
    assert counts(recorder)["arrivals_dropped"] >= 10
    # The one taken had waited at most 20 ms when take() looked (plus the microseconds since).
    assert taken_ns - intended <= 0.02e9 + 1e6


def test_an_arrival_taken_over_10_ms_after_its_time_is_late() -> None:
    recorder = TurnRecorder()
    queue = ArrivalQueue(recorder)
    queue.start(ArrivalRate(100.0, "constant"), max_wait_s=10)
    gevent.sleep(0.03)  # no user free for 30 ms: the first arrival (10 ms in) waits 20 ms
    intended = queue.take()
    assert time.perf_counter_ns() - intended > LATE_NS
    queue.stop()
    assert counts(recorder)["arrivals_late"] == 1


def test_arrivals_still_waiting_at_the_end_are_cut_or_dropped() -> None:
    recorder = TurnRecorder()
    queue = ArrivalQueue(recorder)
    queue.start(ArrivalRate(1000.0, "constant"), max_wait_s=10)
    assert wait_for(lambda: recorder.metrics.counts["arrivals"] >= 5, 10.0)
    queue.stop()
    c = counts(recorder)
    assert c["arrivals_cut"] == c["arrivals"] >= 5 and c["arrivals_dropped"] == 0
    # Stopped: no more arrivals come, and the closed model is back.
    gevent.sleep(0.01)
    assert counts(recorder)["arrivals"] == c["arrivals"]
