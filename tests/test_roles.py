"""Which role a process plays, and what the reporting half counts, with Locust's own runners."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from locust import User, constant, task
from locust.env import Environment
from locust.event import Events

from loadtest.plugin import Loadtest
from loadtest.roles import LocalRole, MasterRole, Reporting, role_for
from loadtest.run import Run
from loadtest.search import LocalControl
from tests.conftest import FAST, NLX, TEST_KEY, free_port
from tests.harness import Run as HarnessRun
from tests.mockthread import ThreadedMock


class Idle(User):
    wait_time = constant(1)

    @task
    def nothing(self) -> None:
        pass


@pytest.fixture
def loadtest() -> Iterator[Loadtest]:
    lt = Loadtest()
    lt.environment = Environment(user_classes=[Idle], events=Events())
    yield lt
    lt.environment.runner.quit()


def test_a_local_runner_gets_the_local_role(loadtest: Loadtest) -> None:
    runner = loadtest.environment.create_local_runner()
    assert type(role_for(loadtest, runner)) is LocalRole


def test_a_master_runner_gets_the_master_role_which_counts_its_workers(loadtest: Loadtest) -> None:
    runner = loadtest.environment.create_master_runner("127.0.0.1", free_port())
    role = role_for(loadtest, runner)
    assert type(role) is MasterRole
    run = Run(workers={"w1", "w2"})
    assert role.reporting.count_workers(run) == 2
    assert role.reporting.count_workers(Run()) == 0  # a master that no worker reached
    local = Reporting(loadtest, lambda run: 1, LocalControl(lambda rate: None))
    assert local.count_workers(run) == 1


def test_locusts_reset_clears_the_figures_and_the_summary_says_when(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., HarnessRun]
) -> None:
    mock = thread_mock(*FAST)
    reset_after: list[int] = []

    def reset_then_more(environment: Any) -> bool:
        turns = int(environment.runner.stats.total.num_requests)
        if not reset_after and turns >= 10:
            reset_after.append(turns)
            environment.events.reset_stats.fire()  # what the web UI's RESET does first
        return bool(reset_after) and turns >= reset_after[0] + 5

    run = in_process(
        f"--host {mock.url} {NLX} -u 2 -r 2 --think-time 0.01-0.02 --history last",
        until=reset_then_more,
        env={"NLX_API_KEY": TEST_KEY},
    )
    summary = run.summary()
    served = mock.stats()["turns"]
    # The figures cover the turns after the reset only (a turn may be in flight at the reset).
    assert summary["counts"]["turns"] <= served - reset_after[0] + 1
    assert summary["run"]["reset_at"] >= summary["run"]["started"]
    assert summary["run"]["measured_s"] < summary["run"]["duration_s"]
    # The settings the run went with, as given: the form's values in the web UI, the flags here.
    settings = summary["run"]["settings"]
    assert settings["think_time"] == "0.01-0.02" and settings["history"] == "last"
    assert TEST_KEY not in str(settings)


def test_what_ended_a_run_nothing_else_claimed() -> None:
    planned = Run(planned_s=60.0)
    assert Reporting._ended_by(planned, headless=True) == "time"
    assert Reporting._ended_by(planned, headless=False) == "ui"  # Stop pressed before its run time
    planned.started_monotonic -= 60.0
    assert Reporting._ended_by(planned, headless=False) == "time"  # the web UI's own run-time timer
    assert Reporting._ended_by(Run(), headless=False) == "ui"
