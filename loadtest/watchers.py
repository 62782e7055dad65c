"""Greenlets that watch a run in progress, on the process that writes its outputs: the users
sampler for the time series, `--threshold-abort`, and fail-fast on a refused run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import gevent

from loadtest import thresholds
from loadtest.catalog import http_failure
from loadtest.metrics import Metrics, interval_of
from loadtest.recorder import TurnRecorder
from loadtest.run import Run
from loadtest.verdict import StoppedBy

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


class StoppingWatcher(Watcher):
    """Checks the run every `interval_s` and, the first time `check` says it must not go on (and has
    stopped it), watches no more."""

    interval_s = 1.0

    def check(self) -> bool:
        """Whether the run may go on."""
        raise NotImplementedError

    def _loop(self) -> None:
        while True:
            gevent.sleep(self.interval_s)
            if not self.check():
                self._greenlet = None
                return


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


class ThresholdWatcher(StoppingWatcher):
    """`--threshold-abort`: after the warm-up, stop the run at the first threshold that fails.

    Every check reads the thresholds' values straight from the merged metrics (`evaluate_live`): a
    summary would work out every histogram of every turn and scenario, on the master, every 5 s."""

    interval_s = ABORT_CHECK_SECONDS

    def __init__(
        self,
        run: Run,
        rules: tuple[thresholds.Threshold, ...],
        warmup_s: float,
        metrics: Callable[[], Metrics],
        stop_run: Callable[[], None],
    ) -> None:
        super().__init__()
        self.run = run
        self.rules = rules
        self.warmup_s = warmup_s
        self.metrics = metrics
        self.stop_run = stop_run

    def check(self) -> bool:
        """Whether the run may go on; on the first failed threshold, record it and stop the run."""
        if self.run.elapsed_s() < self.warmup_s:
            return True
        for outcome in thresholds.evaluate_live(self.rules, self.metrics()):
            if not thresholds.can_still_pass(outcome):
                self.run.aborted_by = outcome.expr
                self.run.stop(StoppedBy.THRESHOLD_ABORT)
                logger.error(
                    "loadtest: threshold %s failed after the warm-up: stopping the run", outcome.expr
                )
                gevent.spawn(self.stop_run)
                return False
        return True


# Fail fast: a run whose first turns are all refused alike stops after this many of them, or after
# this long with at least one (a slow pace may never reach the count).
REFUSED_TURNS = 20
REFUSED_SECONDS = 10.0
# Often: a refused request takes a millisecond, and each one goes to the endpoint under test.
REFUSAL_CHECK_SECONDS = 0.25


def _refusal_fixes(api: str) -> dict[str, str]:
    endpoint = (
        "--host and --path (the server's chat completions path)"
        if api == "openai"
        else "--nlx-deployment, --nlx-channel (it ends with a language suffix such as -en-US) and the "
        "path prefix of --host (https://apps.nlx.ai/v1)"
    )
    key = "OPENAI_API_KEY or NLX_API_KEY" if api == "openai" else "NLX_API_KEY"
    return {
        http_failure(401): f"HTTP 401 (unauthorized): set {key} to the deployment's API key",
        http_failure(403): f"HTTP 403 (forbidden): the key has no access to this endpoint: check {key} "
        f"and {endpoint}",
        http_failure(404): f"HTTP 404 (not found): check {endpoint}",
    }


def refusal(metrics: Metrics, elapsed_s: float, api: str = "nlx") -> str | None:
    """The one line naming the refusal and its fix, when every turn so far failed with the same 401,
    403 or 404 and there are enough of them to be sure; else None."""
    counts = metrics.counts
    failed = counts.get("turns_failed", 0)
    if counts.get("turns_ok", 0) or not failed:
        return None
    if failed < REFUSED_TURNS and elapsed_s < REFUSED_SECONDS:
        return None
    kinds = [kind for kind, tally in metrics.errors.items() if tally.count]
    fixes = _refusal_fixes(api)
    if len(kinds) != 1 or kinds[0] not in fixes:
        return None
    return f"all {failed} turns so far were refused with {fixes[kinds[0]]}; --no-fail-fast goes on regardless"


class RefusalWatcher(StoppingWatcher):
    """Fail fast: stop the run when its first turns are all refused alike (a wrong key, deployment,
    channel or path), instead of sending refused requests for the whole of -t."""

    interval_s = REFUSAL_CHECK_SECONDS

    def __init__(
        self, run: Run, metrics: Callable[[], Metrics], api: str, stop_run: Callable[[], None]
    ) -> None:
        super().__init__()
        self.run = run
        self.metrics = metrics
        self.api = api
        self.stop_run = stop_run

    def check(self) -> bool:
        """Whether the run may go on; on a refusal, record it and stop the run."""
        metrics = self.metrics()
        if metrics.counts.get("turns_ok", 0):
            return False  # one turn went through: the endpoint is right, nothing more to watch
        line = refusal(metrics, self.run.elapsed_s(), self.api)
        if line is None:
            return True
        self.run.refused = line
        self.run.stop(StoppedBy.REFUSED)
        logger.error("loadtest: %s: stopping the run", line)
        gevent.spawn(self.stop_run)
        return False
