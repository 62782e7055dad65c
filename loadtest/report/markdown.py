"""A GitHub-flavoured Markdown summary of a run, for `$GITHUB_STEP_SUMMARY` and pull-request comments."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from loadtest.thresholds import format_observed

EXAMPLE_CHARS = 120

_LATENCY = (
    ("ttft_ms", "TTFT"),
    ("turn_ms", "turn latency"),
    ("itl_ms", "inter-chunk gap"),
    ("conversation_ms", "conversation"),
)
_STATS = (("p50", "p50"), ("p90", "p90"), ("p95", "p95"), ("p99", "p99"), ("p999", "p99.9"), ("max", "max"))
_BREAKDOWN_STATS = ("p50", "p95", "p99")
_BACKTICKS = re.compile(r"`+")


def render_markdown(summary: Mapping[str, Any]) -> str:
    """The verdict, thresholds, latency, counts, errors and run facts of `summary` as Markdown."""
    thresholds: list[Mapping[str, Any]] = list(summary.get("thresholds") or [])
    metrics: Mapping[str, Any] = summary.get("metrics") or {}
    verdict = summary.get("verdict") or ("pass" if all(t.get("passed") for t in thresholds) else "fail")
    icon = "✅" if verdict == "pass" else "❌"
    out = [f"## {icon} Load test: {_cell(str(verdict))}", ""]

    out += ["### Thresholds", ""]
    if thresholds:
        out += ["| threshold | observed | result |", "|---|---:|---|"]
        for t in thresholds:
            observed = format_observed(t.get("observed"), str(t.get("unit", "ms")))
            result = "✅ pass" if t.get("passed") else "❌ fail"
            out.append(f"| {_code(str(t.get('expr', '')))} | {observed} | {result} |")
    else:
        out.append("No thresholds were set.")
    out.append("")

    out += ["### Latency (ms)", ""]
    out.append("| metric | count | " + " | ".join(label for _, label in _STATS) + " |")
    out.append("|---|" + "---:|" * (len(_STATS) + 1))
    for key, label in _LATENCY:
        stats = metrics.get(key)
        if isinstance(stats, Mapping):
            cells = " | ".join(_ms(stats.get(stat)) for stat, _ in _STATS)
            out.append(f"| {label} | {stats.get('count', 0)} | {cells} |")
    out.append("")

    out += _counts(summary.get("counts") or {})
    out += _breakdown("By turn", "turn", summary.get("by_turn"))
    out += _breakdown("By scenario", "scenario", summary.get("by_scenario"))
    out += _errors(summary.get("errors") or [])
    out += _run(summary.get("run") or {})
    return "\n".join(out)


def append_step_summary(text: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Append `text` to the file named by `GITHUB_STEP_SUMMARY`; False (and no write) when it is unset."""
    path = environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    with open(path, "a", encoding="utf-8") as f:
        f.write(text if text.endswith("\n") else text + "\n")
    return True


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
    return [f"{turns} · {conversations}", ""]


def _breakdown(title: str, scope: str, table: Any) -> list[str]:
    if not isinstance(table, Mapping) or not table:
        return []
    metrics = [("ttft_ms", "TTFT"), ("turn_ms", "turn")]
    if scope == "scenario":
        metrics.append(("conversation_ms", "conversation"))
    head = " | ".join(f"{label} {stat}" for _, label in metrics for stat in _BREAKDOWN_STATS)
    out = [f"### {title} (ms)", "", f"| {scope} | turns ok | turns failed | {head} |"]
    out.append("|---|" + "---:|" * (2 + len(metrics) * len(_BREAKDOWN_STATS)))
    for name, entry in table.items():
        if not isinstance(entry, Mapping):
            continue
        counts: Mapping[str, Any] = entry.get("counts") or {}
        cells = []
        for key, _ in metrics:
            stats: Mapping[str, Any] = entry.get(key) or {}
            cells += [_ms(stats.get(stat)) for stat in _BREAKDOWN_STATS]
        out.append(
            f"| {_cell(str(name))} | {counts.get('turns_ok', 0)} | {counts.get('turns_failed', 0)} | "
            + " | ".join(cells)
            + " |"
        )
    return [*out, ""]


def _errors(errors: list[Mapping[str, Any]]) -> list[str]:
    if not errors:
        return []
    out = ["### Errors", "", "| kind | count | example |", "|---|---:|---|"]
    for e in errors:
        example = str(e.get("example", ""))
        if len(example) > EXAMPLE_CHARS:
            example = example[:EXAMPLE_CHARS] + "…"
        out.append(f"| {_cell(str(e.get('kind', '')))} | {e.get('count', 0)} | {_code(example)} |")
    return [*out, ""]


def _run(run: Mapping[str, Any]) -> list[str]:
    facts = [(k, run.get(k)) for k in ("id", "host", "users", "workers", "started", "ended")]
    shown = [
        f"{k} {_code(str(v)) if k in ('id', 'host') else _cell(str(v))}" for k, v in facts if v is not None
    ]
    if not shown:
        return []
    return ["**Run**: " + " · ".join(shown), ""]


def _ms(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def _cell(text: str) -> str:
    """Text safe inside a table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    """A code span that holds `text` as is, whatever backticks it contains, inside a table cell."""
    text = _cell(text)
    if not text:
        return ""
    # A code span ends at a backtick run as long as its opening one, so open with a longer run.
    longest = max((len(m.group()) for m in _BACKTICKS.finditer(text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
