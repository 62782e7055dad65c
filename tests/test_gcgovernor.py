"""--gc: the collector rests during a run (auto, off) or not (on), and comes back at its end."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator

import pytest

from loadtest.gcgovernor import GcGovernor
from tests.harness import wait_for


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    yield
    gc.enable()


def until(condition: Callable[[], bool]) -> None:
    assert wait_for(condition, 10.0), "the governor never got there"


def make_cycles(n: int) -> None:
    for _ in range(n):
        a: list[object] = []
        a.append(a)


@pytest.mark.parametrize(("mode", "resting"), [("auto", True), ("off", True), ("on", False)])
def test_the_collector_rests_during_the_run_unless_on(mode: str, resting: bool) -> None:
    governor = GcGovernor()
    governor.rest(mode)
    assert gc.isenabled() is not resting
    governor.resume()
    assert gc.isenabled()


def test_cycles_built_up_while_resting_are_collected_and_reported_at_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    governor = GcGovernor()
    governor.rest("off")
    make_cycles(20_000)
    with caplog.at_level(logging.WARNING, logger="loadtest"):
        governor.resume()
    assert "objects in reference cycles built up while the garbage collector rested (--gc off)" in caplog.text
    assert gc.isenabled()


def test_auto_turns_the_collector_back_on_when_cycles_pile_up(caplog: pytest.LogCaptureFixture) -> None:
    governor = GcGovernor(check_objects=50_000, check_seconds=0.01)
    with caplog.at_level(logging.WARNING, logger="loadtest"):
        governor.rest("auto")
        make_cycles(60_000)
        until(lambda: not governor.paused)
    assert gc.isenabled()
    assert "reference cycles piled up while the garbage collector rested (--gc auto)" in caplog.text
    governor.resume()


def test_auto_keeps_resting_when_what_piled_up_is_live(caplog: pytest.LogCaptureFixture) -> None:
    governor = GcGovernor(check_objects=50_000, check_seconds=0.01)
    live: list[list[object]] = []
    with caplog.at_level(logging.WARNING, logger="loadtest"):
        governor.rest("auto")
        base = gc.get_count()[0]
        live.extend([] for _ in range(60_000))
        # The watcher collected once, found nothing, and froze what lives: the count starts afresh.
        until(lambda: gc.get_count()[0] < base + 50_000)
        assert governor.paused and not gc.isenabled()
    assert "reference cycles" not in caplog.text
    governor.resume()
    assert gc.isenabled() and len(live) == 60_000
