"""Greenlets that watch a run: the users sampler and --threshold-abort."""

from __future__ import annotations

import functools

import gevent

from loadtest import thresholds
from loadtest.metrics import Metrics, interval_of
from loadtest.recorder import TurnRecorder
from loadtest.run import Run
from loadtest.watchers import ThresholdWatcher, UserSampler


def metrics_with_ttft(ms: float | None) -> Metrics:
    """Metrics whose every TTFT is `ms` (none: no turn answered yet)."""
    metrics = Metrics()
    if ms is not None:
        for _ in range(20):
            metrics.ttft.record_ns(int(ms * 1_000_000))
    return metrics


def test_the_sampler_keeps_the_most_users_of_each_interval() -> None:
    run = Run()
    users = iter([3, 7, 5])
    sampler = UserSampler(run, lambda: next(users), TurnRecorder())
    for _ in range(3):
        sampler.sample()
    [(interval, most)] = run.users_by_interval.items()
    assert most == 7 and abs(interval - interval_of(run.started.timestamp())) <= 5


def test_a_failed_threshold_after_the_warm_up_stops_the_run_and_is_recorded() -> None:
    run = Run()
    stopped: list[bool] = []
    rules = tuple(thresholds.parse_all(["ttft.p95<800ms"]))
    watcher = ThresholdWatcher(
        run, rules, 0.0, lambda: metrics_with_ttft(912.0), lambda: stopped.append(True)
    )
    assert watcher.check() is False
    assert run.aborted_by == "ttft.p95<800ms"
    gevent.sleep(0)  # the stop runs in a greenlet of its own, outside the watcher
    assert stopped == [True]


def test_no_data_or_a_passing_threshold_lets_the_run_go_on() -> None:
    run = Run()
    rules = tuple(thresholds.parse_all(["ttft.p95<800ms"]))
    for ms in (None, 500.0):
        watcher = ThresholdWatcher(run, rules, 0.0, functools.partial(metrics_with_ttft, ms), lambda: None)
        assert watcher.check() is True
    assert run.aborted_by is None


def test_nothing_stops_the_run_during_the_warm_up() -> None:
    run = Run()
    rules = tuple(thresholds.parse_all(["ttft.p95<800ms"]))
    asked: list[bool] = []

    def metrics() -> Metrics:
        asked.append(True)
        return metrics_with_ttft(912.0)

    watcher = ThresholdWatcher(run, rules, 3600.0, metrics, lambda: None)
    assert watcher.check() is True and not asked and run.aborted_by is None


def test_the_first_threshold_that_fails_is_the_one_recorded() -> None:
    run = Run()
    # error_rate has no turns to count yet: no data, which does not stop a run.
    rules = tuple(thresholds.parse_all(["ttft.p95<1s; error_rate<1%; ttft.max<900ms; ttft.p50<800ms"]))
    watcher = ThresholdWatcher(run, rules, 0.0, lambda: metrics_with_ttft(912.0), lambda: None)
    assert watcher.check() is False
    assert run.aborted_by == "ttft.max<900ms"
