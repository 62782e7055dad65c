"""Which role a process plays, and what the reporting half counts, with Locust's own runners."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from locust import User, constant, task
from locust.env import Environment
from locust.event import Events

from loadtest.plugin import Loadtest
from loadtest.roles import LocalRole, MasterRole, Reporting, role_for
from loadtest.run import Run
from tests.conftest import free_port


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
    local = Reporting(loadtest, lambda run: 1)
    assert local.count_workers(run) == 1
