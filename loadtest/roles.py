"""What loadtest does in each kind of Locust process: roles are classes, not branches.

- `LocalRole`: one process generates the load and writes the outputs.
- `WorkerRole`: generates load and ships what it measured to the master.
- `MasterRole`: generates nothing; merges what workers ship and writes the outputs.

Generating load (`Generation`) and writing the outputs (`Reporting`) are the two halves the roles
are made of. A capacity search (`loadtest.search`) is run by the reporting half, which tells the
generating processes its arrival rates, and when to drain them: directly on a local process, by
message to workers.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
from locust.runners import MasterRunner, WorkerRunner

from loadtest import advice, capacity, conversation, progress
from loadtest.arrivals import ArrivalRate
from loadtest.errors import LoadtestError
from loadtest.handshake import FINAL_GRACE_S, MasterLink, WorkerLink
from loadtest.output import RunOutput
from loadtest.report.schema import Summary
from loadtest.run import Run
from loadtest.search import (
    DRAINED_MESSAGE,
    RATE_MESSAGE,
    CapacitySearch,
    CapacityShape,
    Control,
    LocalControl,
    MasterControl,
    SteppedArrivals,
)
from loadtest.settings import Settings, conversations_path, wanted_conversations
from loadtest.shapes import StagesShape
from loadtest.trim import StatsTrimmer
from loadtest.verdict import EXIT_BAD_INPUT, EXIT_FAILED_TURNS, StoppedBy
from loadtest.watchers import RefusalWatcher, ThresholdWatcher, UserSampler, Watcher

if TYPE_CHECKING:
    from loadtest.plugin import Loadtest

logger = logging.getLogger("loadtest")


class Generation:
    """The load-generating half (local and worker processes): health sampling, the garbage
    collector's rest, the turn log and the open model's arrivals, for the length of a test."""

    def __init__(self, lt: Loadtest) -> None:
        self.lt = lt

    def start(self, run_id: str | None, processes: int) -> None:
        lt = self.lt
        settings = lt.current_settings()
        lt.health.start()
        lt.gc.rest(settings.gc)
        lt.recorder.goodput = settings.goodput
        if settings.turn_log and run_id:
            lt.recorder.open_turn_log(settings.report_dir / run_id)
        if settings.search_rate is None:
            lt.arrivals.start(settings.arrival_rate, settings.max_queue_wait, processes)
            return
        # A rate search sets the rate of each step: the arrivals begin with its first.
        if not isinstance(lt.arrivals, SteppedArrivals):
            lt.arrivals = SteppedArrivals(lt.recorder)
        lt.arrivals.open(settings.max_queue_wait)

    def set_rate(self, rate: ArrivalRate, processes: int) -> None:
        """A rate search's next step."""
        if isinstance(self.lt.arrivals, SteppedArrivals):
            self.lt.arrivals.set_rate(rate, processes)

    def drain(self, timeout_s: float) -> bool:
        """A rate search's drain before a step: True once every user of this process is free."""
        arrivals = self.lt.arrivals
        if not isinstance(arrivals, SteppedArrivals):
            return True
        runner = self.lt.runner
        # The users this process is to run, also while Locust is still spawning them.
        return arrivals.drain(lambda: int(max(runner.user_count, runner.target_user_count)), timeout_s)

    def stop(self) -> None:
        lt = self.lt
        lt.recorder.close_turn_log()
        lt.arrivals.stop()
        lt.health.stop()
        lt.gc.resume()


class Reporting:
    """The output half (local and master processes): the run's identity, its watchers, and at the
    end summary.json, the reports, the console table and the exit code."""

    def __init__(self, lt: Loadtest, count_workers: Callable[[Run], int], control: Control) -> None:
        self.lt = lt
        self.count_workers = count_workers
        # How a capacity search reaches the processes that generate the load.
        self.control = control
        self.run: Run | None = None
        self.search: CapacitySearch | None = None
        self.output = RunOutput(lt.recorder, lt.health)
        self.watchers: list[Watcher] = []
        # The signal that is ending the run, when loadtest saw it first (Ctrl-C).
        self.signal: str | None = None
        # Set while the outputs are being written after the test stopped (a master waits for its
        # workers' final data then): Locust's shutdown must wait for them.
        self.stopping = False
        self.written = gevent.event.Event()

    def start(self) -> Run:
        lt = self.lt
        run = self.run = Run(planned_s=planned_seconds(lt.environment))
        # The web UI may have changed the host or options since start-up.
        settings = lt.refresh_settings()
        run.warnings = advice.start_warnings(
            lt.environment.parsed_options,
            settings,
            stages_shape=isinstance(lt.environment.shape_class, StagesShape),
            run_time_s=run.planned_s,
        )
        for warning in run.warnings:
            logger.warning("loadtest: %s", warning)
        # Also for the web UI's LOGS tab, which refreshes only while a test runs.
        logger.info("loadtest: run %s writes its output to %s", run.id, settings.report_dir / run.id)
        # Locust's per-second counts grow a key a second for the whole run: kept to the last 30 s.
        self.watchers = [UserSampler(run, self.user_count, lt.recorder), StatsTrimmer(lt.environment.stats)]
        if settings.threshold_abort and settings.thresholds:
            self.watchers.append(
                ThresholdWatcher(
                    run,
                    settings.thresholds,
                    settings.threshold_warmup,
                    lambda: lt.recorder.metrics,
                    self._abort,
                )
            )
        if settings.fail_fast:
            self.watchers.append(RefusalWatcher(run, lambda: lt.recorder.metrics, settings.api, self._abort))
        if settings.headless and settings.progress:
            snapshots = progress.snapshots(lt.recorder, lt.health, run, self.user_count)
            self.watchers.append(progress.ProgressLine(snapshots, sys.stderr))
        self.search = self._search(run, settings)
        if self.search is not None:
            self.watchers.append(self.search)
        for watcher in self.watchers:
            watcher.start()
        return run

    def _search(self, run: Run, settings: Settings) -> CapacitySearch | None:
        """The capacity search the options ask for, handed to the locustfile's shape."""
        shape = self.lt.environment.shape_class
        if not isinstance(shape, CapacityShape):
            return None
        users = locust_users(self.lt.environment)
        try:
            plan = capacity.plan(settings, users)
        except LoadtestError as exc:
            # The web UI may have changed the options since start-up.
            logger.error("loadtest: %s: stopping the run", exc)
            gevent.spawn(self._abort)
            return None
        if plan is None:
            return None
        lt = self.lt
        search = CapacitySearch(
            run,
            plan,
            settings.thresholds,
            lambda: (lt.recorder.metrics, lt.health),
            users=users or 0,
            user_count=self.user_count,
            control=self.control,
        )
        shape.begin(search)
        return search

    def stop_watching(self) -> None:
        for watcher in self.watchers:
            watcher.stop()
        self.watchers = []
        shape = self.lt.environment.shape_class
        if isinstance(shape, CapacityShape):
            # The next test (the web UI's) starts a search of its own.
            shape.begin(None)

    def summary(self) -> Summary:
        lt = self.lt
        assert self.run is not None
        settings = lt.current_settings()
        exit_code_on_error = int(
            getattr(lt.environment.parsed_options, "exit_code_on_error", None) or EXIT_FAILED_TURNS.code
        )
        return self.output.summary(
            self.run,
            settings,
            host=lt.environment.host,
            uses_mock=lt.uses_mock,
            users=int(getattr(lt.runner, "target_user_count", None) or 0),
            workers=self.count_workers(self.run),
            options=lt.environment.parsed_options,
            exit_code_on_error=exit_code_on_error,
            capacity_section=None if self.search is None else self.search.section(),
        )

    def user_count(self) -> int:
        """Users running now (all workers' on a master)."""
        return int(self.lt.runner.user_count or 0)

    def reset(self) -> None:
        """Locust's RESET: the figures start afresh, and the summary says when."""
        if self.run is not None:
            self.lt.recorder.reset()
            self.run.reset()
            logger.info("loadtest: figures reset; the summary covers the run from here")

    def interrupt(self) -> None:
        """A signal is ending the run (Ctrl-C, SIGTERM): it was cut, not finished."""
        if self.run is not None:
            self.run.stop(StoppedBy.SIGNAL, signal=self.signal or "SIGTERM")

    def finish(self, ended_by: str | None = None) -> None:
        """Write every output of the run, once."""
        run = self.run
        if run is None:
            return
        settings = self.lt.current_settings()
        run.stop(ended_by or self._ended_by(run, settings.headless))
        summary = self.summary()
        self.run = None
        self.search = None
        self.output.write(summary, settings)
        self.lt.environment.process_exit_code = summary["exit_code"]
        if not settings.headless:
            self.output.print_console()

    def begin_stopping(self) -> None:
        self.stopping = True
        self.written.clear()

    def end_stopping(self) -> None:
        self.stopping = False
        self.written.set()

    def wait_written(self, timeout: float) -> None:
        """Locust is shutting down while the outputs are being written: let them be written."""
        if self.stopping and not self.written.wait(timeout=timeout):
            logger.error("loadtest: the run's outputs were not written within %.0f s", timeout)

    @staticmethod
    def _ended_by(run: Run, headless: bool) -> str:
        """What stopped a run that nothing else claimed: its time, or the web UI's Stop button."""
        if headless:
            return StoppedBy.TIME
        # The web UI stops a run at its run time as well; a second of slack for the timer.
        if run.planned_s is not None and run.elapsed_s() >= run.planned_s - 1.0:
            return StoppedBy.TIME
        return StoppedBy.UI

    def _abort(self) -> None:
        # Headless, the run ends; in the web UI, the test stops and the UI stays up.
        if self.lt.current_settings().headless:
            self.lt.runner.quit()
        else:
            self.lt.runner.stop()


class Role:
    """Locust's events as one kind of process handles them."""

    def __init__(self, lt: Loadtest) -> None:
        self.lt = lt

    def on_init(self) -> None:
        """At start-up: the mock if needed, and every option checked."""
        self.lt.prepare()

    def on_init_again(self) -> None:
        """Locust's init event, for a process whose test started before it (a late worker)."""

    def load_conversations(self) -> None:
        """Read the conversations file once, off the event loop (heartbeats go on while a large file
        parses). A process that sends nothing keeps only its outline: names and sizes."""
        conversation.preload(conversations_path(self.lt.environment.parsed_options), outline=True)

    def on_test_start(self) -> None:
        raise NotImplementedError

    def on_spawning_complete(self, user_count: int) -> None:
        """Users are spawned: the collector need not walk them again."""
        self.lt.gc.freeze()

    def on_test_stop(self) -> None:
        raise NotImplementedError

    def on_reset(self) -> None:
        """Locust's RESET button (`/stats/reset`)."""

    def on_quitting(self) -> None:
        """Ctrl-C or SIGTERM while a test runs."""

    def print_console(self) -> None:
        """At quit: the end-of-run table, when this process has one."""


class _Reporter(Role):
    """A role that writes the outputs (local, master)."""

    def __init__(self, lt: Loadtest, count_workers: Callable[[Run], int], control: Control) -> None:
        super().__init__(lt)
        self.reporting = Reporting(lt, count_workers, control)

    def on_spawning_complete(self, user_count: int) -> None:
        if self.reporting.run is not None:
            self.reporting.run.peak_users = max(self.reporting.run.peak_users, user_count)
            # Locust's --reset-stats resets its own figures here, to drop the ramp-up: ours too.
            if self.lt.environment.reset_stats:
                self.on_reset()
        super().on_spawning_complete(user_count)

    def on_reset(self) -> None:
        self.reporting.reset()

    def on_init(self) -> None:
        # Python raises Ctrl-C's KeyboardInterrupt in whatever greenlet runs at that moment, often a
        # user mid-turn, whose traceback then hides the run's end. Make Ctrl-C take the path Locust
        # gives SIGTERM: a clean shutdown from the main greenlet; the run remembers which it was.
        gevent.signal_handler(signal.SIGINT, self._on_sigint)
        super().on_init()
        self._check_search()

    def _check_search(self) -> None:
        """A capacity search needs its locustfile, and that locustfile a search: bad input stops the
        process here with one line and exit code 2, as `Loadtest.prepare` does."""
        environment = self.lt.environment
        shape = environment.shape_class
        try:
            users = locust_users(environment)
            plan = capacity.plan(self.lt.current_settings(), users)
            if plan is not None and not isinstance(shape, CapacityShape):
                raise LoadtestError(
                    f"{plan.flag} runs a capacity search, which needs its load shape: "
                    "use locust -f locustfiles/capacity.py"
                )
            if plan is None and isinstance(shape, CapacityShape):
                raise LoadtestError(
                    "this locustfile searches for capacity: pass --search-users LOW:HIGH (or --search-rate "
                    "LOW:HIGH with -u) and the SLO as --threshold, e.g. --threshold 'ttft.p95<800ms'"
                )
        except LoadtestError as exc:
            self.lt.close()
            print(f"loadtest: error: {exc}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT.code)
        if plan is not None and isinstance(shape, CapacityShape):
            shape.prepare(plan, users or 0)

    def _on_sigint(self) -> None:
        self.reporting.signal = "SIGINT"
        os.kill(os.getpid(), signal.SIGTERM)

    def catch_sigterm(self) -> None:
        """While a test runs, SIGTERM (and so Ctrl-C) takes loadtest's path instead of Locust's.

        Locust's handler shuts down from the signal's greenlet while the main greenlet, whose runner
        just quit, shuts down too: the final tables then print twice and the log says SIGTERM for a
        Ctrl-C. Here the run is marked as cut by the signal and the runner (and web UI) stopped, so
        the main greenlet's one shutdown writes everything once. Locust installs its handler after
        the init event, so this is called at test start.
        """
        # Python's own handler replaces the one of the event loop that Locust installed (gevent's
        # handlers add up: both would run); it runs between bytecodes, so it only schedules the stop.
        signal.signal(signal.SIGTERM, lambda signum, frame: gevent.spawn(self._on_sigterm))

    def _on_sigterm(self) -> None:
        logger.info("Got %s signal: stopping the run", self.reporting.signal or "SIGTERM")
        self.reporting.interrupt()
        gevent.spawn(self._shut_down)

    def _shut_down(self) -> None:
        self.lt.runner.quit()
        web_ui = self.lt.environment.web_ui
        if web_ui is not None:
            web_ui.stop()

    def on_quitting(self) -> None:
        # Locust picks its exit code right after the quitting event: stop the test now, so the
        # summary and the verdict exist before that.
        if self.reporting.stopping:
            # The test has stopped and its outputs are being written (a master may be waiting for
            # its workers' final data when Locust shuts down because the last worker quit).
            timeout = float(self.lt.environment.stop_timeout or 0) + FINAL_GRACE_S + 5
            self.reporting.wait_written(timeout)
        elif self.reporting.run is not None and self.lt.runner is not None:
            self.reporting.interrupt()
            self.lt.runner.stop()

    def print_console(self) -> None:
        self.reporting.output.print_console()


class LocalRole(_Reporter):
    def __init__(self, lt: Loadtest) -> None:
        self.generation = Generation(lt)
        control = LocalControl(lambda rate: self.generation.set_rate(rate, 1), self.generation.drain)
        super().__init__(lt, lambda run: 1, control)

    def load_conversations(self) -> None:
        conversation.preload(conversations_path(self.lt.environment.parsed_options))

    def on_test_start(self) -> None:
        self.lt.recorder.reset()
        self.catch_sigterm()
        run = self.reporting.start()
        self.generation.start(run.id, processes=1)

    def on_test_stop(self) -> None:
        self.generation.stop()
        self.reporting.stop_watching()
        self.reporting.finish()


class MasterRole(_Reporter):
    def __init__(self, lt: Loadtest) -> None:
        super().__init__(lt, lambda run: len(run.workers), MasterControl(lt.runner))
        self.link = MasterLink(lt.runner, lt.recorder, lt.health)

    def on_test_start(self) -> None:
        self.lt.recorder.reset()
        self.lt.health.reset()
        self.catch_sigterm()
        run = self.reporting.start()
        self.link.begin(run, self.lt.uses_mock)

    def on_test_stop(self) -> None:
        reporting = self.reporting
        reporting.begin_stopping()
        try:
            reporting.stop_watching()
            self.link.collect(float(self.lt.environment.stop_timeout or 0))
            run = reporting.run
            # Locust stops the test itself when its last worker went missing.
            all_lost = run is not None and bool(run.workers) and run.workers <= run.workers_lost.keys()
            reporting.finish(StoppedBy.WORKERS_LOST if all_lost else None)
        finally:
            reporting.end_stopping()

    def on_reset(self) -> None:
        super().on_reset()
        self.link.reset()


class WorkerRole(Role):
    def __init__(self, lt: Loadtest) -> None:
        super().__init__(lt)
        self.generation = Generation(lt)
        self.link = WorkerLink(lt.environment, lt.recorder, lt.health)
        # The processes sharing the load of the current test.
        self.processes = 1
        lt.runner.register_message(RATE_MESSAGE, self._on_rate_message)

    def _on_rate_message(self, environment: Any, msg: Any, **_: Any) -> None:
        if msg.data["rate"] is None:
            # Off the message loop: heartbeats go on while the conversations end.
            gevent.spawn(self._drain, int(msg.data["drain"]), float(msg.data["timeout_s"]))
            return
        rate = ArrivalRate(float(msg.data["rate"]), str(msg.data["process"]))
        self.generation.set_rate(rate, self.processes)

    def _drain(self, number: int, timeout_s: float) -> None:
        drained = self.generation.drain(timeout_s)
        self.lt.runner.send_message(DRAINED_MESSAGE, {"drain": number, "drained": drained})

    def on_init(self) -> None:
        """Nothing to check: the host and the options come from the master with each test. The
        conversations file this worker's own options name is read now, before any test, when there
        is one: the master's options usually name the same file, which is then read already."""
        try:
            self.load_conversations()
        except LoadtestError as exc:
            logger.debug("loadtest: conversations not read before the test: %s", exc)

    def on_init_again(self) -> None:
        self.link.register()

    def load_conversations(self) -> None:
        # Users that only play flows of their own need no file, unless --conversations names one.
        path = wanted_conversations(self.lt.environment.parsed_options, self.lt.plays)
        if path is not None:
            conversation.preload(path)

    def on_test_start(self) -> None:
        config = self.link.run_config()
        self.lt.uses_mock = bool(config.get("uses_mock"))
        self.lt.forget_settings()
        try:
            # Before the users start (and before --gc rests the collector, which the load restores).
            self.load_conversations()
        except LoadtestError as exc:
            logger.error("loadtest: %s", exc)
        self.lt.recorder.reset()
        self.processes = int(config.get("processes") or 1)
        self.generation.start(config.get("run_id"), self.processes)

    def on_test_stop(self) -> None:
        self.generation.stop()
        self.link.send_final()


def planned_seconds(environment: Any) -> float | None:
    """How long a run is meant to last: `-t` (also set by the web UI's form), or the total of
    `--stages`, whichever ends it first; None: until stopped."""
    run_time = getattr(environment.parsed_options, "run_time", None)
    planned = [float(run_time)] if run_time else []
    shape = environment.shape_class
    if isinstance(shape, StagesShape):
        planned.append(float(sum(stage.seconds for stage in shape.stages())))
    return min(planned) if planned else None


def locust_users(environment: Any) -> int | None:
    """Locust's -u, when given."""
    users = getattr(environment.parsed_options, "num_users", None)
    return int(users) if users else None


def role_for(lt: Loadtest, runner: Any) -> Role:
    # No runner yet: a worker whose first test starts while Locust builds its runner (see WorkerLink).
    if isinstance(runner, WorkerRunner) or (
        runner is None and getattr(lt.environment.parsed_options, "worker", False)
    ):
        return WorkerRole(lt)
    if isinstance(runner, MasterRunner):
        return MasterRole(lt)
    return LocalRole(lt)
