"""What travels between Locust's master and its workers for loadtest.

- With each of Locust's periodic reports (every 3 s) a worker sends what it measured since the last
  one: exact HDR histograms and counts, merged on the master.
- At test start the master sends the run's identity (`CONFIG_MESSAGE`): its id (turn logs go to its
  folder), whether the built-in mock serves it, how many workers share the arrival rate.
- At test stop each worker sends the rest (`FINAL_MESSAGE`) once its users have stopped, and the
  master waits for every worker's before it writes the outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gevent.event

from loadtest.health import HealthMonitor
from loadtest.recorder import TurnRecorder
from loadtest.run import Run

logger = logging.getLogger("loadtest")

CONFIG_MESSAGE = "loadtest_config"
FINAL_MESSAGE = "loadtest_final"
REPORT_KEY = "loadtest"
HEALTH_KEY = "loadtest_health"
# How long the master waits for final data beyond Locust's --stop-timeout.
FINAL_GRACE_S = 15


def _ship(recorder: TurnRecorder, health: HealthMonitor) -> dict[str, Any]:
    return {REPORT_KEY: recorder.drain(), HEALTH_KEY: health.drain()}


class WorkerLink:
    """The worker's side: ships data with each report and at the end, takes the run's identity."""

    def __init__(
        self,
        runner: Any,
        recorder: TurnRecorder,
        health: HealthMonitor,
        on_config: Callable[[dict[str, Any]], None],
    ) -> None:
        self.runner = runner
        self.recorder = recorder
        self.health = health
        self.on_config = on_config
        runner.register_message(CONFIG_MESSAGE, self._on_config_message)
        runner.environment.events.report_to_master.add_listener(self._on_report)

    def send_final(self) -> None:
        """Users are stopped by now: everything this worker measured goes to the master."""
        self.runner.send_message(FINAL_MESSAGE, _ship(self.recorder, self.health))

    def _on_report(self, client_id: str, data: dict[str, Any]) -> None:
        data.update(_ship(self.recorder, self.health))

    def _on_config_message(self, environment: Any, msg: Any, **_: Any) -> None:
        self.on_config(dict(msg.data))


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
        self.finals_arrived = gevent.event.Event()
        runner.register_message(FINAL_MESSAGE, self._on_final_message)
        runner.environment.events.worker_report.add_listener(self._on_worker_report)

    def begin(self, run: Run, uses_mock: bool) -> None:
        """At test start: note the workers taking part and tell them the run's identity."""
        self.run = run
        run.workers = {client.id for client in self.runner.clients.all}
        self.finals_arrived.clear()
        config = {"uses_mock": uses_mock, "run_id": run.id, "processes": len(run.workers)}
        self.runner.send_message(CONFIG_MESSAGE, config)

    def collect(self, stop_timeout: float) -> None:
        """Wait until every worker of the run has sent its final data (the master stops first)."""
        if not self.run.workers_without_final:
            return
        if self.runner.user_count:
            self._tell_workers_to_quit()
        timeout = stop_timeout + self.grace_s
        if not self.finals_arrived.wait(timeout=timeout):
            missing = sorted(self.run.workers_without_final)
            logger.warning("loadtest: no final data from workers %s after %.0f s", missing, timeout)

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
        self._merge(data, client_id)

    def _on_final_message(self, environment: Any, msg: Any, **_: Any) -> None:
        self._merge(msg.data, msg.node_id)
        self.run.workers.add(msg.node_id)
        self.run.workers_final.add(msg.node_id)
        if not self.run.workers_without_final:
            self.finals_arrived.set()
