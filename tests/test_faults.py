"""Fault injection: the mock's --fault options, each fault as the client reports it, and one real
Locust run that loses nothing under every fault at once."""

from __future__ import annotations

import random
import re
import shlex
import subprocess
import sys
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from loadtest.catalog import Failure, http_failure
from loadtest.client import TurnResult, make_client, stream_turn
from loadtest.mock import parse_config
from loadtest.mock.command import main as mock_main
from loadtest.mock.faults import ALIASES, BY_NAME, FAULT_KINDS, FAULTS, Fault, FaultPlan, parse_faults
from loadtest.options import TRANSPORTS
from tests.conftest import (
    KEYED,
    NLX,
    Finish,
    LocustRun,
    background,
    start_background_mock,
    start_locust,
    stopping_mock,
)
from tests.harness import wait_for
from tests.mockthread import KEY, ThreadedMock, mock_in_thread

FAST = ("--ttft", "uniform:5ms:15ms", "--itl", "uniform:1ms:3ms", "--chunks", "uniform:2:6")
# Users get time to finish their conversation at the stop, so no turn is cut and counts match exactly.
RUN = f"{NLX} -u 3 -r 3 -t 2s --think-time 0 --read-timeout 1 --stop-timeout 10"
CHANNEL_PATH = "/dep1/web-en-US/chat/completions"
# Turns of one conversation per fault; the client waits this long for more of a stalled stream.
TURNS = 3
IDLE_TIMEOUT_S = 0.3

# What the client's detail of each failed turn says (HTTP faults: "HTTP {status}").
EXAMPLE = {
    "http_429": "fault injected by the mock",
    "http_500": "fault injected by the mock",
    "reset": "reset by peer",
    "truncate": "peer closed connection without sending complete message body",
    "stall": f"stalled for {IDLE_TIMEOUT_S}",
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
    assert parse_faults([f"stall={text}"]).rates["stall"] == pytest.approx(rate)


def test_fault_options_and_lists_combine() -> None:
    plan = parse_faults(["http_429=10%", "disconnect=2%", "http_500=5%, stall=0.01"])
    assert plan.rates == pytest.approx({"http_429": 0.1, "truncate": 0.02, "http_500": 0.05, "stall": 0.01})
    config = parse_config(
        ["--fault", "http_429=10%", "--faults", "reset=1%,truncate=1%", "--stall-seconds", "3"], {}
    )
    assert config.faults.rates == pytest.approx({"http_429": 0.1, "reset": 0.01, "truncate": 0.01})
    assert config.stall_s == 3.0
    assert parse_config([], {}).faults.rates == {} and parse_config([], {}).stall_s == 120.0


def test_cut_is_still_accepted_for_truncate() -> None:
    assert parse_faults(["cut=3%"]).rates == pytest.approx({"truncate": 0.03})
    assert ALIASES == {"cut": "truncate", "disconnect": "truncate"}
    # The client's `cut` (a turn stopped by the end of the run) is no fault's name.
    assert Failure.CUT not in FAULT_KINDS


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--fault", "http_418=5%"], "unknown fault kind 'http_418': use one of http_400"),
        (["--fault", "stall=5x"], "fault stall: bad rate '5x' is not a share: write a percentage like 10%"),
        (["--fault", "stall=150%"], "bad rate '150%' is over 100%"),
        (["--fault", "stall=-1%"], "bad rate '-1%' is not a share"),
        (["--fault", "stall"], "use KIND=RATE"),
        (["--fault", "cut=1%", "--fault", "disconnect=1%"], "fault truncate is given twice"),
        (["--faults", "http_500=60%,http_503=50%"], "more than 100%"),
        (["--stall-seconds", "0"], "--stall-seconds"),
    ],
)
def test_bad_faults_exit_2_with_one_line(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert mock_main(args) == 2
    out, err = capsys.readouterr()
    [line] = err.splitlines()
    assert out == "" and line.startswith("loadtest mock: error: ") and needle in line, line


def test_bad_faults_on_the_command_line_exit_2_with_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.mock", "--fault", "http_418=5%"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("loadtest mock: error: --fault: unknown fault kind 'http_418'"), line


def test_draws_follow_the_rates_with_at_most_one_fault_per_request() -> None:
    plan = FaultPlan({"http_429": 0.1, "truncate": 0.3, "stall": 0.0})
    first, second = random.Random("7:faults"), random.Random("7:faults")
    assert [plan.draw(first) for _ in range(200)] == [plan.draw(second) for _ in range(200)]
    rng = random.Random(1)
    counts = Counter(plan.draw(rng) for _ in range(20_000))
    assert set(counts) == {None, "http_429", "truncate"}
    assert counts["http_429"] / 20_000 == pytest.approx(0.1, abs=0.01)
    assert counts["truncate"] / 20_000 == pytest.approx(0.3, abs=0.015)
    assert all(FaultPlan({"reset": 1.0}).draw(rng) == "reset" for _ in range(100))
    assert FaultPlan().draw(rng) is None and not FaultPlan({"reset": 0.0})


def test_every_fault_kind_has_a_client_kind_or_fails_no_turn() -> None:
    """Each fault names the failed-turn kind the client reports for it: a `Failure`, or the
    `http_failure` of its status; only idle_close and keepalive_timeout fail no turn."""
    assert list(FAULT_KINDS) == list(BY_NAME) == [fault.name for fault in FAULTS]
    for fault in FAULTS:
        if fault.status is not None:
            assert fault.name == fault.fails_as == http_failure(fault.status)
        elif fault.fails_as is not None:
            assert fault.fails_as in set(Failure) and fault.fails_as != Failure.CUT, fault
    assert [fault.name for fault in FAULTS if fault.fails_as is None] == ["idle_close", "keepalive_timeout"]
    assert set(ALIASES.values()) <= set(FAULT_KINDS) and not set(ALIASES) & set(FAULT_KINDS)


# --- each fault, through the client, against the mock in a thread ------------------------------


def converse(mock: ThreadedMock, turns: int = TURNS) -> list[TurnResult]:
    """One conversation of `turns` turns through `stream_turn`, carrying the replies it was sent."""
    messages: list[dict[str, str]] = []
    results = []
    with make_client(read_timeout=10) as client:
        for i in range(turns):
            messages.append({"role": "user", "content": f"turn {i}"})
            body = {"model": "nlx:faulty", "messages": messages, "stream": True}
            result = stream_turn(
                client, mock.url + CHANNEL_PATH, body, api_key=KEY, idle_timeout=IDLE_TIMEOUT_S
            )
            if result.ok:
                messages.append({"role": "assistant", "content": result.content})
            results.append(result)
    return results


def check_nothing_lost(results: list[TurnResult], served: dict[str, Any]) -> None:
    """Every request the client made, chunk and character it got, is one the mock counts it sent."""
    assert served["requests"] == len(results)
    assert served["turns_completed"] == sum(result.ok for result in results)
    assert served["chunks"] == sum(result.chunks for result in results)
    assert served["chars"] == sum(len(result.content) for result in results)
    assert served["history_mismatches"] == 0


@pytest.mark.parametrize("fault", [f for f in FAULTS if f.fails_as is not None], ids=lambda f: f.name)
def test_each_fault_at_100_percent_is_counted_as_its_kind(fault: Fault) -> None:
    with mock_in_thread(*FAST, "--stall-seconds", "30", "--fault", f"{fault.name}=100%") as mock:
        results = converse(mock)
        served = mock.stats()
    check_nothing_lost(results, served)
    assert [result.kind for result in results] == [fault.fails_as] * TURNS
    assert served["faults"] == {fault.name: TURNS}
    example = EXAMPLE.get(fault.name, f"HTTP {fault.status}")
    assert all(example in result.detail for result in results), results[0].detail
    if fault.status is not None:
        assert served["status"][str(fault.status)] == TURNS


def test_idle_close_fails_no_turn_and_every_turn_gets_a_new_connection() -> None:
    with mock_in_thread(*FAST, "--fault", "idle_close=100%") as mock:
        results = converse(mock)
        served = mock.stats()
    check_nothing_lost(results, served)
    assert all(result.ok and result.done for result in results)
    assert served["faults"] == {"idle_close": TURNS}
    assert served["connections"] == served["requests"] == TURNS
    assert served["history_messages"] == 0 + 1 + 2  # each turn carried the replies before it


# --- keepalive_timeout: connections closed while idle, without a word ----------------------------

KEEPALIVE_S = 0.2


def closed_idle(mock: ThreadedMock, count: int) -> bool:
    return bool(mock.stats()["faults"].get("keepalive_timeout") == count)


def converse_with_pauses(mock: ThreadedMock, transport: str, turns: int = TURNS) -> list[TurnResult]:
    """A conversation whose think time lasts until the mock has closed the connection the last turn
    left idle (so, longer than its keep-alive timeout)."""
    messages: list[dict[str, str]] = []
    results = []
    with make_client(read_timeout=10, transport=transport) as client:
        for i in range(turns):
            if i:
                assert wait_for(partial(closed_idle, mock, i), 10), mock.stats()
            messages.append({"role": "user", "content": f"turn {i}"})
            body = {"model": "nlx:faulty", "messages": messages, "stream": True}
            result = stream_turn(client, mock.url + CHANNEL_PATH, body, api_key=KEY)
            if result.ok:
                messages.append({"role": "assistant", "content": result.content})
            results.append(result)
    return results


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_connection_closed_while_idle_fails_no_turn(transport: str) -> None:
    with mock_in_thread(*FAST, "--fault", f"keepalive_timeout={KEEPALIVE_S * 1000:g}ms") as mock:
        results = converse_with_pauses(mock, transport)
        served = mock.stats()
    check_nothing_lost(results, served)
    assert all(result.ok and result.done for result in results), [r.detail for r in results]
    # Each pause outlasted the timeout: the mock closed the idle connection, the client noticed
    # before reusing it and opened a new one.
    assert served["connections"] == served["requests"] == TURNS
    assert served["faults"]["keepalive_timeout"] >= TURNS - 1
    assert served["history_messages"] == 0 + 1 + 2


# What each transport's check of an idle connection is: when it says "still open", the turn goes out
# on the closed connection.
STALE_CHECK = {
    "gevent": ("loadtest.transport._still_open", lambda sock: True),
    "httpx": ("httpcore._sync.http11.HTTP11Connection.has_expired", lambda self: False),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_without_the_check_before_reuse_the_closed_connection_fails_the_turn(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test above would pass without a stale connection in it: this shows it has one.
    monkeypatch.setattr(*STALE_CHECK[transport])
    with mock_in_thread(*FAST, "--fault", f"keepalive_timeout={KEEPALIVE_S * 1000:g}ms") as mock:
        results = converse_with_pauses(mock, transport, turns=2)
    assert results[0].ok
    assert results[1].kind == "disconnect", results[1]


def test_keepalive_timeout_takes_a_duration_beside_the_rates() -> None:
    assert parse_faults(["keepalive_timeout=2s"]).keepalive_timeout_s == 2.0
    plan = parse_faults(["http_429=10%,keepalive_timeout=250ms"])
    assert plan.keepalive_timeout_s == 0.25 and plan.rates == {"http_429": 0.1}
    assert parse_faults([]).keepalive_timeout_s is None
    with pytest.raises(ValueError, match="takes a duration, not a rate"):
        FaultPlan({"keepalive_timeout": 0.5})


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("keepalive_timeout=10%", "fault keepalive_timeout: bad duration '10%': write a positive time"),
        ("keepalive_timeout=2", "bad duration '2'"),  # a bare number would be ms elsewhere, here a rate
        ("keepalive_timeout=0s", "bad duration '0s'"),
        ("keepalive_timeout=1s,keepalive_timeout=2s", "given twice"),
    ],
)
def test_a_bad_keepalive_timeout_names_the_fix(spec: str, needle: str) -> None:
    with pytest.raises(ValueError, match=re.escape(needle)):
        parse_faults([spec])


# --- real run: several faults at once -----------------------------------------------------------
# The one run through Locust: the plugin's counts and summary.json's errors add up to what the mock
# served, with every turn ending in a fault of its own, and Locust exits 1.

MIXED = ("http_429", "reset", "truncate", "stall", "error_event", "bad_json", "huge_event", "idle_close")


def check_summary_lost_nothing(summary: dict[str, Any], served: dict[str, Any]) -> None:
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


@background
def mixed_faults_run(folder: Path) -> Finish:
    """A real run against a mock with every mid-stream and answer fault at 10 %."""
    faults = ",".join(f"{kind}=10%" for kind in MIXED)
    mock = start_background_mock(*FAST, "--seed", "11", "--faults", faults)
    # Conversations go on after a failed turn, so later requests carry history around the faults.
    args = [*shlex.split(f"--host {mock.url} {RUN} -u 4 -r 4 -t 4s --on-turn-error continue")]
    run = start_locust(args, folder, env=KEYED)

    return stopping_mock(mock, lambda: (run(), mock.stats()))


def test_mixed_faults_are_all_counted_and_add_up(mixed_faults_run: tuple[LocustRun, dict[str, Any]]) -> None:
    run, served = mixed_faults_run
    assert run.returncode == 1, run.output[-3000:]  # Locust's exit code when requests failed
    assert "Traceback" not in run.output
    summary = run.summary()
    check_summary_lost_nothing(summary, served)
    injected = served["faults"]
    assert set(injected) == set(MIXED) and all(injected[kind] > 0 for kind in MIXED), injected
    expected: Counter[str] = Counter()
    for kind, n in injected.items():
        fails_as = BY_NAME[kind].fails_as
        if fails_as is not None:
            expected[fails_as] += n
    assert {e["kind"]: e["count"] for e in summary["errors"]} == dict(expected)
    assert all(e["example"] for e in summary["errors"])
    counts = summary["counts"]
    assert counts["turns_ok"] > 0 and counts["turns_failed"] == sum(expected.values())
    assert served["status"]["429"] == injected["http_429"]
    assert served["history_messages"] > 0  # later turns carried replies, and every one matched
