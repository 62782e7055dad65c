"""Headless CI runs end in a verdict: thresholds, exit code, junit.xml, Markdown summary."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from tests.conftest import FAST, NLX, TEST_KEY, LocustRun, Mock, locust_env


def test_passing_thresholds_exit_0_with_verdict_and_junit(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun], tmp_path: Path
) -> None:
    mock = mock_server(*FAST)
    step_summary = tmp_path / "step_summary.md"
    run = run_locust(
        f"--host {mock.url} {NLX} -u 4 -r 4 -t 2s --think-time 0 --stop-timeout 30",
        "--threshold", "ttft.p95<5s", "--threshold", "error_rate<1%",
        "--threshold", "ttft{turn=1}.p50 >= 20ms",
        env=locust_env(NLX_API_KEY=TEST_KEY, GITHUB_STEP_SUMMARY=str(step_summary)),
    )  # fmt: skip
    assert run.returncode == 0, run.output[-3000:]
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
    suite = ET.parse(run.report_dir / "latest" / "junit.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")  # type: ignore[assignment]
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "0"
    assert "ttft.p95<5s" in step_summary.read_text(encoding="utf-8")
    assert "verdict: PASS" in run.stderr
    health = summary["client_health"]
    assert health["judged"] is False and health["bottleneck"] is False and health["loop_lag_ms"]["count"] > 0
    assert health["pool_wait_ms"]["count"] == summary["counts"]["turns"]
    report = (run.report_dir / "latest" / "report.html").read_text(encoding="utf-8")
    assert "Client health" in report and "too short to judge" in report


def test_failing_threshold_exits_3_and_says_why(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun], tmp_path: Path
) -> None:
    mock = mock_server(*FAST)
    run = run_locust(
        f"--host {mock.url} {NLX} -u 2 -r 2 -t 2s --think-time 0 --stop-timeout 30",
        "--threshold", "ttft.p50<1ms", "--threshold", "error_rate<1%",
        env=locust_env(NLX_API_KEY=TEST_KEY),
    )  # fmt: skip
    assert run.returncode == 3, run.output[-3000:]
    summary = run.summary()
    assert summary["verdict"] == "fail"
    first, second = summary["thresholds"]
    assert first["passed"] is False and first["observed"] >= 20.0
    assert second["passed"] is True
    suite = ET.parse(run.report_dir / "latest" / "junit.xml").getroot()
    failures = [case for case in suite.iter("testcase") if case.find("failure") is not None]
    assert [case.get("name") for case in failures] == ["ttft.p50<1ms"]
    assert "❌" in (run.report_dir / "latest" / "summary.md").read_text(encoding="utf-8")
    assert "threshold FAIL: ttft.p50<1ms" in run.stderr


def test_thresholds_turn_failures_into_a_pass_when_they_allow_them(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun]
) -> None:
    mock = mock_server(*FAST)
    run = run_locust(
        f"--host {mock.url} {NLX} -u 2 -r 2 -t 1s --think-time 0.05",
        "--threshold", "error_rate<=100%",
        env=locust_env(NLX_API_KEY="wrong-key"),
    )  # fmt: skip
    summary = run.summary()
    assert summary["counts"]["turns_failed"] > 0
    assert run.returncode == 0  # the thresholds, not Locust's any-failure rule, decide
    assert summary["thresholds"][0]["observed"] == 1.0


def test_threshold_abort_stops_the_run_early(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun]
) -> None:
    mock = mock_server(*FAST)
    run = run_locust(
        f"--host {mock.url} {NLX} -u 2 -r 2 -t 5m --think-time 0 --threshold-abort --threshold-warmup 0",
        "--threshold", "ttft.max<1ms",
        env=locust_env(NLX_API_KEY=TEST_KEY),
        timeout=90,  # without the abort the run would last five minutes
    )  # fmt: skip
    assert run.returncode == 3, run.output[-3000:]
    summary = run.summary()
    assert summary["run"]["aborted_by_threshold"] == "ttft.max<1ms"
    assert summary["verdict"] == "fail"


def test_thresholds_from_the_environment(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun]
) -> None:
    mock = mock_server(*FAST)
    run = run_locust(
        f"--host {mock.url} {NLX} -u 1 -r 1 -t 1s --think-time 0 --stop-timeout 30",
        env=locust_env(NLX_API_KEY=TEST_KEY, LOADTEST_THRESHOLDS="ttft.p99<10s; turn.max<10s"),
    )
    assert run.returncode == 0, run.output[-3000:]
    assert [t["expr"] for t in run.summary()["thresholds"]] == ["ttft.p99<10s", "turn.max<10s"]


def test_malformed_threshold_is_one_line_at_start(run_locust: Callable[..., LocustRun]) -> None:
    run = run_locust("-t 5s --threshold ttft.p97<800ms", env=locust_env())
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if line.startswith("loadtest: error:")]
    assert len(errors) == 1 and "p97" in errors[0], run.stderr[-2000:]
    assert "Traceback" not in run.output
