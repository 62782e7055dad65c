"""Headless CI runs end in a verdict: thresholds, exit code, junit.xml, Markdown summary.

The exit code of the real `locust` command, and what it prints, come from the standard run (whose
error-rate threshold fails); the other cases run in-process and read the exit code `locust` would
pick (tests/harness.py).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from tests.conftest import FAST, NLX, STANDARD_FAILING, STANDARD_THRESHOLDS, TEST_KEY, StandardRun
from tests.harness import Run, config_error, turns_at_least
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
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run]
) -> None:
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
