"""What loadtest does in each kind of Locust process: roles are classes, not branches.

- `LocalRole`: one process generates the load and writes the outputs.
- `WorkerRole`: generates load and ships what it measured to the master.
- `MasterRole`: generates nothing; merges what workers ship and writes the outputs.

Generating load (`Generation`) and writing the outputs (`Reporting`) are the two halves the roles
are made of.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
from locust.runners import MasterRunner, WorkerRunner

from loadtest.handshake import MasterLink, WorkerLink
from loadtest.output import RunOutput
from loadtest.report.schema import Summary
from loadtest.run import Run
from loadtest.watchers import ThresholdWatcher, UserSampler

if TYPE_CHECKING:
    from loadtest.plugin import Loadtest


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
        if settings.turn_log and run_id:
            lt.recorder.open_turn_log(settings.report_dir / run_id)
        lt.arrivals.start(settings.arrival_rate, settings.max_queue_wait, processes)

    def stop(self) -> None:
        lt = self.lt
        lt.recorder.close_turn_log()
        lt.arrivals.stop()
        lt.health.stop()
        lt.gc.resume()


class Reporting:
    """The output half (local and master processes): the run's identity, its watchers, and at the
    end summary.json, the reports, the console table and the exit code."""

    def __init__(self, lt: Loadtest, count_workers: Callable[[Run], int]) -> None:
        self.lt = lt
        self.count_workers = count_workers
        self.run: Run | None = None
        self.output = RunOutput(lt.recorder, lt.health)
        self.watchers: list[ThresholdWatcher | UserSampler] = []

    def start(self) -> Run:
        lt = self.lt
        run = self.run = Run()
        # The web UI may have changed the host or options since start-up.
        settings = lt.refresh_settings()
        self.watchers = [UserSampler(run, lambda: int(lt.runner.user_count or 0), lt.recorder)]
        if settings.threshold_abort and settings.thresholds:
            self.watchers.append(
                ThresholdWatcher(
                    run, settings.thresholds, settings.threshold_warmup, self.summary, self._abort
                )
            )
        for watcher in self.watchers:
            watcher.start()
        return run

    def stop_watching(self) -> None:
        for watcher in self.watchers:
            watcher.stop()
        self.watchers = []

    def summary(self) -> Summary:
        lt = self.lt
        assert self.run is not None
        return self.output.summary(
            self.run,
            lt.current_settings(),
            host=lt.environment.host,
            uses_mock=lt.uses_mock,
            users=int(getattr(lt.runner, "target_user_count", None) or 0),
            workers=self.count_workers(self.run),
        )

    def finish(self) -> None:
        """Write every output of the run, once."""
        if self.run is None:
            return
        summary = self.summary()
        self.run = None
        settings = self.lt.current_settings()
        _, exit_code = self.output.write(summary, settings)
        if exit_code is not None:
            self.lt.environment.process_exit_code = exit_code
        if not settings.headless:
            self.output.print_console()

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

    def on_test_start(self) -> None:
        raise NotImplementedError

    def on_spawning_complete(self, user_count: int) -> None:
        """Users are spawned: the collector need not walk them again."""
        self.lt.gc.freeze()

    def on_test_stop(self) -> None:
        raise NotImplementedError

    def on_quitting(self) -> None:
        """Ctrl-C or SIGTERM while a test runs."""

    def print_console(self) -> None:
        """At quit: the end-of-run table, when this process has one."""


class _Reporter(Role):
    """A role that writes the outputs (local, master)."""

    def __init__(self, lt: Loadtest, count_workers: Callable[[Run], int]) -> None:
        super().__init__(lt)
        self.reporting = Reporting(lt, count_workers)

    def on_spawning_complete(self, user_count: int) -> None:
        if self.reporting.run is not None:
            self.reporting.run.peak_users = max(self.reporting.run.peak_users, user_count)
        super().on_spawning_complete(user_count)

    def on_quitting(self) -> None:
        # Locust picks its exit code right after the quitting event: stop the test now, so the
        # summary and the verdict exist before that.
        if self.reporting.run is not None and self.lt.runner is not None:
            self.lt.runner.stop()

    def print_console(self) -> None:
        self.reporting.output.print_console()


class LocalRole(_Reporter):
    def __init__(self, lt: Loadtest) -> None:
        super().__init__(lt, lambda run: 1)
        self.generation = Generation(lt)

    def on_init(self) -> None:
        # Python raises Ctrl-C's KeyboardInterrupt in whatever greenlet runs at that moment, often a
        # user mid-turn, whose traceback then hides the run's end. Make Ctrl-C take the path Locust
        # gives SIGTERM: a clean shutdown from the main greenlet.
        gevent.signal_handler(signal.SIGINT, os.kill, os.getpid(), signal.SIGTERM)
        super().on_init()

    def on_test_start(self) -> None:
        self.lt.recorder.reset()
        run = self.reporting.start()
        self.generation.start(run.id, processes=1)

    def on_test_stop(self) -> None:
        self.generation.stop()
        self.reporting.stop_watching()
        self.reporting.finish()


class MasterRole(_Reporter):
    def __init__(self, lt: Loadtest) -> None:
        super().__init__(lt, lambda run: len(run.workers))
        self.link = MasterLink(lt.runner, lt.recorder, lt.health)

    def on_test_start(self) -> None:
        self.lt.recorder.reset()
        self.lt.health.reset()
        run = self.reporting.start()
        self.link.begin(run, self.lt.uses_mock)

    def on_test_stop(self) -> None:
        self.reporting.stop_watching()
        self.link.collect(float(self.lt.environment.stop_timeout or 0))
        self.reporting.finish()


class WorkerRole(Role):
    def __init__(self, lt: Loadtest) -> None:
        super().__init__(lt)
        self.generation = Generation(lt)
        self.link = WorkerLink(lt.runner, lt.recorder, lt.health, self._on_config)
        self.run_id: str | None = None
        self.processes = 1

    def on_init(self) -> None:
        """Nothing to check: the host and the options come from the master with each test."""

    def _on_config(self, config: dict[str, Any]) -> None:
        self.lt.uses_mock = bool(config.get("uses_mock"))
        self.run_id = config.get("run_id")
        self.processes = int(config.get("processes") or 1)
        self.lt.forget_settings()

    def on_test_start(self) -> None:
        self.lt.recorder.reset()
        self.generation.start(self.run_id, self.processes)

    def on_test_stop(self) -> None:
        self.generation.stop()
        self.link.send_final()


def role_for(lt: Loadtest, runner: Any) -> Role:
    if isinstance(runner, WorkerRunner):
        return WorkerRole(lt)
    if isinstance(runner, MasterRunner):
        return MasterRole(lt)
    return LocalRole(lt)
