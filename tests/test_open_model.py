"""--arrival-rate: conversations arrive on schedule; late and dropped arrivals and response time.

The runs are in-process (tests/harness.py): the arrival schedule, the users and the clock are the same
code and the same gevent loop as in `locust`, with the mock in a process of its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import NLX, TEST_KEY, Mock
from tests.harness import Run, Until, config_error

KEYED = {"NLX_API_KEY": TEST_KEY}


def after(*, seconds: float) -> Until:
    """Until the run has lasted this long since its start: what these tests measure is a rate."""
    started: list[float] = []

    def reached(_: object) -> bool:
        started[:] = started or [time.monotonic()]
        return time.monotonic() - started[0] >= seconds

    return reached


def one_turn_conversations(tmp_path: Path) -> str:
    path = tmp_path / "one.yaml"
    path.write_text("scenarios:\n  - name: one\n    turns: [hello]\n", encoding="utf-8")
    return str(path)


@pytest.mark.timing
def test_arrivals_follow_the_rate_when_the_server_keeps_up(
    mock_server: Callable[..., Mock], in_process: Callable[..., Run], tmp_path: Path
) -> None:
    mock = mock_server("--ttft", "const:20ms", "--itl", "const:2ms", "--chunks", "const:3")
    run = in_process(
        f"--host {mock.url} {NLX} -u 40 -r 40 --think-time 0 --stop-timeout 30 --arrival-rate 20",
        "--conversations", one_turn_conversations(tmp_path),
        until=after(seconds=4), env=KEYED,
    )  # fmt: skip
    assert run.exit_code == 0, run.output[-3000:]
    summary = run.summary()
    counts = summary["counts"]
    duration = summary["run"]["duration_s"]
    expected = 20 * duration
    # Poisson count: within 4 standard deviations of the rate times the duration.
    assert abs(counts["arrivals"] - expected) < 4 * math.sqrt(expected), (counts["arrivals"], duration)
    started = counts["arrivals"] - counts["arrivals_dropped"] - counts["arrivals_cut"]
    assert counts["conversations_started"] == started
    assert counts["arrivals_dropped"] == 0 and counts["turns_ok"] == counts["conversations_completed"]
    metrics = summary["metrics"]
    # Nothing waited: response time and service time tell the same story.
    assert abs(metrics["ttft_response_ms"]["p50"] - metrics["ttft_ms"]["p50"]) < 5


@pytest.mark.timing
def test_a_slow_server_makes_arrivals_late_and_response_time_exceed_service_time(
    mock_server: Callable[..., Mock], in_process: Callable[..., Run], tmp_path: Path
) -> None:
    mock = mock_server("--ttft", "const:400ms", "--itl", "const:2ms", "--chunks", "const:3")
    run = in_process(
        f"--host {mock.url} {NLX} -u 2 -r 2 --think-time 0",
        "--arrival-rate", "constant:20", "--max-queue-wait", "2",
        "--conversations", one_turn_conversations(tmp_path),
        until=after(seconds=5), env=KEYED,
    )  # fmt: skip
    summary = run.summary()
    counts = summary["counts"]
    # Two users serve ~5 conversations a second; 20 arrive: the rest wait, start late or are dropped.
    assert counts["arrivals"] >= 80
    assert counts["arrivals_late"] > 5 and counts["arrivals_dropped"] > 20
    started = counts["arrivals"] - counts["arrivals_dropped"] - counts["arrivals_cut"]
    assert counts["conversations_started"] == started
    service, response = summary["metrics"]["ttft_ms"], summary["metrics"]["ttft_response_ms"]
    assert service["p50"] < 450  # the server itself answers in ~400 ms
    assert response["p50"] > service["p50"] + 500  # but the users waited for a free slot first
    assert response["max"] <= 2000 + service["max"] + 100  # nobody waited past --max-queue-wait


def test_bad_arrival_rate_is_one_line() -> None:
    message = config_error("--arrival-rate lots")
    assert "--arrival-rate 'lots' is not a rate" in message and "\n" not in message
