"""summary.json: the data of a run, from which every other report is rendered."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from loadtest.metrics import Metrics
from loadtest.thresholds import format_observed

SCHEMA = "loadtest.summary/1"
LATEST = "latest"


def build_summary(
    metrics: Metrics, run: dict[str, Any], users: dict[int, int] | None = None
) -> dict[str, Any]:
    """The summary.json document; `users` maps time-series intervals to the users active in them."""
    return {
        "schema": SCHEMA,
        "run": run,
        "metrics": metrics.summary_metrics(),
        "counts": metrics.summary_counts(),
        "by_turn": metrics.summary_breakdown("turn"),
        "by_scenario": metrics.summary_breakdown("scenario"),
        "errors": metrics.summary_errors(),
        "protocol": dict(sorted(metrics.protocol.items())),
        "timeline": metrics.summary_timeline(users),
    }


def write_run(report_dir: Path, run_id: str, summary: dict[str, Any]) -> Path:
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
    link = report_dir / LATEST
    tmp = report_dir / f".{LATEST}.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(run_id, tmp)
    os.replace(tmp, link)


def console_lines(summary: dict[str, Any], run_dir: Path) -> list[str]:
    """A short table of the exact percentiles, for the end of a run."""
    head = "".join(f"{h:>10}" for h in ("p50", "p90", "p95", "p99", "p99.9", "max"))
    lines = [f"{'metric':<14}{'count':>8}{head}  (ms)"]
    labels = (
        ("ttft_ms", "TTFT"),
        ("turn_ms", "turn latency"),
        ("itl_ms", "inter-chunk"),
        ("conversation_ms", "conversation"),
    )
    for name, label in labels:
        s = summary["metrics"][name]
        cells = "".join(f"{_fmt(s[k]):>10}" for k in ("p50", "p90", "p95", "p99", "p999", "max"))
        lines.append(f"{label:<14}{s['count']:>8}{cells}")
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
        observed = format_observed(t["observed"], t.get("unit", "ms"))
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
    return "-" if value is None else f"{value:.1f}"
