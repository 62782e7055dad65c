"""Master and workers exchange loadtest's data in memory, as Locust's messages would carry it."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from locust.event import Events
from locust.runners import STATE_MISSING, STATE_RUNNING

from loadtest.handshake import RUN_OPTION, MasterLink, WorkerLink
from loadtest.health import HealthMonitor
from loadtest.metrics import Histogram
from loadtest.recorder import TurnRecorder
from loadtest.run import Run
from tests.test_recorder import failed_turn, ok_turn


@dataclass
class Msg:
    data: Any
    node_id: str


@dataclass
class Env:
    events: Events = field(default_factory=Events)
    parsed_options: Any = field(default_factory=argparse.Namespace)
    runner: Any = None


@dataclass
class Client:
    id: str
    state: str


@dataclass
class Clients:
    """Locust's WorkerNodes: every connected worker, by id."""

    by_id: dict[str, Client]

    @property
    def all(self) -> list[Client]:
        return list(self.by_id.values())

    def get(self, worker: str) -> Client | None:
        return self.by_id.get(worker)


class Node:
    """Just enough of a Locust runner: messages, events and the list of workers."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.state = STATE_RUNNING
        self.environment = Env()
        self.handlers: dict[str, Any] = {}
        self.peers: list[Node] = []
        self.user_count = 0

    @property
    def clients(self) -> Clients:
        return Clients({peer.node_id: Client(peer.node_id, peer.state) for peer in self.peers})

    def register_message(self, name: str, handler: Any) -> None:
        self.handlers[name] = handler

    def send_message(self, name: str, data: Any, client_id: str | None = None) -> None:
        for peer in self.peers:
            if name in peer.handlers:
                peer.handlers[name](peer.environment, Msg(data, self.node_id))

    def periodic_report(self, master: Node) -> None:
        data: dict[str, Any] = {}
        self.environment.events.report_to_master.fire(client_id=self.node_id, data=data)
        master.environment.events.worker_report.fire(client_id=self.node_id, data=data)


def connect(
    n_workers: int,
) -> tuple[Node, MasterLink, TurnRecorder, list[tuple[Node, WorkerLink, TurnRecorder]]]:
    master = Node("master")
    master_recorder = TurnRecorder()
    master_link = MasterLink(master, master_recorder, HealthMonitor(), grace_s=0.2)
    workers = []
    for i in range(n_workers):
        node = Node(f"w{i}")
        node.peers, master.peers = [master], [*master.peers, node]
        recorder = TurnRecorder()
        node.environment.runner = node
        link = WorkerLink(node.environment, recorder, HealthMonitor())
        workers.append((node, link, recorder))
    return master, master_link, master_recorder, workers


def spawn(master: Node, worker: Node) -> None:
    """What Locust's spawn message does with the master's custom options: copies them to the worker."""
    vars(worker.environment.parsed_options).update(vars(master.environment.parsed_options))


def test_the_run_and_how_many_share_the_rate_travel_with_the_spawn_message() -> None:
    master, link, _, workers = connect(2)
    run = Run()
    link.begin(run, uses_mock=True)
    assert run.workers == {"w0", "w1"}
    for node, worker_link, _ in workers:
        assert worker_link.run_config() == {}
        spawn(master, node)
        assert worker_link.run_config() == {"uses_mock": True, "run_id": run.id, "processes": 2}
    assert RUN_OPTION in vars(master.environment.parsed_options)


def test_a_worker_joining_mid_run_takes_part_and_the_share_follows() -> None:
    master, link, _, workers = connect(2)
    run = Run()
    link.begin(run, uses_mock=False)
    try:
        link._on_worker_connect("w9")
        assert run.workers == {"w0", "w1", "w9"}
        spawn(master, workers[0][0])
        assert workers[0][1].run_config()["processes"] == 3
    finally:
        link.collect(stop_timeout=0)


def test_reports_and_final_data_merge_exactly_on_the_master() -> None:
    master, link, master_recorder, workers = connect(2)
    run = Run()
    link.begin(run, uses_mock=False)
    all_ttft = Histogram()
    for i, (node, worker_link, recorder) in enumerate(workers):
        for k in range(50):
            turn = ok_turn(ttft_ms=10 + k + 7 * i)
            recorder.turn(turn, "s", 1, "c", intended_ns=0)
            all_ttft.record_ns(turn.ttft_ns or 0)
            if k == 20:
                node.periodic_report(master)  # part of the data travels with a periodic report
        recorder.turn(failed_turn("http_500"), "s", 2, "c", intended_ns=0)
        worker_link.send_final()
    assert not run.workers_without_final
    merged = master_recorder.metrics
    assert merged.counts["turns_ok"] == 100 and merged.counts["turns_failed"] == 2
    assert merged.errors["http_500"].count == 2
    ps = [50.0, 90.0, 99.0, 99.9]
    assert merged.hist("ttft").values_at_percentiles_us(ps) == all_ttft.values_at_percentiles_us(ps)
    link.collect(stop_timeout=0)  # every final is in: returns at once


def test_a_worker_whose_final_data_never_comes_is_named(caplog: pytest.LogCaptureFixture) -> None:
    _, link, _, workers = connect(2)
    run = Run()
    link.begin(run, uses_mock=False)
    workers[0][1].send_final()
    with caplog.at_level(logging.WARNING, logger="loadtest"):
        link.collect(stop_timeout=0)
    assert run.workers_without_final == {"w1"}
    assert "no final data from workers ['w1']" in caplog.text


def test_a_worker_locust_marks_missing_is_lost_and_not_waited_for(caplog: pytest.LogCaptureFixture) -> None:
    master, link, _, workers = connect(2)
    run = Run()
    link.begin(run, uses_mock=False)
    workers[0][1].send_final()
    workers[1][0].state = STATE_MISSING  # no heartbeat: Locust's master marks it so
    with caplog.at_level(logging.WARNING, logger="loadtest"):
        link.collect(stop_timeout=60)  # returns at once: nobody left to wait for
    assert set(run.workers_lost) == {"w1"} and not run.workers_without_final
    assert "worker w1 lost" in caplog.text
    master.peers.remove(workers[0][0])  # a worker that sent its final data and quit is not lost
    link.note_lost_workers()
    assert set(run.workers_lost) == {"w1"}


def test_a_missing_worker_that_reports_again_is_back_and_lost_nothing() -> None:
    master, link, _, workers = connect(2)
    run = Run()
    link.begin(run, uses_mock=False)
    try:
        node = workers[1][0]
        node.state = STATE_MISSING  # a heartbeat held back by a busy machine
        link.note_lost_workers()
        assert set(run.workers_lost) == {"w1"}
        node.state = STATE_RUNNING  # Locust: "self-healed with heartbeat"
        node.periodic_report(master)
        assert run.workers_lost == {}
        workers[0][1].send_final()
        workers[1][1].send_final()
        assert not run.workers_without_final and run.workers_final == {"w0", "w1"}
    finally:
        link.collect(stop_timeout=0)


def test_a_worker_whose_test_starts_before_its_runner_exists_registers_later() -> None:
    master, _, _, _ = connect(0)
    node = Node("late")
    node.peers, master.peers = [master], [node]
    link = WorkerLink(node.environment, TurnRecorder(), HealthMonitor())  # no runner yet
    assert not link.registered and node.handlers == {}
    node.environment.runner = node
    link.register()  # at Locust's init event
    assert link.registered and set(node.handlers) == {"loadtest_reset"}
