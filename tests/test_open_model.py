"""--arrival-rate: conversations arrive on schedule; late and dropped arrivals and response time."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from tests.conftest import KEYED, NLX, LocustRun, Mock, locust_env


def one_turn_conversations(tmp_path: Path) -> str:
    path = tmp_path / "one.yaml"
    path.write_text("scenarios:\n  - name: one\n    turns: [hello]\n", encoding="utf-8")
    return str(path)


def test_arrivals_follow_the_rate_when_the_server_keeps_up(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun], tmp_path: Path
) -> None:
    mock = mock_server("--ttft", "const:20ms", "--itl", "const:2ms", "--chunks", "const:3")
    run = run_locust(
        f"--host {mock.url} {NLX} -u 40 -r 40 -t 6s --think-time 0 --stop-timeout 30 --arrival-rate 20",
        "--conversations", one_turn_conversations(tmp_path), env=KEYED,
    )  # fmt: skip
    assert run.returncode == 0, run.output[-3000:]
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


def test_a_slow_server_makes_arrivals_late_and_response_time_exceed_service_time(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun], tmp_path: Path
) -> None:
    mock = mock_server("--ttft", "const:400ms", "--itl", "const:2ms", "--chunks", "const:3")
    run = run_locust(
        f"--host {mock.url} {NLX} -u 2 -r 2 -t 5s --think-time 0",
        "--arrival-rate", "constant:20", "--max-queue-wait", "2",
        "--conversations", one_turn_conversations(tmp_path), env=KEYED,
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


def test_bad_arrival_rate_is_one_line(run_locust: Callable[..., LocustRun]) -> None:
    run = run_locust("-t 5s --arrival-rate lots", env=locust_env())
    assert run.returncode == 2 and "--arrival-rate 'lots' is not a rate" in run.stderr
