"""Headless CI runs end in a verdict: thresholds, exit code, junit.xml, Markdown summary.

The exit code of the real `locust` command, and what it prints, come from the standard run (whose
error-rate threshold fails); the other cases run in-process and read the exit code `locust` would
pick (tests/harness.py).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import markupsafe
import pytest

from loadtest import verdict
from loadtest.watchers import ThresholdWatcher
from tests.conftest import (
    FAST,
    NLX,
    STANDARD_FAILING,
    STANDARD_THRESHOLDS,
    TEST_KEY,
    LocustRun,
    Mock,
    StandardRun,
)
from tests.harness import ROOT, Run, config_error, turns_at_least
from tests.mockthread import ThreadedMock


def test_passing_thresholds_exit_0_with_verdict_and_junit(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run], tmp_path: Path
) -> None:
    mock = thread_mock(*FAST)
    step_summary = tmp_path / "step_summary.md"
    run = in_process(
        f"--host {mock.url} {NLX} -u 4 -r 4 --think-time 0 --stop-timeout 30",
        "--threshold", "ttft.p95<5s", "--threshold", "error_rate<1%",
        "--threshold", "ttft{turn=1}.p50 >= 20ms",
        until=turns_at_least(20),
        env={"NLX_API_KEY": TEST_KEY, "GITHUB_STEP_SUMMARY": str(step_summary)},
    )  # fmt: skip
    assert run.exit_code == 0, run.output[-3000:]
    summary = run.summary()
    assert summary["verdict"] == "pass"
    assert [t["expr"] for t in summary["thresholds"]] == [
        "ttft.p95<5s",
        "error_rate<1%",
        "ttft{turn=1}.p50 >= 20ms",
    ]
    assert all(t["passed"] for t in summary["thresholds"])
    assert summary["thresholds"][0]["observed"] == summary["metrics"]["ttft_ms"]["p95"]
    assert summary["thresholds"][1]["observed"] == 0.0
    suite = ET.parse(run.latest("junit.xml")).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")  # type: ignore[assignment]
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "0"
    assert "ttft.p95<5s" in step_summary.read_text(encoding="utf-8")
    assert "verdict: PASS" in run.output
    health = summary["client_health"]
    assert health["judged"] is False and health["bottleneck"] is False and health["loop_lag_ms"]["count"] > 0
    assert health["pool_wait_ms"]["count"] == summary["counts"]["turns"]
    report = run.latest("report.html").read_text(encoding="utf-8")
    assert "Client health" in report and "too short to judge" in report


def test_failing_threshold_exits_3_and_says_why(standard_run: StandardRun) -> None:
    run = standard_run
    assert run.returncode == 3, run.output[-3000:]
    summary = run.summary()
    assert summary["verdict"] == "fail"
    assert [t["expr"] for t in summary["thresholds"]] == list(STANDARD_THRESHOLDS)
    passing, failing = summary["thresholds"]
    assert passing["passed"] is True and passing["observed"] == summary["metrics"]["ttft_ms"]["p95"]
    # The mock answered a fifth of the requests 401: the observed error rate is about that.
    assert failing["passed"] is False and 0.05 < failing["observed"] < 0.5
    suite = ET.parse(run.report_dir / "latest" / "junit.xml").getroot()
    failures = [case for case in suite.iter("testcase") if case.find("failure") is not None]
    assert [case.get("name") for case in failures] == [STANDARD_FAILING]
    assert "❌" in (run.report_dir / "latest" / "summary.md").read_text(encoding="utf-8")
    assert "❌" in run.step_summary.read_text(encoding="utf-8")
    assert f"threshold FAIL: {STANDARD_FAILING}" in run.stderr


def test_thresholds_turn_failures_into_a_pass_when_they_allow_them(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run]
) -> None:
    mock = thread_mock(*FAST)
    run = in_process(
        f"--host {mock.url} {NLX} -u 2 -r 2 --think-time 0.05",
        "--threshold", "error_rate<=100%",
        until=turns_at_least(failed=3),
        env={"NLX_API_KEY": "wrong-key"},
    )  # fmt: skip
    summary = run.summary()
    assert summary["counts"]["turns_failed"] > 0
    assert run.exit_code == 0  # the thresholds, not Locust's any-failure rule, decide
    assert summary["thresholds"][0]["observed"] == 1.0


def test_threshold_abort_stops_the_run_early(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The check comes every 5 s in a real run; what this test shows is the stop itself, not the period.
    monkeypatch.setattr(ThresholdWatcher, "interval_s", 0.1)
    mock = thread_mock(*FAST)
    run = in_process(
        f"--host {mock.url} {NLX} -u 2 -r 2 --think-time 0 --threshold-abort --threshold-warmup 0",
        "--threshold", "ttft.max<1ms",
        until=lambda _: False,  # only the abort ends this run
        env={"NLX_API_KEY": TEST_KEY},
        timeout=60,
    )  # fmt: skip
    assert run.exit_code == 3, run.output[-3000:]
    summary = run.summary()
    assert summary["run"]["aborted_by_threshold"] == "ttft.max<1ms"
    assert summary["verdict"] == "fail"


def test_thresholds_from_the_environment(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run]
) -> None:
    mock = thread_mock(*FAST)
    run = in_process(
        f"--host {mock.url} {NLX} -u 1 -r 1 --think-time 0 --stop-timeout 30",
        until=turns_at_least(3),
        env={"NLX_API_KEY": TEST_KEY, "LOADTEST_THRESHOLDS": "ttft.p99<10s; turn.max<10s"},
    )
    assert run.exit_code == 0, run.output[-3000:]
    assert [t["expr"] for t in run.summary()["thresholds"]] == ["ttft.p99<10s", "turn.max<10s"]


def test_malformed_threshold_is_one_line_at_start() -> None:
    message = config_error("--threshold ttft.p97<800ms")
    assert "p97" in message and "\n" not in message


# --- the one verdict, worked out from a summary (loadtest.verdict) ------------------------------------


def _summary(
    *,
    ok: int = 10,
    failed: int = 0,
    cut: int = 0,
    thresholds: list[dict[str, Any]] | None = None,
    run: dict[str, Any] | None = None,
    bottleneck: bool = False,
) -> dict[str, Any]:
    counts = {"turns": ok + failed + cut, "turns_ok": ok, "turns_failed": failed, "turns_cut": cut}
    counts |= {"conversations_started": 3}
    return {
        "schema": "loadtest.summary/1",
        "metrics": {},
        "counts": counts,
        "errors": [{"kind": "http_500", "count": failed, "example": "HTTP 500"}] if failed else [],
        "thresholds": thresholds or [],
        "run": {"stopped_by": "time", "duration_s": 30.0, "planned_duration_s": 30.0, **(run or {})},
        "client_health": {"bottleneck": bottleneck, "reasons": ["CPU p90 97%"] if bottleneck else []},
    }


PASSED = {"expr": "ttft.p95<800ms", "observed": 120.0, "passed": True, "unit": "ms"}
FAILED = {"expr": "error_rate<1%", "observed": 0.2, "passed": False, "unit": "ratio"}
NO_DATA = {"expr": "ttft.p95<800ms", "observed": None, "passed": False, "unit": "ms"}


def _kinds(judgement: verdict.Judgement) -> list[str]:
    return [r["kind"] for r in judgement.reasons]


@pytest.mark.parametrize(
    ("summary", "expected", "code", "kinds"),
    [
        (_summary(), "pass", 0, []),
        (_summary(failed=2, thresholds=[PASSED]), "pass", 0, []),
        (_summary(failed=2), "fail", 1, ["failed_turns"]),
        (_summary(failed=2, thresholds=[PASSED, FAILED]), "fail", 3, ["threshold"]),
        (_summary(ok=0, cut=2, thresholds=[NO_DATA]), "empty", 5, ["empty", "threshold"]),
        (_summary(ok=0), "empty", 5, ["empty"]),
        (_summary(run={"stopped_by": "signal", "signal": "SIGINT", "duration_s": 5.1}), "incomplete", 5,
         ["interrupted"]),
        (_summary(run={"stopped_by": "ui", "planned_duration_s": None}), "pass", 0, []),
        (_summary(run={"stopped_by": "signal", "planned_duration_s": None}), "pass", 0, []),
        (_summary(thresholds=[FAILED], run={"stopped_by": "signal", "duration_s": 5.0}), "fail", 3,
         ["threshold", "interrupted"]),
        (_summary(failed=3, run={"stopped_by": "signal", "duration_s": 5.0}), "fail", 1,
         ["failed_turns", "interrupted"]),
        (_summary(run={"workers_without_final_report": ["w2"]}), "incomplete", 5, ["workers_lost"]),
        # The last worker lost after the planned end: incomplete data, not a cut run.
        (_summary(run={"stopped_by": "workers_lost", "duration_s": 31.0,
                       "workers_lost": [{"id": "w1", "lost_after_s": 30.5}]}),
         "incomplete", 5, ["workers_lost"]),
        (_summary(ok=0, failed=20, run={"stopped_by": "refused", "refused": "HTTP 401: set NLX_API_KEY"}),
         "fail", 2, ["refused"]),
        (_summary(run={"stopped_by": "threshold_abort", "aborted_by_threshold": "error_rate<1%"},
                  thresholds=[FAILED]), "fail", 3, ["threshold"]),
    ],
)  # fmt: skip
def test_one_verdict_with_its_reasons_and_exit_code(
    summary: dict[str, Any], expected: str, code: int, kinds: list[str]
) -> None:
    judgement = verdict.judge(summary)
    assert (judgement.verdict, judgement.exit_code, _kinds(judgement)) == (expected, code, kinds)


def test_strict_client_fails_only_when_asked() -> None:
    summary = _summary(bottleneck=True)
    assert verdict.judge(summary).verdict == "pass"
    strict = verdict.judge(summary, strict_client=True)
    assert (strict.verdict, strict.exit_code, _kinds(strict)) == ("fail", 3, ["strict_client"])
    assert "CPU p90 97%" in strict.reasons[0]["text"]


def test_failed_turns_take_locusts_exit_code_on_error() -> None:
    assert verdict.judge(_summary(failed=1), exit_code_on_error=7).exit_code == 7


def test_reasons_say_what_to_do() -> None:
    [failed] = verdict.judge(_summary(failed=2)).reasons
    assert (
        failed["text"].startswith("2 of 12 turns failed (http_500 2)") and "error_rate<1%" in failed["text"]
    )
    [empty] = verdict.judge(_summary(ok=0, cut=4)).reasons
    assert "4 turns cut" in empty["text"] and "-t" in empty["text"]
    interrupted = verdict.judge(_summary(run={"stopped_by": "signal", "signal": "SIGINT", "duration_s": 5.1}))
    assert interrupted.reasons[0]["text"] == "stopped by SIGINT after 5.1 s of 30 s planned"


@pytest.mark.parametrize(
    ("run", "text"),
    [
        ({"stopped_by": "time", "duration_s": 30.0, "planned_duration_s": 30.0}, "ran 30 s as planned"),
        ({"stopped_by": "time", "duration_s": 12.5, "planned_duration_s": None}, "ran 12.5 s"),
        ({"stopped_by": "ui", "duration_s": 12.5, "planned_duration_s": None},
         "stopped by the web UI's Stop after 12.5 s"),
        ({"stopped_by": "signal", "signal": "SIGTERM", "duration_s": 3.0, "planned_duration_s": 60.0},
         "stopped by SIGTERM after 3 s of 60 s planned"),
        ({"stopped_by": "threshold_abort", "duration_s": 40.0, "aborted_by_threshold": "ttft.p95<1s"},
         "stopped after 40 s by --threshold-abort: ttft.p95<1s"),
        ({}, None),
    ],
)  # fmt: skip
def test_how_the_run_ended_in_one_line(run: dict[str, Any], text: str | None) -> None:
    assert verdict.stopped_text(run) == text


def test_the_readme_exit_code_table_is_generated() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert verdict.exit_codes_markdown() in readme, (
        "README.md's exit codes: paste verdict.exit_codes_markdown()"
    )


# --- every output tells the same story: exit code, summary.json, summary.md, junit.xml, console -------


def agreed_verdict(run: Run) -> dict[str, Any]:
    """The run's summary, once the exit code, summary.md, junit.xml, report.html and the console have
    been checked to say what summary.json says."""
    summary = run.summary()
    assert run.exit_code == summary["exit_code"], run.output[-3000:]
    word = summary["verdict"]
    markdown = run.latest("summary.md").read_text(encoding="utf-8")
    assert word in markdown.splitlines()[0].lower(), markdown[:300]
    suite = ET.parse(run.latest("junit.xml")).getroot()
    failing = [case for case in suite.iter("testcase") if case.find("failure") is not None]
    assert int(suite.get("failures") or 0) == len(failing) == len(summary["reasons"])
    assert f"verdict: {word.upper()}" in run.output
    report = run.latest("report.html").read_text(encoding="utf-8")
    for reason in summary["reasons"]:
        shown = reason["text"].split(" (observed")[0]
        assert shown in markdown and shown in run.output, shown
        assert str(markupsafe.escape(shown)) in report, shown
    for warning in summary.get("warnings", []):
        assert warning in run.output and warning in markdown
    return summary


def test_failed_turns_without_thresholds_fail_everywhere_with_exit_1(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run]
) -> None:
    mock = thread_mock(*FAST, "--fault", "http_500=30%")
    run = in_process(
        f"--host {mock.url} {NLX} -u 2 -r 2 --think-time 0",
        until=turns_at_least(10, ok=1, failed=2),
        env={"NLX_API_KEY": TEST_KEY},
    )
    summary = agreed_verdict(run)
    assert (summary["verdict"], run.exit_code) == ("fail", 1)
    assert [r["kind"] for r in summary["reasons"]] == ["failed_turns"]
    assert summary["run"]["stopped_by"] == "time" and summary["run"]["planned_duration_s"] is None


def test_failed_answer_checks_fail_the_run_as_failed_turns(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run], tmp_path: Path
) -> None:
    mock = thread_mock(*FAST)
    script = tmp_path / "check.yaml"
    script.write_text(
        "scenarios:\n  - name: digits\n    turns:\n      - user: hi\n        expect: {regex: '^\\d+$'}\n"
    )
    run = in_process(
        f"--host {mock.url} {NLX} -u 1 -r 1 --think-time 0 --conversations {script}",
        until=turns_at_least(3, failed=3),
        env={"NLX_API_KEY": TEST_KEY},
    )
    summary = agreed_verdict(run)
    assert (summary["verdict"], run.exit_code) == ("fail", 1)
    assert "assertion" in summary["reasons"][0]["text"]


def test_latency_only_thresholds_pass_with_a_warning_when_turns_failed(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run]
) -> None:
    mock = thread_mock(*FAST, "--fault", "http_500=50%")
    run = in_process(
        f"--host {mock.url} {NLX} -u 2 -r 2 --think-time 0",
        "--threshold", "ttft.p95<5s",
        until=turns_at_least(10, ok=1, failed=2),
        env={"NLX_API_KEY": TEST_KEY},
    )  # fmt: skip
    summary = agreed_verdict(run)
    assert (summary["verdict"], run.exit_code) == ("pass", 0)
    assert any("error_rate" in w for w in summary["warnings"]), summary["warnings"]


@pytest.mark.parametrize(
    ("args", "fault", "status", "fix"),
    [
        (NLX, "http_401=100%", "HTTP 401", "NLX_API_KEY"),
        ("--api openai --model m --path /v2/chat/completions", None, "HTTP 404", "--path"),
    ],
)
def test_a_refused_run_stops_at_once_with_exit_2_and_names_the_fix(
    thread_mock: Callable[..., ThreadedMock],
    in_process: Callable[..., Run],
    args: str,
    fault: str | None,
    status: str,
    fix: str,
) -> None:
    mock = thread_mock(*FAST, *(["--fault", fault] if fault else []))
    run = in_process(
        f"--host {mock.base if fault is None else mock.url} {args} -u 2 -r 2 --think-time 0",
        until=lambda environment: False,  # only fail-fast ends it
        env={"NLX_API_KEY": TEST_KEY},
    )
    summary = agreed_verdict(run)
    assert (summary["verdict"], run.exit_code, summary["run"]["stopped_by"]) == ("fail", 2, "refused")
    last = run.output.strip().splitlines()[-1]
    assert last.startswith("loadtest: error: ") and status in last and fix in last
    assert summary["counts"]["turns_failed"] >= 20 and summary["counts"]["turns_ok"] == 0


def test_no_fail_fast_goes_on_through_refusals(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run]
) -> None:
    mock = thread_mock(*FAST, "--fault", "http_401=100%")
    run = in_process(
        f"--host {mock.url} {NLX} -u 2 -r 2 --think-time 0 --no-fail-fast",
        until=turns_at_least(30, failed=30),
        env={"NLX_API_KEY": TEST_KEY},
    )
    summary = agreed_verdict(run)
    assert (summary["verdict"], run.exit_code, summary["run"]["stopped_by"]) == ("fail", 1, "time")


def test_a_run_without_a_finished_turn_is_empty_with_exit_5(
    mock_server: Callable[..., Mock], in_process: Callable[..., Run]
) -> None:
    # A mock process, not a thread: the stream it holds open is cut by the end of the run.
    mock = mock_server("--ttft", "uniform:20s:21s")
    run = in_process(
        f"--host {mock.url} {NLX} -u 1 -r 1 --think-time 0 --threshold ttft.p95<1s",
        until=lambda environment: mock.stats()["requests"] >= 1,
        env={"NLX_API_KEY": TEST_KEY},
    )
    summary = agreed_verdict(run)
    assert (summary["verdict"], run.exit_code) == ("empty", 5)
    assert [r["kind"] for r in summary["reasons"]] == ["empty", "threshold"]


def test_ctrl_c_before_the_planned_end_is_incomplete_with_exit_5(interrupted_run: LocustRun) -> None:
    run = interrupted_run
    summary = run.summary()
    assert (run.returncode, summary["verdict"], summary["exit_code"]) == (5, "incomplete", 5), run.stderr[
        -3000:
    ]
    section = summary["run"]
    assert (section["stopped_by"], section["signal"], section["planned_duration_s"]) == (
        "signal",
        "SIGINT",
        60,
    )
    assert section["duration_s"] < 60 and summary["counts"]["turns_ok"] > 0
    [reason] = summary["reasons"]
    assert reason["kind"] == "interrupted" and reason["text"].startswith("stopped by SIGINT after")
    # One shutdown: Locust's tables once, the signal named as it was, the verdict the last word.
    assert run.output.count("Response time percentiles") == 1
    assert "Got SIGINT signal" in run.stderr and "SIGTERM" not in run.stderr
    assert "verdict: INCOMPLETE" in run.stderr
    markdown = (run.report_dir / "latest" / "summary.md").read_text(encoding="utf-8")
    assert "incomplete" in markdown.splitlines()[0].lower() and reason["text"] in markdown
    junit = ET.parse(run.report_dir / "latest" / "junit.xml").getroot()
    assert junit.get("failures") == "1"  # the threshold held; the interruption is the failure


def test_the_command_line_exits_with_the_codes_of_the_table() -> None:
    from loadtest import cli

    assert (
        verdict.EXIT_BAD_INPUT.code,
        verdict.EXIT_REGRESSION.code,
    ) == (cli.EXIT_BAD_INPUT, cli.EXIT_REGRESSION)


def test_an_option_with_no_effect_is_a_warning_in_every_output(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run]
) -> None:
    mock = thread_mock(*FAST)
    run = in_process(
        f"--host {mock.url} {NLX} -u 1 -r 1 --think-time 0 --threshold-abort --stages 10s:2",
        until=turns_at_least(3),
        env={"NLX_API_KEY": TEST_KEY},
    )
    summary = agreed_verdict(run)  # each warning is in the console and summary.md too
    assert (summary["verdict"], run.exit_code) == ("pass", 0)
    warnings = summary["warnings"]
    assert any(w.startswith("--threshold-abort has no effect") for w in warnings), warnings
    assert any(w.startswith("--stages has no effect") for w in warnings), warnings
    assert "Warnings" in run.latest("report.html").read_text(encoding="utf-8")
