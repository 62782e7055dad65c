"""What travels between Locust's master and its workers for loadtest.

- With each of Locust's periodic reports (every 3 s) a worker sends what it measured since the last
  one: exact HDR histograms and counts, merged on the master.
- The run's identity travels with Locust's spawn messages, as a custom option (`RUN_OPTION`) that
  Locust copies from the master's options into each worker's: its id (turn logs go to its folder),
  whether the built-in mock serves it, how many workers share the arrival rate. So a worker has it
  before its test starts, a worker that joins mid-run included (a message could arrive before the
  worker has registered for it).
- At test stop each worker sends the rest (`FINAL_MESSAGE`) once its users have stopped, and the
  master waits for every worker's before it writes the outputs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
from locust.runners import STATE_MISSING

from loadtest.health import HealthMonitor
from loadtest.recorder import TurnRecorder
from loadtest.run import Run

logger = logging.getLogger("loadtest")

RUN_OPTION = "loadtest_run"
FINAL_MESSAGE = "loadtest_final"
RESET_MESSAGE = "loadtest_reset"
REPORT_KEY = "loadtest"
HEALTH_KEY = "loadtest_health"
# How long the master waits for final data beyond Locust's --stop-timeout.
FINAL_GRACE_S = 15
# How often the master looks for workers Locust has marked missing or dropped.
LOST_CHECK_S = 0.5


def _ship(recorder: TurnRecorder, health: HealthMonitor) -> dict[str, Any]:
    return {REPORT_KEY: recorder.drain(), HEALTH_KEY: health.drain()}


class WorkerLink:
    """The worker's side: ships data with each report and at the end, takes the run's identity."""

    def __init__(self, environment: Any, recorder: TurnRecorder, health: HealthMonitor) -> None:
        # The environment, not its runner: a worker that joins a running test gets its first spawn
        # message (and so test_start) while Locust is still building its runner.
        self.environment = environment
        self.recorder = recorder
        self.health = health
        self.registered = False
        environment.events.report_to_master.add_listener(self._on_report)
        self.register()

    def register(self) -> None:
        """Listen for the master's messages, once the runner exists."""
        runner = self.environment.runner
        if runner is not None and not self.registered:
            runner.register_message(RESET_MESSAGE, self._on_reset_message)
            self.registered = True

    def send_final(self) -> None:
        """Users are stopped by now: everything this worker measured goes to the master."""
        self.environment.runner.send_message(FINAL_MESSAGE, _ship(self.recorder, self.health))

    def _on_report(self, client_id: str, data: dict[str, Any]) -> None:
        data.update(_ship(self.recorder, self.health))

    def run_config(self) -> dict[str, Any]:
        """The run's identity, as the master's last spawn message brought it."""
        options = self.environment.parsed_options
        return dict(getattr(options, RUN_OPTION, None) or {})

    def _on_reset_message(self, environment: Any, msg: Any, **_: Any) -> None:
        # The master reset its figures: what this worker holds from before goes too.
        self.recorder.drain()


class MasterLink:
    """The master's side: merges what workers send, and waits for their final data."""

    def __init__(
        self, runner: Any, recorder: TurnRecorder, health: HealthMonitor, *, grace_s: float = FINAL_GRACE_S
    ) -> None:
        self.runner = runner
        self.grace_s = grace_s
        self.recorder = recorder
        self.health = health
        self.run = Run()
        self.config: dict[str, Any] | None = None
        self._watcher: gevent.Greenlet | None = None
        runner.register_message(FINAL_MESSAGE, self._on_final_message)
        runner.environment.events.worker_report.add_listener(self._on_worker_report)
        runner.environment.events.worker_connect.add_listener(self._on_worker_connect)

    def begin(self, run: Run, uses_mock: bool) -> None:
        """At test start: note the workers taking part and tell them the run's identity."""
        self.run = run
        run.workers = {client.id for client in self.runner.clients.all}
        self.config = {"uses_mock": uses_mock, "run_id": run.id, "processes": len(run.workers)}
        self._publish()
        self._watcher = gevent.spawn(self._watch_workers)

    def _publish(self) -> None:
        options = self.runner.environment.parsed_options
        if options is not None:
            setattr(options, RUN_OPTION, self.config)

    def reset(self) -> None:
        """Locust's RESET on the master: workers drop what they have not reported yet."""
        self.runner.send_message(RESET_MESSAGE, None)

    def collect(self, stop_timeout: float) -> None:
        """Wait until every worker of the run has sent its final data or is lost (the master stops
        first); then stop watching them."""
        try:
            self._collect(stop_timeout)
        finally:
            if self._watcher is not None:
                self._watcher.kill(block=True)
                self._watcher = None

    def _collect(self, stop_timeout: float) -> None:
        if not self.run.workers_without_final:
            return
        if self.runner.user_count:
            self._tell_workers_to_quit()
        timeout = stop_timeout + self.grace_s
        deadline = time.monotonic() + timeout
        while self.run.workers_without_final and time.monotonic() < deadline:
            self.note_lost_workers()
            gevent.sleep(LOST_CHECK_S)
        if self.run.workers_without_final:
            missing = sorted(self.run.workers_without_final)
            logger.warning("loadtest: no final data from workers %s after %.0f s", missing, timeout)

    def note_lost_workers(self) -> None:
        """Workers Locust has marked missing (no heartbeat) or dropped are lost to this run."""
        for worker in self.run.workers - self.run.workers_final - self.run.workers_lost.keys():
            client = self.runner.clients.get(worker)
            if client is None or client.state == STATE_MISSING:
                self.run.worker_lost(worker)
                logger.warning(
                    "loadtest: worker %s lost %.1f s into the run; its data until its last report is kept",
                    worker,
                    self.run.workers_lost[worker],
                )

    def _watch_workers(self) -> None:
        while True:
            gevent.sleep(LOST_CHECK_S)
            self.note_lost_workers()

    def _on_worker_connect(self, client_id: str, **_: Any) -> None:
        # A worker joining a run in progress (Locust rebalances users onto it) takes part in it: it
        # needs the run's identity before its users start, and its data counts.
        if self.config is not None and self._watcher is not None:
            self.run.workers.add(client_id)
            self.config = {**self.config, "processes": len(self.run.workers)}
            self._publish()

    def _tell_workers_to_quit(self) -> None:
        # Only Locust's quit() fires test_stop while workers still run, and it tells them to quit only
        # after test_stop returns: tell them now, so their final data arrives while we wait for it.
        # Locust has no public call for this; its "quit" message is what quit() itself sends.
        from locust.rpc import Message

        for client in self.runner.clients.all:
            self.runner.server.send_to_client(Message("quit", None, client.id))  # type: ignore[no-untyped-call]

    def _merge(self, data: dict[str, Any], worker: str) -> None:
        if REPORT_KEY in data:
            self.recorder.metrics.merge_data(data[REPORT_KEY])
        if HEALTH_KEY in data:
            self.health.merge_data(data[HEALTH_KEY], source=worker)

    def _on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        if REPORT_KEY in data:
            self.run.workers.add(client_id)
            self._back(client_id)
        self._merge(data, client_id)

    def _on_final_message(self, environment: Any, msg: Any, **_: Any) -> None:
        self._merge(msg.data, msg.node_id)
        self.run.workers.add(msg.node_id)
        self._back(msg.node_id)
        self.run.workers_final.add(msg.node_id)

    def _back(self, worker: str) -> None:
        # A worker Locust marked missing (a busy machine can hold a heartbeat back for seconds) that
        # reports again lost nothing: Locust takes it back as it was, its data included.
        if self.run.workers_lost.pop(worker, None) is not None:
            logger.info("loadtest: worker %s is back: nothing of its data is lost", worker)
