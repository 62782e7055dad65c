"""Greenlets that watch a run in progress, on the process that writes its outputs: the users
sampler for the time series, and `--threshold-abort`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import gevent

from loadtest import thresholds
from loadtest.metrics import interval_of
from loadtest.recorder import TurnRecorder
from loadtest.run import Run

logger = logging.getLogger("loadtest")

# Time-series intervals older than this are reduced to their statistics (workers report every 3 s).
SETTLE_AFTER_S = 30
# How often --threshold-abort looks at the merged data (Locust workers report every 3 s).
ABORT_CHECK_SECONDS = 5.0


class Watcher:
    """A greenlet that runs `_loop` until the run stops."""

    def __init__(self) -> None:
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self.stop()
        self._greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        if self._greenlet is not None and self._greenlet is not gevent.getcurrent():
            # Blocking, as the arrival queue's: a check already due must not run after the stop.
            self._greenlet.kill(block=True)
        self._greenlet = None

    def _loop(self) -> None:
        raise NotImplementedError


class UserSampler(Watcher):
    """Once a second: the most users active in each interval (as this process sees them), and the
    settling of intervals every worker has reported."""

    def __init__(self, run: Run, user_count: Callable[[], int], recorder: TurnRecorder) -> None:
        super().__init__()
        self.run = run
        self.user_count = user_count
        self.recorder = recorder

    def sample(self) -> None:
        interval = interval_of(time.time())
        users = self.run.users_by_interval
        users[interval] = max(self.user_count(), users.get(interval, 0))
        self.recorder.metrics.settle_intervals(interval - SETTLE_AFTER_S)

    def _loop(self) -> None:
        while True:
            self.sample()
            gevent.sleep(1.0)


class ThresholdWatcher(Watcher):
    """`--threshold-abort`: after the warm-up, stop the run at the first threshold that fails."""

    def __init__(
        self,
        run: Run,
        rules: tuple[thresholds.Threshold, ...],
        warmup_s: float,
        summary: Callable[[], Mapping[str, Any]],
        stop_run: Callable[[], None],
    ) -> None:
        super().__init__()
        self.run = run
        self.rules = rules
        self.warmup_s = warmup_s
        self.summary = summary
        self.stop_run = stop_run

    def check(self) -> bool:
        """Whether the run may go on; on the first failed threshold, record it and stop the run."""
        if self.run.elapsed_s() < self.warmup_s:
            return True
        summary = self.summary()
        for rule in self.rules:
            if not thresholds.can_still_pass(rule, summary):
                self.run.aborted_by = rule.expr
                logger.error("loadtest: threshold %s failed after the warm-up: stopping the run", rule.expr)
                gevent.spawn(self.stop_run)
                return False
        return True

    def _loop(self) -> None:
        while True:
            gevent.sleep(ABORT_CHECK_SECONDS)
            if not self.check():
                self._greenlet = None
                return
