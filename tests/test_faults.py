"""Fault injection: the mock's --fault options, and real Locust runs that lose nothing under faults."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from loadtest.mock import parse_config
from loadtest.mock.faults import FAULT_KINDS, FaultPlan, parse_faults, parse_rate
from tests.conftest import KEYED, NLX, LocustRun, Mock

FAST = ("--ttft", "uniform:5ms:15ms", "--itl", "uniform:1ms:3ms", "--chunks", "uniform:2:6")
# Users get time to finish their conversation at the stop, so no turn is cut and counts match exactly.
RUN = f"{NLX} -u 3 -r 3 -t 2s --think-time 0 --read-timeout 1 --stop-timeout 10"

# The kind of failed turn the client reports for each fault (idle_close fails none).
CLIENT_KIND = {
    "http_400": "http_400",
    "http_401": "http_401",
    "http_429": "http_429",
    "http_500": "http_500",
    "http_503": "http_503",
    "reset": "disconnect",
    "cut": "disconnect",
    "stall": "idle_timeout",
    "content_type": "content_type",
    "error_body": "error_body",
    "error_event": "stream_error",
    "bad_json": "bad_json",
    "huge_event": "event_too_large",
}
EXAMPLE = {
    "http_429": "fault injected by the mock",
    "http_500": "fault injected by the mock",
    "reset": "reset by peer",
    "cut": "incomplete chunked read",
    "stall": "stalled for 1",
    "content_type": "text/html",
    "error_body": "fault injected by the mock",
    "error_event": "failed mid-stream",
    "bad_json": "not JSON",
    "huge_event": "exceeded 1048576 bytes",
}


# --- parsing and drawing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rate"), [("5%", 0.05), ("0.05", 0.05), ("100%", 1.0), ("0", 0.0), ("2.5%", 0.025)]
)
def test_rates_are_percentages_or_fractions(text: str, rate: float) -> None:
    assert parse_rate(text) == pytest.approx(rate)


def test_fault_options_and_lists_combine() -> None:
    plan = parse_faults(["http_429=10%", "disconnect=2%", "http_500=5%, stall=0.01"])
    assert plan.rates == pytest.approx({"http_429": 0.1, "cut": 0.02, "http_500": 0.05, "stall": 0.01})
    config = parse_config(
        ["--fault", "http_429=10%", "--faults", "reset=1%,cut=1%", "--stall-seconds", "3"], {}
    )
    assert config.faults.rates == pytest.approx({"http_429": 0.1, "reset": 0.01, "cut": 0.01})
    assert config.stall_s == 3.0
    assert parse_config([], {}).faults.rates == {} and parse_config([], {}).stall_s == 120.0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--fault", "http_418=5%"], "unknown fault kind 'http_418': use one of http_400"),
        (["--fault", "stall=5 %"], "bad rate"),
        (["--fault", "stall=150%"], "between 0 and 100%"),
        (["--fault", "stall=-1%"], "bad rate"),
        (["--fault", "stall"], "use KIND=RATE"),
        (["--fault", "cut=1%", "--fault", "disconnect=1%"], "given twice"),
        (["--faults", "http_500=60%,http_503=50%"], "more than 100%"),
        (["--stall-seconds", "0"], "--stall-seconds"),
    ],
)
def test_bad_faults_exit_2_with_one_line(args: list[str], needle: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.mock", *args], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("loadtest mock: error: ") and needle in line, line


def test_draws_follow_the_rates_with_at_most_one_fault_per_request() -> None:
    plan = FaultPlan({"http_429": 0.1, "cut": 0.3, "stall": 0.0})
    first, second = random.Random("7:faults"), random.Random("7:faults")
    assert [plan.draw(first) for _ in range(200)] == [plan.draw(second) for _ in range(200)]
    rng = random.Random(1)
    counts = Counter(plan.draw(rng) for _ in range(20_000))
    assert set(counts) == {None, "http_429", "cut"}
    assert counts["http_429"] / 20_000 == pytest.approx(0.1, abs=0.01)
    assert counts["cut"] / 20_000 == pytest.approx(0.3, abs=0.015)
    assert all(FaultPlan({"reset": 1.0}).draw(rng) == "reset" for _ in range(100))
    assert FaultPlan().draw(rng) is None and not FaultPlan({"reset": 0.0})


def test_every_fault_kind_has_a_client_kind_or_fails_no_turn() -> None:
    assert set(FAULT_KINDS) == {*CLIENT_KIND, "idle_close"}


# --- real runs: one fault at 100% ---------------------------------------------------------------


def check_nothing_lost(summary: dict[str, Any], served: dict[str, Any]) -> None:
    """Every turn is ok, failed or cut; every request, chunk and character the mock sent is counted."""
    counts = summary["counts"]
    assert counts["turns"] == counts["turns_ok"] + counts["turns_failed"] + counts["turns_cut"]
    assert counts["turns_cut"] == 0
    assert served["requests"] == counts["turns"]
    assert served["turns_completed"] == counts["turns_ok"]
    assert (served["chunks"], served["chars"]) == (counts["chunks"], counts["chars"])
    assert served["history_mismatches"] == 0
    errors = {e["kind"]: e["count"] for e in summary["errors"]}
    assert sum(errors.values()) == counts["turns_failed"] + counts["turns_cut"]


@pytest.mark.parametrize("fault", list(CLIENT_KIND))
def test_each_fault_at_100_percent_is_counted_as_its_kind(
    fault: str, mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun]
) -> None:
    mock = mock_server(*FAST, "--fault", f"{fault}=100%")
    run = run_locust(f"--host {mock.url} {RUN}", env=KEYED)
    assert run.returncode == 1, run.output[-3000:]  # Locust's exit code when requests failed
    assert "Traceback" not in run.output
    summary = run.summary()
    served = mock.stats()
    check_nothing_lost(summary, served)
    counts = summary["counts"]
    assert counts["turns_ok"] == 0 and counts["turns_failed"] > 0
    errors = {e["kind"]: e for e in summary["errors"]}
    kind = CLIENT_KIND[fault]
    assert set(errors) <= {kind, "cut"}, errors
    cut = errors["cut"]["count"] if "cut" in errors else 0
    assert served["faults"] == {fault: errors[kind]["count"] + cut}
    assert EXAMPLE.get(fault, "HTTP") in errors[kind]["example"]
    if fault.startswith("http_"):
        assert served["status"][fault[5:]] == served["faults"][fault]


def test_idle_close_fails_no_turn_and_every_turn_gets_a_new_connection(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun]
) -> None:
    mock = mock_server(*FAST, "--fault", "idle_close=100%")
    run = run_locust(f"--host {mock.url} {RUN}", env=KEYED)
    assert run.returncode == 0, run.output[-3000:]
    summary = run.summary()
    served = mock.stats()
    check_nothing_lost(summary, served)
    counts = summary["counts"]
    assert counts["turns"] == counts["turns_ok"] > 10 and summary["errors"] == []
    assert counts["conversations_started"] == counts["conversations_completed"]
    assert served["faults"] == {"idle_close": counts["turns"]}
    assert served["connections"] == served["requests"]


# --- real run: several faults at once -----------------------------------------------------------

MIXED = ("http_429", "reset", "cut", "stall", "error_event", "bad_json", "huge_event", "idle_close")


def test_mixed_faults_are_all_counted_and_add_up(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun]
) -> None:
    mock = mock_server(*FAST, "--seed", "11", "--faults", ",".join(f"{kind}=10%" for kind in MIXED))
    # Conversations go on after a failed turn, so later requests carry history around the faults.
    run = run_locust(f"--host {mock.url} {RUN} -u 4 -r 4 -t 4s --on-turn-error continue", env=KEYED)
    assert run.returncode == 1, run.output[-3000:]
    assert "Traceback" not in run.output
    summary = run.summary()
    served = mock.stats()
    check_nothing_lost(summary, served)
    injected = served["faults"]
    assert set(injected) == set(MIXED) and all(injected[kind] > 0 for kind in MIXED), injected
    expected: Counter[str] = Counter()
    for fault, n in injected.items():
        if fault in CLIENT_KIND:
            expected[CLIENT_KIND[fault]] += n
    assert {e["kind"]: e["count"] for e in summary["errors"]} == dict(expected)
    assert all(e["example"] for e in summary["errors"])
    counts = summary["counts"]
    assert counts["turns_ok"] > 0 and counts["turns_failed"] == sum(expected.values())
    assert served["status"]["429"] == injected["http_429"]
    assert served["history_messages"] > 0  # later turns carried replies, and every one matched
