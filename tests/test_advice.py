"""Warnings at start (options with no effect) and at the end (what the verdict does not show), from
settings built as Locust parses the options, in-process."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import configargparse
import pytest

from loadtest.advice import end_warnings, start_warnings
from loadtest.options import add_arguments
from loadtest.settings import API_KEY_ENV, Settings, from_options
from tests.conftest import LOCUSTFILE, TEST_KEY

MOCK = "http://127.0.0.1:1"
HOST = "https://apps.nlx.ai/v1"
NLX = ("--nlx-deployment", "d", "--nlx-channel", "web-en-US")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No LOADTEST_* or key variable of the caller's shell, and a fresh folder for --report-dir."""
    for name in list(os.environ):
        if name.startswith(("NLX_", "LOADTEST_", "OPENAI_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


def parse_options(*args: str) -> argparse.Namespace:
    parser = configargparse.ArgumentParser(add_help=False, default_config_files=[])
    add_arguments(parser)
    options = parser.parse_args(list(args), env_vars={})
    options.locustfile = str(LOCUSTFILE)
    return options


def run(*args: str, host: str | None = None) -> tuple[argparse.Namespace, Settings]:
    """Options and settings of a run against the mock, or against `host` with a key."""
    options = parse_options(*args)
    if host is None:
        return options, from_options(options, MOCK, uses_mock=True)
    os.environ[API_KEY_ENV] = TEST_KEY
    return options, from_options(options, host, uses_mock=False)


def warned_at_start(
    *args: str, host: str | None = None, stages_shape: bool = False, run_time_s: float | None = 60.0
) -> list[str]:
    options, settings = run(*args, host=host)
    return start_warnings(options, settings, stages_shape=stages_shape, run_time_s=run_time_s)


# -- at start -----------------------------------------------------------------------------------------


def test_a_plain_run_has_no_warning() -> None:
    assert warned_at_start() == []
    assert (
        warned_at_start("--threshold", "ttft.p95<1s", "--threshold-abort", "--threshold-warmup", "10") == []
    )
    assert warned_at_start(*NLX, host=HOST) == []


def test_stages_without_a_stages_shape() -> None:
    (line,) = warned_at_start("--stages", "1m:10")
    assert line.startswith("--stages has no effect: this locustfile has no StagesShape")
    assert "locustfiles/ramp.py" in line
    assert warned_at_start("--stages", "1m:10", stages_shape=True) == []


def test_threshold_abort_without_a_threshold() -> None:
    (line,) = warned_at_start("--threshold-abort")
    assert line.startswith("--threshold-abort has no effect without a threshold: add one")


def test_mock_options_with_a_host() -> None:
    (line,) = warned_at_start(*NLX, "--mock-options", "--ttft const:1ms", host=HOST)
    assert line.startswith("--mock-options has no effect with --host: the built-in mock is not started")
    assert warned_at_start("--mock-options", "--ttft const:1ms") == []  # the mock took them


@pytest.mark.parametrize("given", [("--threshold", ""), ("--threshold", " ; "), ("--threshold", "  ")])
def test_an_empty_threshold(given: tuple[str, ...]) -> None:
    (line,) = warned_at_start(*given)
    assert line.startswith("--threshold '' is empty and checks nothing: give a rule")


def test_an_empty_threshold_among_others_is_still_named() -> None:
    lines = warned_at_start("--threshold", "ttft.p95<1s", "--threshold", "")
    assert [line.split(":")[0] for line in lines] == ["--threshold '' is empty and checks nothing"]


def test_a_blank_threshold_field_of_the_web_ui_is_no_threshold_given() -> None:
    options, settings = run()
    options.threshold = ""  # the web UI's form leaves a blank field as one empty string
    assert start_warnings(options, settings, stages_shape=False, run_time_s=None) == []


@pytest.mark.parametrize(("warmup", "run_time_s"), [("30", 20.0), ("20", 20.0), ("45", 45.0)])
def test_a_warmup_not_shorter_than_the_run(warmup: str, run_time_s: float) -> None:
    args = ("--threshold", "ttft.p95<1s", "--threshold-abort", "--threshold-warmup", warmup)
    (line,) = warned_at_start(*args, run_time_s=run_time_s)
    assert line.startswith(f"--threshold-warmup {float(warmup):.0f} s is not shorter than the run ")
    assert line.endswith("pass a shorter --threshold-warmup or a longer -t")


def test_the_default_warmup_counts_too() -> None:
    (line,) = warned_at_start("--threshold", "ttft.p95<1s", "--threshold-abort", run_time_s=8.0)
    assert line.startswith("--threshold-warmup 30 s is not shorter than the run (8 s)")


@pytest.mark.parametrize(
    ("args", "run_time_s"),
    [
        (("--threshold", "ttft.p95<1s", "--threshold-warmup", "60"), 30.0),  # no --threshold-abort
        (("--threshold", "ttft.p95<1s", "--threshold-abort"), None),  # no -t: runs until stopped
        (("--threshold", "ttft.p95<1s", "--threshold-abort", "--threshold-warmup", "29.9"), 30.0),
    ],
)
def test_a_warmup_that_matters_is_no_warning(args: tuple[str, ...], run_time_s: float | None) -> None:
    assert warned_at_start(*args, run_time_s=run_time_s) == []


def test_every_start_warning_at_once() -> None:
    lines = warned_at_start(
        *NLX,
        *("--stages", "1m:10", "--threshold", "", "--threshold-abort", "--mock-options", "--rps 1"),
        host=HOST,
    )
    assert [line.split(" ")[0] for line in lines] == [
        "--stages",
        "--threshold",
        "--threshold-abort",
        "--mock-options",
    ]
    assert all("\n" not in line for line in lines)


def test_no_usage_where_it_changes_nothing() -> None:
    (line,) = warned_at_start("--no-usage")
    assert line == "--no-usage has no effect with --api nlx: drop it"
    assert warned_at_start("--api", "openai", "--no-usage") == []


@pytest.mark.parametrize("args", [(), ("--api", "openai", "--no-usage")])
def test_a_token_threshold_without_usage_can_only_fail(args: tuple[str, ...]) -> None:
    lines = warned_at_start(*args, "--threshold", "tpot.p95<50ms", "--threshold", "ttft.p95<1s")
    [line] = [line for line in lines if line.startswith("--threshold")]
    assert line.startswith("--threshold 'tpot.p95<50ms' needs token usage and can only fail with no data")
    assert warned_at_start("--api", "openai", "--threshold", "output_tps.p50>20") == []


# -- at the end ---------------------------------------------------------------------------------------


def summary(ok: int, failed: int, *, lasted: float = 60.0, planned: float | None = 60.0) -> dict[str, Any]:
    return {
        "schema": "loadtest.summary/1",
        "metrics": {},
        "counts": {"turns": ok + failed + 2, "turns_ok": ok, "turns_failed": failed, "turns_cut": 2},
        "run": {"duration_s": lasted, "planned_duration_s": planned, "stopped_by": "time"},
    }


def warned_at_end(got: dict[str, Any], *args: str) -> list[str]:
    return end_warnings(got, run(*args)[1])


def test_failed_turns_that_no_threshold_checks() -> None:
    (line,) = warned_at_end(summary(4, 9), "--threshold", "ttft.p95<5s")
    assert line == "9 of 13 turns failed and no threshold checks errors: add --threshold 'error_rate<1%'"


@pytest.mark.parametrize(
    ("got", "args"),
    [
        (summary(4, 9), ()),  # no threshold: the failed turns fail the run themselves
        (summary(4, 9), ("--threshold", "ttft.p95<5s", "--threshold", "error_rate<50%")),
        (summary(4, 9), ("--threshold", "conversation_success>=90%")),
        (summary(4, 9), ("--threshold", "error_rate{scenario=booking}<1%")),
        (summary(13, 0), ("--threshold", "ttft.p95<5s")),
        ({"schema": "loadtest.summary/1", "metrics": {}}, ("--threshold", "ttft.p95<5s")),
    ],
)
def test_failed_turns_checked_or_none_is_no_warning(got: dict[str, Any], args: tuple[str, ...]) -> None:
    assert warned_at_end(got, *args) == []


def test_a_run_shorter_than_the_warmup_never_armed_the_abort() -> None:
    # planned for 60 s, stopped after 12: the start saw nothing wrong
    args = ("--threshold", "error_rate<1%", "--threshold-abort")
    (line,) = warned_at_end(summary(10, 0, lasted=12.0, planned=60.0), *args)
    assert line == (
        "the run lasted 12 s, less than --threshold-warmup 30 s: "
        "--threshold-abort never checked the thresholds; lower --threshold-warmup or run longer"
    )
    (line,) = warned_at_end(summary(10, 0, lasted=2.5, planned=None), *args, "--threshold-warmup", "5")
    assert line.startswith("the run lasted 2.5 s, less than --threshold-warmup 5 s")


@pytest.mark.parametrize(
    ("got", "args"),
    [
        (summary(10, 0, lasted=31.0), ("--threshold", "error_rate<1%", "--threshold-abort")),
        (summary(10, 0, lasted=12.0), ("--threshold", "error_rate<1%")),  # no --threshold-abort
        (summary(10, 0, lasted=12.0), ("--threshold-abort",)),  # no threshold: said at start
        # planned within the warm-up: said at start, not twice
        (summary(10, 0, lasted=12.0, planned=20.0), ("--threshold", "error_rate<1%", "--threshold-abort")),
        (summary(10, 0, lasted=12.0) | {"run": {}}, ("--threshold", "error_rate<1%", "--threshold-abort")),
    ],
)
def test_an_abort_that_could_arm_is_no_warning(got: dict[str, Any], args: tuple[str, ...]) -> None:
    assert warned_at_end(got, *args) == []


def test_both_end_warnings_at_once() -> None:
    got = summary(1, 3, lasted=5.0, planned=60.0)
    lines = warned_at_end(got, "--threshold", "ttft.p95<5s", "--threshold-abort")
    assert [line.split(" ")[:2] for line in lines] == [["3", "of"], ["the", "run"]]


def test_an_openai_run_that_got_no_usage_says_so_once() -> None:
    got = summary(10, 0)
    got["counts"]["turns_with_usage"] = 0
    (line,) = warned_at_end(got, "--api", "openai")
    assert line.startswith(
        "no turn's stream reported token usage (asked for with stream_options.include_usage)"
    )
    assert "no token figures" in line and line.endswith("(pass --no-usage to stop asking)")
    # Usage came, or was not asked for, or the API has none, or no turn succeeded: nothing to say.
    assert warned_at_end(got, "--api", "openai", "--no-usage") == []
    assert warned_at_end(got) == []
    assert (
        warned_at_end(summary(0, 0) | {"counts": {"turns_ok": 0, "turns_with_usage": 0}}, "--api", "openai")
        == []
    )
    got["counts"]["turns_with_usage"] = 1
    assert warned_at_end(got, "--api", "openai") == []
