"""summary.json: the data of a run, from which every other report is rendered."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, cast

import orjson

from loadtest import catalog
from loadtest.metrics import Metrics
from loadtest.report.schema import (
    SCHEMA,
    ErrorEntry,
    RunInfo,
    Summary,
    Timeline,
    format_observed,
    stat_of,
    stats_of,
)

__all__ = ["SCHEMA", "build_summary", "console_lines", "write_run"]

LATEST = "latest"
logger = logging.getLogger("loadtest")


def build_summary(
    metrics: Metrics, run: dict[str, Any] | RunInfo, users: dict[int, int] | None = None
) -> Summary:
    """The summary.json document; `users` maps time-series intervals to the users active in them.

    `run` is kept as given (not copied): the caller may add facts to it until the summary is written.
    `Metrics` returns plain dicts (it cannot import these types: the report package imports it), whose
    shapes `tests/test_schema.py` checks against the TypedDicts.
    """
    return {
        "schema": SCHEMA,
        "run": cast(RunInfo, run),
        "metrics": metrics.summary_metrics(),
        "counts": metrics.summary_counts(),
        "by_turn": metrics.summary_breakdown("turn"),
        "by_scenario": metrics.summary_breakdown("scenario"),
        "errors": cast(list[ErrorEntry], metrics.summary_errors()),
        "protocol": dict(sorted(metrics.protocol.items())),
        "timeline": cast(Timeline, metrics.summary_timeline(users)),
    }


def write_run(report_dir: Path, run_id: str, summary: Summary) -> Path:
    """Write summary.json, then report.html, junit.xml and summary.md rendered from it, into
    `{report_dir}/{run_id}/`; point `{report_dir}/latest` at the run; append the Markdown to
    `$GITHUB_STEP_SUMMARY` when that is set."""
    from loadtest.report.html import render_html
    from loadtest.report.junit import render_junit
    from loadtest.report.markdown import append_step_summary, render_markdown

    run_dir = report_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(run_dir / "summary.json", orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    markdown = render_markdown(summary)
    _write_atomic(run_dir / "report.html", render_html(summary).encode("utf-8"))
    _write_atomic(run_dir / "junit.xml", render_junit(summary).encode("utf-8"))
    _write_atomic(run_dir / "summary.md", markdown.encode("utf-8"))
    _point_latest(report_dir, run_id)
    append_step_summary(markdown)
    return run_dir


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _point_latest(report_dir: Path, run_id: str) -> None:
    """Point `latest` at the run. A `latest` that is not a link (a CI cache or artifact restored
    without the symlink) is left alone with a warning: the run's own files are written already."""
    link = report_dir / LATEST
    if link.exists() and not link.is_symlink():
        logger.warning(
            "loadtest: %s is not a link, left as it is: this run is in %s", link, report_dir / run_id
        )
        return
    tmp = report_dir / f".{LATEST}.{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(run_id, tmp)
        os.replace(tmp, link)
    except OSError as exc:
        logger.warning(
            "loadtest: cannot point %s at this run (%s): it is in %s", link, exc, report_dir / run_id
        )
        if tmp.is_symlink():
            tmp.unlink()


def console_lines(summary: Summary, run_dir: Path) -> list[str]:
    """A short table of the exact percentiles, for the end of a run."""
    # Fixed-width columns, so the numbers line up under their heading in a terminal.
    width = max(len(m.label) for m in catalog.TABLE_METRICS) + 2
    head = "".join(f"{s.label:>10}" for s in catalog.TABLE_STATS)
    lines = [f"{'metric':<{width}}{'count':>8}{head}  (ms)"]
    metrics = summary["metrics"]
    for metric in catalog.TABLE_METRICS:
        stats = stats_of(metrics, metric)
        if stats is None:
            continue
        cells = "".join(f"{_fmt(stat_of(metrics, metric, s)):>10}" for s in catalog.TABLE_STATS)
        lines.append(f"{metric.label:<{width}}{stats['count']:>8}{cells}")
    c = summary["counts"]
    lines.append(
        f"turns {c['turns']} (ok {c['turns_ok']}, failed {c['turns_failed']}, cut {c['turns_cut']}); "
        f"conversations {c['conversations_completed']}/{c['conversations_started']} completed "
        f"({c['conversations_failed']} failed); "
        f"{c['chunks']} chunks, {c['chars']} chars"
    )
    for err in summary["errors"]:
        lines.append(f"error {err['kind']}: {err['count']} (e.g. {err['example'][:120]})")
    for t in summary.get("thresholds", []):
        observed = format_observed(t["observed"], t["unit"])
        lines.append(f"threshold {'pass' if t['passed'] else 'FAIL'}: {t['expr']} (observed {observed})")
    health = summary.get("client_health")
    if health and health.get("bottleneck"):
        lines.append(f"client was the bottleneck: {'; '.join(health['reasons'])}")
    if summary.get("thresholds") or summary.get("verdict") == "fail":
        lines.append(f"verdict: {summary.get('verdict', 'pass').upper()}")
    lines.append(f"summary: {run_dir / 'summary.json'}")
    lines.append(f"report:  {run_dir / 'report.html'}")
    return lines


def _fmt(value: float | None) -> str:
    return "-" if value is None else catalog.format_number(value)
