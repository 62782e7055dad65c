"""A GitHub-flavoured Markdown summary of a run, for `$GITHUB_STEP_SUMMARY` and pull-request comments."""

from __future__ import annotations

import html
import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from loadtest import capacity, catalog, goodput
from loadtest.report.schema import (
    ErrorEntry,
    ScopeEntry,
    Summary,
    format_observed,
    number,
    scoped_errors,
    stat_of,
    table_metrics,
)
from loadtest.report.summary import RunVerdict, one_example, run_verdict, stream_lines

logger = logging.getLogger("loadtest")
# One mark per verdict (`verdict.VERDICTS`), distinct at a glance in a list of step summaries.
ICONS = {"pass": "✅", "fail": "❌", "incomplete": "⚠️", "empty": "⚪"}

_BACKTICKS = re.compile(r"`+")
# What can begin markup in Markdown that renders HTML: a tag, comment or autolink (`<` then a letter,
# `/`, `!` or `?`), or a character reference (`&` then a letter or `#`).
_MARKUP_START = re.compile(r"<(?=[A-Za-z/!?])|&(?=[A-Za-z#])")


def render_markdown(summary: Summary) -> str:
    """The verdict with its reasons, how the run ended and the warnings; then a capacity search's
    answer and steps, thresholds, latency, counts and goodput, errors and run facts of `summary` as
    Markdown."""
    thresholds = summary.get("thresholds") or []
    metrics = summary.get("metrics") or {}
    out = _verdict(run_verdict(summary))
    out += _capacity(summary.get("capacity"))

    out += ["### Thresholds", ""]
    if thresholds:
        out += ["| threshold | observed | result |", "|---|---:|---|"]
        for t in thresholds:
            observed = format_observed(t.get("observed"), str(t.get("unit", "ms")))
            result = "✅ pass" if t.get("passed") else "❌ fail"
            out.append(f"| {code_span(str(t.get('expr', '')))} | {observed} | {result} |")
    else:
        out.append("No thresholds were set.")
    out.append("")

    out += ["### Latency (ms)", ""]
    out.append("| metric | count | " + " | ".join(s.label for s in catalog.TABLE_STATS) + " |")
    out.append("|---|" + "---:|" * (len(catalog.TABLE_STATS) + 1))
    for metric in table_metrics(metrics):
        stats = metrics.get(metric.summary_key)
        count = stats.get("count", 0) if isinstance(stats, Mapping) else 0
        cells = " | ".join(_ms(stat_of(metrics, metric, s)) for s in catalog.TABLE_STATS)
        out.append(f"| {cell(metric.heading)} | {count} | {cells} |")
    out.append("")

    out += _counts(summary.get("counts") or {})
    out += _stream(summary)
    good = goodput.describe(summary.get("goodput"))
    if good:
        out += [f"**Goodput**: {prose(good.removeprefix('goodput '))}", ""]
    out += _breakdown("By turn", catalog.TURN, summary.get("by_turn"))
    out += _breakdown("By scenario", catalog.SCENARIO, summary.get("by_scenario"))
    out += _errors(summary.get("errors") or [])
    out += _scoped_errors(summary)
    out += _run(summary.get("run") or {})
    return "\n".join(out)


def append_step_summary(text: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Append `text` to the file named by `GITHUB_STEP_SUMMARY`; False (and no write) when it is unset."""
    path = environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    try:
        with open(path, "a", encoding="utf-8") as f:
            # Several runs in one job: a blank line between them, so each starts its own block.
            f.write(("\n" if f.tell() else "") + (text if text.endswith("\n") else text + "\n"))
    except OSError as exc:
        # The run's own files are written already: a step summary that cannot be written loses nothing.
        logger.warning("loadtest: cannot append to GITHUB_STEP_SUMMARY %s: %s", path, exc.strerror or exc)
        return False
    return True


def _verdict(v: RunVerdict) -> list[str]:
    out = [f"## {ICONS.get(v.verdict, '❔')} Load test: {cell(v.verdict)}", ""]
    if v.reasons:
        out += [f"- **{prose(r['kind'])}**: {prose(r['text'])}" for r in v.reasons] + [""]
    if v.ended:
        out += [f"**How it ended**: {prose(v.ended)}", ""]
    if v.warnings:
        out += ["**Warnings**", ""] + [f"- ⚠️ {prose(w)}" for w in v.warnings] + [""]
    return out


def _counts(c: Mapping[str, Any]) -> list[str]:
    turns = (
        f"**Turns**: {c.get('turns', 0)} ({c.get('turns_ok', 0)} ok, {c.get('turns_failed', 0)} failed, "
        f"{c.get('turns_cut', 0)} cut)"
    )
    conversations = (
        f"**Conversations**: {c.get('conversations_completed', 0)} completed of "
        f"{c.get('conversations_started', 0)} started"
    )
    if "conversations_failed" in c:
        conversations += f", {c['conversations_failed']} failed"
    if c.get("conversations_abandoned"):
        conversations += f", {c['conversations_abandoned']} abandoned"
    return [f"{turns} · {conversations}", ""]


def _stream(summary: Mapping[str, Any]) -> list[str]:
    """Connections, reasoning and tokens, as the console says them, on one line: `**Connections**: 4
    opened, 812 reused · **Tokens**: ...`."""
    parts = []
    for line in stream_lines(summary):
        name, _, rest = line.partition(" ")
        parts.append(f"**{name.capitalize()}**: {prose(rest)}")
    return [" · ".join(parts), ""] if parts else []


# A capacity step's columns: its latency statistics, after load, turns, error rate and goodput.
STEP_STATS = catalog.BREAKDOWN_STATS
STEP_METRICS = (catalog.TTFT, catalog.TURN_LATENCY)


def _capacity(section: Any) -> list[str]:
    """The answer of a capacity search in one line, then a row per step in the order they ran."""
    if not isinstance(section, Mapping):
        return []
    out = ["### Capacity", "", prose(capacity.console_line(section).removeprefix("capacity: ")), ""]
    steps = [s for s in section.get("steps") or [] if isinstance(s, Mapping)]
    if not steps:
        return out
    stats = " | ".join(f"{m.short} {s.label}" for m in STEP_METRICS for s in STEP_STATS)
    unit = cell(str(section.get("unit") or "load"))
    out += [
        f"| {unit} | turns | error rate | goodput | {stats} | client | result |",
        "|" + "---:|" * (4 + len(STEP_METRICS) * len(STEP_STATS)) + "---|---|",
    ]
    for step in steps:
        cells = [_ms(number(_stats(step, m).get(s.key))) for m in STEP_METRICS for s in STEP_STATS]
        client = "bottleneck" if _client(step).get("bottleneck") else "ok"
        result = "✅ pass" if step.get("passed") else "❌ fail"
        out.append(
            f"| {capacity.format_load(step.get('load'))} | {step.get('turns', 0)} | "
            f"{_share(step.get('error_rate'))} | {_share(step.get('goodput'))} | "
            + " | ".join(cells)
            + f" | {client} | {result} |"
        )
    return [*out, ""]


def _stats(step: Mapping[str, Any], metric: catalog.Metric) -> Mapping[str, Any]:
    found = step.get(metric.summary_key)
    return found if isinstance(found, Mapping) else {}


def _client(step: Mapping[str, Any]) -> Mapping[str, Any]:
    found = step.get("client")
    return found if isinstance(found, Mapping) else {}


def _share(value: Any) -> str:
    share = number(value)
    return "-" if share is None else f"{share * 100:.2f}%"


def _breakdown(title: str, scope: str, table: Mapping[str, ScopeEntry] | None) -> list[str]:
    if not isinstance(table, Mapping) or not table:
        return []
    metrics = [m for m in catalog.TABLE_METRICS if scope in m.scopes]
    stats = catalog.BREAKDOWN_STATS
    head = " | ".join(f"{m.short} {s.label}" for m in metrics for s in stats)
    out = [f"### {title} (ms)", "", f"| {scope} | turns ok | turns failed | {head} |"]
    out.append("|---|" + "---:|" * (2 + len(metrics) * len(stats)))
    for name, entry in table.items():
        if not isinstance(entry, Mapping):
            continue
        counts = entry.get("counts") or {}
        cells = [_ms(stat_of(entry, m, s)) for m in metrics for s in stats]
        out.append(
            f"| {cell(str(name))} | {counts.get('turns_ok', 0)} | {counts.get('turns_failed', 0)} | "
            + " | ".join(cells)
            + " |"
        )
    return [*out, ""]


def _errors(errors: Sequence[ErrorEntry]) -> list[str]:
    if not errors:
        return []
    out = ["### Errors", "", "| kind | count | example |", "|---|---:|---|"]
    for e in errors:
        example = one_example(str(e.get("example", "")))
        out.append(f"| {cell(str(e.get('kind', '')))} | {e.get('count', 0)} | {code_span(example)} |")
    return [*out, ""]


def _scoped_errors(summary: Mapping[str, Any]) -> list[str]:
    errors = scoped_errors(summary)
    if not errors:
        return []
    out = [
        "### Where turns failed",
        "",
        "| where | kind | count | first example there |",
        "|---|---|---:|---|",
    ]
    for e in errors:
        example = code_span(one_example(e.example))
        out.append(f"| {e.scope} {cell(e.value)} | {cell(e.kind)} | {e.count} | {example} |")
    return [*out, ""]


# The run facts shown, as (key, label); durations in seconds.
RUN_FACTS = (
    ("id", "id"),
    ("host", "host"),
    ("users", "users"),
    ("workers", "workers"),
    ("started", "started"),
    ("ended", "ended"),
    ("duration_s", "duration"),
    ("planned_duration_s", "planned"),
    ("stopped_by", "stopped by"),
    ("signal", "signal"),
)


def _run(run: Mapping[str, Any]) -> list[str]:
    shown = [f"{label} {_fact(key, run[key])}" for key, label in RUN_FACTS if run.get(key) is not None]
    if not shown:
        return []
    return ["**Run**: " + " · ".join(shown), ""]


def _fact(key: str, value: object) -> str:
    if key in ("id", "host"):
        return code_span(str(value))
    seconds = number(value) if key.endswith("_s") else None
    return f"{seconds:g} s" if seconds is not None else cell(str(value))


def _ms(value: float | None) -> str:
    return "-" if value is None else catalog.format_number(value)


def cell(text: str) -> str:
    """Text safe inside a table cell, and as Markdown that renders HTML (a step summary): one line,
    pipes escaped, and `<`, `>`, `&` as entities, so a scenario named `<img src=x>` shows as written."""
    return html.escape(_one_line(text), quote=False)


def prose(text: str) -> str:
    """A line of text outside a table, shown as written: what could begin markup is escaped (so a
    scenario named `<img src=x>` stays text) and the rest left alone, so that a reason or a warning
    that quotes a threshold reads `error_rate<1%` in the file as on the page."""
    return _MARKUP_START.sub(lambda m: "&lt;" if m.group() == "<" else "&amp;", " ".join(text.split()))


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def code_span(text: str) -> str:
    """A code span that holds `text` as is, whatever backticks it contains, inside a table cell (a code
    span shows HTML as text already: no entities)."""
    text = _one_line(text)
    if not text:
        return ""
    # A code span ends at a backtick run as long as its opening one, so open with a longer run.
    longest = max((len(m.group()) for m in _BACKTICKS.finditer(text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
