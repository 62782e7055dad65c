"""Locust's per-second counts keep only the recent seconds, and its current rates stay the same."""

from __future__ import annotations

from typing import Any

import locust.stats
import pytest
from locust.env import Environment
from locust.stats import RequestStats

from loadtest.trim import KEEP_S, StatsTrimmer, trim
from tests.harness import wait_for

START = 1_700_000_000


class Clock:
    """Stands in for the `time` module Locust's statistics read the time of a request from."""

    def __init__(self) -> None:
        self.now = float(START)

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(locust.stats, "time", fake)
    return fake


def run_for(stats: RequestStats, clock: Clock, seconds: int) -> None:
    """Requests as a run makes them: each second 5 turns, 2 of one name and 3 of another, and a
    failure every third second."""
    for second in range(seconds):
        clock.now = START + second + 0.5
        for name, count in (("turn", 2), ("conversation", 3)):
            for _ in range(count):
                stats.log_request("POST", name, 120, 300)
        if second % 3 == 0:
            stats.log_error("POST", "turn", "HTTP 500")


def current(stats: RequestStats) -> list[tuple[Any, ...]]:
    entries = [stats.total, *stats.entries.values()]
    return [(e.name, e.current_rps, e.current_fail_per_sec, e.num_requests, e.num_failures) for e in entries]


def per_second_keys(stats: RequestStats) -> list[int]:
    entries = [stats.total, *stats.entries.values()]
    return [key for e in entries for counts in (e.num_reqs_per_sec, e.num_fail_per_sec) for key in counts]


def test_only_the_recent_seconds_remain_and_the_current_rates_are_unchanged(clock: Clock) -> None:
    stats = Environment().stats
    run_for(stats, clock, 600)
    before = current(stats)
    assert len(stats.total.num_reqs_per_sec) == 600

    dropped = trim(stats)

    last = START + 599
    assert all(last - KEEP_S <= key <= last for key in per_second_keys(stats))
    for entry in (stats.total, *stats.entries.values()):
        assert len(entry.num_reqs_per_sec) == KEEP_S + 1
    # Requests in 3 entries (the total, both names); failures in 2, every third second up to 567.
    assert dropped == 3 * (600 - KEEP_S - 1) + 2 * len(range(0, 568, 3))
    assert current(stats) == before
    assert before[0][1] == pytest.approx(5.0) and before[0][2] == pytest.approx(0.3)


def test_nothing_is_dropped_from_a_run_younger_than_what_is_kept(clock: Clock) -> None:
    stats = Environment().stats
    run_for(stats, clock, KEEP_S)
    assert trim(stats) == 0
    assert trim(Environment().stats) == 0  # no request yet


def test_a_master_merges_a_report_after_trimming(clock: Clock) -> None:
    """A worker's report carries the seconds since its last one: they are kept and counted."""
    master = Environment().stats
    run_for(master, clock, 120)
    trim(master)
    worker = RequestStats()
    run_for(worker, clock, 120)  # the same seconds again, as from a second worker
    master.total.extend(worker.total)
    assert master.total.num_reqs_per_sec[START + 119] == 10
    trim(master)
    assert len(master.total.num_reqs_per_sec) == KEEP_S + 1


def test_the_trimmer_trims_while_it_runs(clock: Clock) -> None:
    stats = Environment().stats
    run_for(stats, clock, 120)
    trimmer = StatsTrimmer(stats, every_s=0.01)
    trimmer.start()
    try:
        assert wait_for(lambda: len(stats.total.num_reqs_per_sec) == KEEP_S + 1, 10.0)
    finally:
        trimmer.stop()
    assert all(key >= START + 119 - KEEP_S for key in per_second_keys(stats))
