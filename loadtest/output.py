"""Run output: summary.json and the files rendered from it, the console table and the exit code."""

from __future__ import annotations

import importlib.metadata
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtest import capacity, goodput, thresholds, verdict
from loadtest.advice import end_warnings
from loadtest.health import HealthMonitor
from loadtest.options import OPTIONS
from loadtest.recorder import TurnRecorder
from loadtest.report import build_summary, console_lines, write_run
from loadtest.report.schema import RunInfo, Summary
from loadtest.run import Run
from loadtest.settings import Settings


class RunOutput:
    """Builds a run's summary from what this process holds (merged from workers on a master) and
    writes every output from it."""

    def __init__(self, recorder: TurnRecorder, health: HealthMonitor) -> None:
        self.recorder = recorder
        self.health = health
        self.pending_console: list[str] = []

    def summary(
        self,
        run: Run,
        settings: Settings,
        *,
        host: str,
        uses_mock: bool,
        users: int,
        workers: int,
        options: Any = None,
        exit_code_on_error: int = verdict.EXIT_FAILED_TURNS.code,
        capacity_section: dict[str, Any] | None = None,
    ) -> Summary:
        """The run's summary, judged once: `capacity_section` is a capacity search's result, whose
        thresholds are those of its answer's step (over the whole run they mix every load tried)."""
        metrics = self.recorder.metrics
        ended = datetime.now(UTC)
        section: RunInfo = {
            "id": run.id,
            "started": run.started.isoformat(timespec="seconds"),
            "ended": ended.isoformat(timespec="seconds"),
            "duration_s": round((ended - run.started).total_seconds(), 1),
            "planned_duration_s": run.planned_s,
            "stopped_by": run.stopped_by or verdict.StoppedBy.TIME,
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
        if run.signal:
            section["signal"] = run.signal
        if run.refused:
            section["refused"] = run.refused
        if run.aborted_by:
            section["aborted_by_threshold"] = run.aborted_by
        if run.reset_at is not None:
            section["reset_at"] = run.reset_at.isoformat(timespec="seconds")
            section["measured_s"] = round(run.measured_s(), 1)
        section["settings"] = run_settings(options)
        if run.workers_lost:
            section["workers_lost"] = [
                {"id": worker, "lost_after_s": after} for worker, after in sorted(run.workers_lost.items())
            ]
        if run.workers_without_final:
            section["workers_without_final_report"] = sorted(run.workers_without_final)
        summary = build_summary(metrics, section, run.users_by_interval)
        outcomes = thresholds.evaluate(settings.thresholds, summary)
        summary["thresholds"] = [o.to_json() for o in outcomes]
        summary["client_health"] = self.health.summary()
        summary["goodput"] = goodput.section(summary, settings.goodput.exprs)
        if capacity_section is not None:
            summary["capacity"] = capacity_section
            at_answer = capacity.slo_outcomes(capacity_section)
            if at_answer is not None:
                summary["thresholds"] = at_answer
        verdict.apply(summary, strict_client=settings.strict_client, exit_code_on_error=exit_code_on_error)
        summary["warnings"] = [*run.warnings, *end_warnings(summary, settings)]
        return summary

    def write(self, summary: Summary, settings: Settings) -> Path:
        """Write the run folder and keep the console lines for the end of the run."""
        run_dir = write_run(settings.report_dir, summary["run"]["id"], summary)
        self.pending_console = console_lines(summary, run_dir)
        refused = summary["run"].get("refused")
        if refused:
            # As bad input at start: the last line names what to fix.
            self.pending_console.append(f"loadtest: error: {refused}")
        return run_dir

    def print_console(self) -> None:
        """The exact percentiles, thresholds and verdict; a headless run prints them at quit, after
        Locust's own tables, so they are the last thing seen."""
        for line in self.pending_console:
            print(line, file=sys.stderr)
        self.pending_console = []


def run_settings(options: Any) -> dict[str, Any]:
    """The value of every loadtest option the run went with, as given or defaulted, by its flag's
    name. Secrets are not options (keys come from the environment), so nothing here is one."""
    return {option.dest: _plain(option.raw(options)) for option in OPTIONS}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return str(value)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
