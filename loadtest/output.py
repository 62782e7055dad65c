"""Run output: summary.json and the files rendered from it, the console table and the exit code."""

from __future__ import annotations

import importlib.metadata
import sys
from datetime import UTC, datetime
from pathlib import Path

from loadtest import thresholds
from loadtest.health import HealthMonitor
from loadtest.recorder import TurnRecorder
from loadtest.report import build_summary, console_lines, write_run
from loadtest.report.schema import RunInfo, Summary
from loadtest.run import Run
from loadtest.settings import Settings

EXIT_THRESHOLDS_FAILED = 3  # also when --strict-client finds the client was the bottleneck


class RunOutput:
    """Builds a run's summary from what this process holds (merged from workers on a master) and
    writes every output from it."""

    def __init__(self, recorder: TurnRecorder, health: HealthMonitor) -> None:
        self.recorder = recorder
        self.health = health
        self.pending_console: list[str] = []

    def summary(
        self, run: Run, settings: Settings, *, host: str, uses_mock: bool, users: int, workers: int
    ) -> Summary:
        metrics = self.recorder.metrics
        ended = datetime.now(UTC)
        section: RunInfo = {
            "id": run.id,
            "started": run.started.isoformat(timespec="seconds"),
            "ended": ended.isoformat(timespec="seconds"),
            "duration_s": round((ended - run.started).total_seconds(), 1),
            "loadtest_version": _version("loadtest"),
            "locust_version": _version("locust"),
            "host": host,
            "deployment": settings.deployment,
            "channel": settings.channel,
            "mock": uses_mock,
            "users": run.peak_users or users,
            "workers": workers,
            "history": settings.history,
            "transport": settings.transport,
            "gc": settings.gc,
            "system_fingerprints": sorted(metrics.fingerprints),
        }
        if run.workers_without_final:
            section["workers_without_final_report"] = sorted(run.workers_without_final)
        summary = build_summary(metrics, section, run.users_by_interval)
        outcomes = thresholds.evaluate(settings.thresholds, summary)
        summary["thresholds"] = [o.to_json() for o in outcomes]
        summary["verdict"] = thresholds.verdict(outcomes)
        health = summary["client_health"] = self.health.summary()
        if health["bottleneck"] and settings.strict_client:
            summary["verdict"] = "fail"
        if run.aborted_by:
            section["aborted_by_threshold"] = run.aborted_by
        return summary

    def write(self, summary: Summary, settings: Settings) -> tuple[Path, int | None]:
        """Write the run folder; return it and the exit code the verdict sets (None: Locust's own
        any-failure rule decides)."""
        run_dir = write_run(settings.report_dir, summary["run"]["id"], summary)
        self.pending_console = console_lines(summary, run_dir)
        if not (settings.thresholds or settings.strict_client):
            return run_dir, None
        # With thresholds the verdict decides the exit code, not Locust's any-failure rule.
        return run_dir, EXIT_THRESHOLDS_FAILED if summary["verdict"] != "pass" else 0

    def print_console(self) -> None:
        """The exact percentiles, thresholds and verdict; a headless run prints them at quit, after
        Locust's own tables, so they are the last thing seen."""
        for line in self.pending_console:
            print(line, file=sys.stderr)
        self.pending_console = []


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
