"""summary.json: the data of a run, from which every other report is rendered."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson

from loadtest import capacity, catalog, goodput
from loadtest.metrics import Metrics
from loadtest.report.schema import (
    SCHEMA,
    ErrorEntry,
    Reason,
    RunInfo,
    Summary,
    Timeline,
    TimeSplit,
    count_of,
    format_observed,
    per_second,
    stat_of,
    stats_of,
    table_metrics,
)

__all__ = [
    "SCHEMA",
    "RunVerdict",
    "build_summary",
    "console_lines",
    "one_example",
    "output_tokens_per_s",
    "run_verdict",
    "stream_lines",
    "verdict_lines",
    "write_run",
]

LATEST = "latest"
EXAMPLE_CHARS = 120
logger = logging.getLogger("loadtest")


def build_summary(
    metrics: Metrics, run: dict[str, Any] | RunInfo, users: dict[int, int] | None = None
) -> Summary:
    """The summary.json document; `users` maps time-series intervals to the users active in them.

    `run` is kept as given (not copied): the caller may add facts to it until the summary is written.
    `Metrics` returns plain dicts (it cannot import these types: the report package imports it), whose
    shapes `tests/test_schema.py` checks against the TypedDicts.
    """
    summary: Summary = {
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
    split = metrics.summary_time_split()
    if split:
        summary["time_split"] = cast(dict[str, TimeSplit], split)
    return summary


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


@dataclass(frozen=True, slots=True)
class RunVerdict:
    """The verdict of a run as every output shows it: console, summary.md, junit.xml, report.html."""

    verdict: str  # a `verdict.Verdict` value
    reasons: list[Reason]  # none for a pass
    ended: str | None  # how the run ended, in one line, unless a reason says it; None: not known
    warnings: list[str]


def run_verdict(summary: Mapping[str, Any]) -> RunVerdict:
    """The verdict, reasons and warnings of `summary`. A summary written before runs stored their
    reasons is judged here by `verdict.judge`, the rules a run applies, so it reads as a new one does."""
    # loadtest.verdict imports this package (for the schema): imported on use, either may load first.
    from loadtest import verdict

    stored = summary.get("reasons")
    if isinstance(stored, list):
        decided = str(summary.get("verdict") or verdict.Verdict.PASS)
        reasons: list[Reason] = [
            {"kind": str(r.get("kind", "")), "text": str(r.get("text", ""))}
            for r in stored
            if isinstance(r, Mapping)
        ]
    else:
        # Such a summary stored "fail" with every threshold held only for --strict-client.
        held = all(isinstance(t, Mapping) and t.get("passed") for t in summary.get("thresholds") or [])
        strict = summary.get("verdict") == verdict.Verdict.FAIL and held
        judged = verdict.judge(summary, strict_client=strict)
        decided, reasons = judged.verdict.value, judged.reasons
    run = summary.get("run")
    run = run if isinstance(run, Mapping) else {}
    ended = verdict.stopped_text(run)
    if ended is None and run.get("aborted_by_threshold"):
        ended = f"stopped early by --threshold-abort: {run['aborted_by_threshold']}"
    if ended in {r["text"] for r in reasons}:
        ended = None
    return RunVerdict(decided, reasons, ended, [str(w) for w in summary.get("warnings") or []])


def one_example(text: str, limit: int = EXAMPLE_CHARS) -> str:
    """An error example on one line, cut to `limit` characters with an ellipsis that shows the cut."""
    return catalog.excerpt(text, limit)


def console_lines(summary: Summary, run_dir: Path) -> list[str]:
    """A short table of the exact percentiles, for the end of a run, and the goodput; then the verdict
    with its reasons, how the run ended and the warnings; the paths of the files; a capacity search's
    answer last."""
    # Fixed-width columns, so the numbers line up under their heading in a terminal.
    metrics = summary["metrics"]
    shown = table_metrics(metrics)
    width = max((len(m.heading) for m in shown), default=len("metric")) + 2
    head = "".join(f"{s.label:>10}" for s in catalog.TABLE_STATS)
    lines = [f"{'metric':<{width}}{'count':>8}{head}  (ms)"]
    for metric in shown:
        stats = stats_of(metrics, metric)
        count = stats["count"] if stats is not None else 0
        cells = "".join(f"{_fmt(stat_of(metrics, metric, s)):>10}" for s in catalog.TABLE_STATS)
        lines.append(f"{metric.heading:<{width}}{count:>8}{cells}")
    c = summary["counts"]
    lines.append(
        f"turns {c['turns']} (ok {c['turns_ok']}, failed {c['turns_failed']}, cut {c['turns_cut']}); "
        f"conversations {c['conversations_completed']}/{c['conversations_started']} completed "
        f"({c['conversations_failed']} failed, {c.get('conversations_abandoned', 0)} abandoned); "
        f"{c['chunks']} chunks, {c['chars']} chars"
    )
    lines += stream_lines(summary)
    good = goodput.describe(summary.get("goodput"))
    if good:
        lines.append(good)
    for err in summary["errors"]:
        lines.append(f"error {err['kind']}: {err['count']} (e.g. {one_example(err['example'])})")
    for t in summary.get("thresholds", []):
        observed = format_observed(t["observed"], t["unit"])
        lines.append(f"threshold {'pass' if t['passed'] else 'FAIL'}: {t['expr']} (observed {observed})")
    health = summary.get("client_health")
    if health and health.get("bottleneck"):
        lines.append(f"client was the bottleneck: {'; '.join(health['reasons'])}")
    lines += verdict_lines(run_verdict(summary))
    lines.append(f"summary: {run_dir / 'summary.json'}")
    lines.append(f"report:  {run_dir / 'report.html'}")
    search = summary.get("capacity")
    if search:
        lines.append(capacity.console_line(search))
    return lines


def stream_lines(summary: Mapping[str, Any]) -> list[str]:
    """What a run's counts say of connections, reasoning and tokens, a line each when it has any:
    `connections 4 opened, 812 reused`, `reasoning 10,234 chars`, `tokens 9,120 prompt, 40,311
    completion (1,200 reasoning) on 812 turns; 1,343.7 output tokens/s`. Tokens only from the usage
    streams reported: never an estimate."""
    lines = []
    opened, reused = count_of(summary, "connections_opened"), count_of(summary, "connections_reused")
    if opened or reused:
        lines.append(f"connections {opened or 0:,.0f} opened, {reused or 0:,.0f} reused")
    reasoning_chars = count_of(summary, "reasoning_chars")
    if reasoning_chars:
        lines.append(f"reasoning {reasoning_chars:,.0f} chars")
    turns = count_of(summary, "turns_with_usage")
    if turns:
        reasoning = count_of(summary, "reasoning_tokens")
        line = (
            f"tokens {count_of(summary, 'prompt_tokens') or 0:,.0f} prompt, "
            f"{count_of(summary, 'completion_tokens') or 0:,.0f} completion"
        )
        line += f" ({reasoning:,.0f} reasoning)" if reasoning else ""
        line += f" on {turns:,.0f} turns"
        rate = output_tokens_per_s(summary)
        lines.append(line + (f"; {catalog.format_number(rate)} output tokens/s" if rate is not None else ""))
    return lines


def output_tokens_per_s(summary: Mapping[str, Any]) -> float | None:
    """The run's throughput in output tokens: completion tokens per second of the time the figures
    cover, as the console, summary.md and report.html give it; None without the count or a duration."""
    return per_second(summary, "completion_tokens")


def verdict_lines(v: RunVerdict) -> list[str]:
    """`verdict: FAIL`, a line per reason, how the run ended, and a line per warning."""
    lines = [f"verdict: {v.verdict.upper()}"]
    lines += [f"  - {r['kind']}: {r['text']}" for r in v.reasons]
    if v.ended:
        lines.append(v.ended)
    lines += [f"warning: {w}" for w in v.warnings]
    return lines


def _fmt(value: float | None) -> str:
    return "-" if value is None else catalog.format_number(value)
