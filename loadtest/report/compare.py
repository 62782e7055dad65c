"""Two runs side by side: per-percentile deltas, error rate and throughput, and a regression verdict.

The rule (`rule()` says it in words, and every report prints it): the new run regressed when

- a gated statistic (`GATED_STATS`: p50, p95, p99) of a gated metric (`catalog.Metric.gated`: TTFT,
  turn latency) is above baseline x (1 + tolerance), or is missing (no completed turns) where the
  baseline has it; or
- the error rate, failed / (ok + failed) turns, rose by more than max(tolerance x baseline rate,
  0.5 percentage points).

Everything else (the other statistics and `compared` metrics, throughput, goodput) is shown but not
judged: it moves with the load shape and with a handful of samples, and goodput with its bounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loadtest import catalog
from loadtest.errors import ConfigError
from loadtest.report.markdown import cell, code_span
from loadtest.report.schema import (
    CONVERSATION_GOODPUT,
    GOODPUT,
    count_of,
    duration_s,
    error_rate,
    load_summary,
    stat_of,
    throughput,
)
from loadtest.shares import ShareError, parse_share
from loadtest.thresholds import one_of

# `loadtest.cli` and `loadtest.report.html` import these from here.
__all__ = [
    "check_comparable",
    "DEFAULT_TOLERANCE",
    "ERROR_RATE_FLOOR",
    "GATED_METRICS",
    "GATED_STATS",
    "METRICS",
    "STATS",
    "Comparison",
    "Delta",
    "compare",
    "describe",
    "duration_s",
    "error_rate",
    "format_change",
    "format_ms",
    "format_pp",
    "format_ratio",
    "headline",
    "load_summary",
    "parse_tolerance",
    "render_markdown",
    "rule",
    "shown_deltas",
    "throughput",
    "unit_of",
]

DEFAULT_TOLERANCE = "10%"
ERROR_RATE_FLOOR = 0.005

# What the table shows: (key, label) of each `catalog.Metric.compared` metric and `TABLE_STATS` statistic.
METRICS = tuple((m.key, m.label) for m in catalog.COMPARED_METRICS)
STATS = tuple((s.key, s.label) for s in catalog.TABLE_STATS)
# What the verdict judges: the tail percentiles a handful of samples cannot swing.
GATED_METRICS = tuple(m.key for m in catalog.COMPARED_METRICS if m.gated)
GATED_STATS = tuple(s.key for s in catalog.BREAKDOWN_STATS)

_METRIC_LABELS = dict(METRICS)
_STAT_LABELS = dict(STATS)


def rule(tolerance: float | None) -> str:
    """The regression rule for `tolerance` (None: in general), in one sentence."""
    tol = "the tolerance" if tolerance is None else _percent(tolerance)
    gated = one_of(_METRIC_LABELS[m] for m in GATED_METRICS)
    stats = one_of(_STAT_LABELS[s] for s in GATED_STATS)
    shown = [label for key, label in METRICS if key not in GATED_METRICS]
    shown += [label for key, label in STATS if key not in GATED_STATS]
    shown_text = one_of([*shown, "throughput", "goodput"], "and")
    return (
        f"A regression is the new run worse than the baseline by more than {tol}: {stats} of "
        f"{gated} above the baseline's by more than {tol} (or missing where the baseline "
        f"has it), or the error rate (failed / (ok + failed) turns) up by more than max({tol} of the "
        f"baseline's rate, {ERROR_RATE_FLOOR * 100:g} percentage points). "
        f"{shown_text[:1].upper()}{shown_text[1:]} are shown, not judged."
    )


def parse_tolerance(text: str) -> float:
    """`10%` or `0.1` -> 0.1; raise `ConfigError` naming the accepted forms."""
    try:
        return parse_share(text, over_100_percent=True)
    except ShareError as exc:
        raise ConfigError(f"--tolerance: {exc}") from None


def check_comparable(baseline: Mapping[str, Any], where: object) -> None:
    """A baseline without latency figures (no turn completed) cannot judge anything: `ConfigError`."""
    metrics = baseline.get("metrics")
    gated = [m for m in catalog.COMPARED_METRICS if m.gated]
    if not any(stat_of(metrics, m, catalog.STAT_BY_LABEL["p50"]) is not None for m in gated):
        names = " or ".join(m.label for m in gated)
        raise ConfigError(
            f"the baseline {where} has no {names} figures (no turn completed): nothing to compare it with"
        )


@dataclass(frozen=True, slots=True)
class Delta:
    """One statistic of both runs. A gated one regressed when the new value is above `limit`, the
    largest that passes, or is missing where the baseline has one."""

    metric: str
    stat: str
    baseline: float | None
    new: float | None
    limit: float | None = None
    gated: bool = False

    @property
    def name(self) -> str:
        return f"{self.metric}.{_STAT_LABELS.get(self.stat, self.stat)}" if self.stat else self.metric

    @property
    def label(self) -> str:
        """As a table row names it: `TTFT p99.9`, `error rate`."""
        if not self.stat:
            return self.metric.replace("_", " ")
        return f"{_METRIC_LABELS.get(self.metric, self.metric)} {_STAT_LABELS.get(self.stat, self.stat)}"

    @property
    def change(self) -> float | None:
        if self.baseline is None or self.new is None:
            return None
        return self.new - self.baseline

    @property
    def ratio(self) -> float | None:
        """(new - baseline) / baseline; None without both, or with a zero baseline."""
        change = self.change
        if change is None or not self.baseline:
            return None
        return change / self.baseline

    @property
    def regressed(self) -> bool:
        if not self.gated or self.baseline is None:
            return False
        # A value exactly at the limit passes, whatever float rounding did to either.
        return self.new is None or (self.limit is not None and self.new > self.limit * (1 + 1e-9) + 1e-12)


@dataclass(frozen=True, slots=True)
class Comparison:
    """What `compare` found; `regressions` lists each breach in one line."""

    tolerance: float
    latency: tuple[Delta, ...]
    error_rate: Delta
    throughput: Delta
    turns: Delta
    # Good turns and conversations (`--goodput`), shown, not judged.
    goodput: Delta = Delta("goodput", "", None, None)
    conversation_goodput: Delta = Delta("conversation_goodput", "", None, None)

    @property
    def checks(self) -> tuple[Delta, ...]:
        """The statistics the verdict is made of, in report order."""
        return (*(d for d in self.latency if d.gated), self.error_rate)

    @property
    def regressions(self) -> list[str]:
        return [describe(d, self.tolerance) for d in self.checks if d.regressed]

    @property
    def regressed(self) -> bool:
        return any(d.regressed for d in self.checks)


def compare(baseline: Mapping[str, Any], new: Mapping[str, Any], tolerance: float) -> Comparison:
    """Compare two summaries; `tolerance` is a fraction (0.1 for 10%)."""
    latency = []
    before_metrics, after_metrics = _metrics(baseline), _metrics(new)
    for metric in catalog.COMPARED_METRICS:
        for stat in catalog.TABLE_STATS:
            before = stat_of(before_metrics, metric, stat)
            after = stat_of(after_metrics, metric, stat)
            gated = metric.key in GATED_METRICS and stat.key in GATED_STATS
            limit = before * (1 + tolerance) if gated and before is not None else None
            latency.append(Delta(metric.key, stat.key, before, after, limit, gated))
    rate_before, rate_after = error_rate(baseline), error_rate(new)
    rate_limit = (
        rate_before + max(tolerance * rate_before, ERROR_RATE_FLOOR) if rate_before is not None else None
    )
    return Comparison(
        tolerance=tolerance,
        latency=tuple(latency),
        error_rate=Delta("error_rate", "", rate_before, rate_after, rate_limit, gated=True),
        throughput=Delta("throughput", "", throughput(baseline), throughput(new)),
        turns=Delta("turns", "", count_of(baseline, "turns"), count_of(new, "turns")),
        goodput=Delta("goodput", "", GOODPUT.of(baseline), GOODPUT.of(new)),
        conversation_goodput=Delta(
            "conversation_goodput", "", CONVERSATION_GOODPUT.of(baseline), CONVERSATION_GOODPUT.of(new)
        ),
    )


def describe(d: Delta, tolerance: float) -> str:
    """One line about a statistic that regressed."""
    if d.metric == "error_rate":
        if d.new is None:
            return "error_rate: no turns in the new run"
        base = d.baseline or 0.0
        allowed = max(tolerance * base, ERROR_RATE_FLOOR)
        return (
            f"error_rate rose from {_percent(base, 2)} to {_percent(d.new, 2)} "
            f"(+{(d.new - base) * 100:.2f} pp, more than the {allowed * 100:.2f} pp allowed)"
        )
    unit = unit_of(d)
    if d.new is None:
        return f"{d.name}: no data in the new run (the baseline has {format_ms(d.baseline)} {unit})"
    ratio = d.ratio
    rise = f"+{ratio * 100:.1f}%" if ratio is not None else "up"
    return (
        f"{d.name} {rise} ({format_ms(d.baseline)} → {format_ms(d.new)} {unit}), "
        f"more than {_percent(tolerance)}"
    )


def headline(comparison: Comparison) -> str:
    """`regression beyond 50%` or `no regression beyond 50%`, as the Markdown and the one line on stderr
    say it: the tolerance as a percentage, whichever form --tolerance took (0.5 or 50%)."""
    regression = "regression" if comparison.regressed else "no regression"
    return f"{regression} beyond {_percent(comparison.tolerance)}"


def render_markdown(comparison: Comparison, baseline: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The comparison as GitHub-flavoured Markdown, for a pull-request comment."""
    c = comparison
    out = [f"## {'❌' if c.regressed else '✅'} Load test comparison: {headline(c)}", ""]
    out += [f"- {cell(line)}" for line in c.regressions]
    out += ["", f"Baseline {_run_line(baseline)}  ", f"New {_run_line(new)}", ""]

    out += ["| metric | baseline | new | Δ | Δ % | |", "|---|---:|---:|---:|---:|---|"]
    for d in shown_deltas(c):
        mark = ("❌" if d.regressed else "✅") if d.gated else ""
        out.append(
            f"| {d.label} ({unit_of(d)}) | {format_ms(d.baseline)} | {format_ms(d.new)} "
            f"| {format_change(d.change)} | {format_ratio(d.ratio)} | {mark} |"
        )
    r = c.error_rate
    out.append(
        f"| error rate | {_percent(r.baseline, 2)} | {_percent(r.new, 2)} | {format_pp(r.change)} | "
        f"{format_ratio(r.ratio)} | {'❌' if r.regressed else '✅'} |"
    )
    t = c.throughput
    out.append(
        f"| throughput (turns/s) | {_num(t.baseline)} | {_num(t.new)} | {format_change(t.change, 2)} | "
        f"{format_ratio(t.ratio)} | |"
    )
    for g, label in ((c.goodput, "goodput (turns)"), (c.conversation_goodput, "goodput (conversations)")):
        out.append(
            f"| {label} | {_percent(g.baseline, 2)} | {_percent(g.new, 2)} | {format_pp(g.change)} | "
            f"{format_ratio(g.ratio)} | |"
        )
    n = c.turns
    out.append(f"| turns | {_num(n.baseline, 0)} | {_num(n.new, 0)} | {format_change(n.change, 0)} | | |")
    out += ["", f"<sub>{cell(rule(c.tolerance))} ✅/❌ mark the judged statistics.</sub>", ""]
    return "\n".join(out)


def shown_deltas(comparison: Comparison) -> list[Delta]:
    """The statistics a table shows: the judged ones always, the others when either run has them (a
    run without TLS has no TLS figures, a server that sends no usage no token figures)."""
    return [d for d in comparison.latency if d.gated or d.baseline is not None or d.new is not None]


def unit_of(d: Delta) -> str:
    """The unit of a metric's statistic: ms, or the metric's own (tokens/s)."""
    metric = catalog.METRIC_BY_KEY.get(d.metric)
    return metric.unit if metric is not None else catalog.MS


def format_ms(value: float | None) -> str:
    return "-" if value is None else catalog.format_number(value)


def format_change(value: float | None, digits: int | None = None) -> str:
    """A signed difference: `digits` decimals, or by default as `format_ms` writes milliseconds."""
    if value is None:
        return "-"
    if digits is not None:
        return f"{value:+,.{digits}f}"
    return catalog.format_number(value, sign=True)


def format_ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 100:+.1f}%"


def format_pp(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.2f} pp"


def _percent(value: float | None, digits: int | None = None) -> str:
    if value is None:
        return "-"
    if digits is None:
        return f"{value * 100:g}%"
    return f"{value * 100:.{digits}f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _metrics(summary: Mapping[str, Any]) -> Mapping[str, object] | None:
    metrics = summary.get("metrics")
    return metrics if isinstance(metrics, Mapping) else None


def _run_line(summary: Mapping[str, Any]) -> str:
    run: Mapping[str, Any] = summary.get("run") or {}
    parts = [code_span(str(run.get("id", "?")))]
    if run.get("host"):
        parts.append(code_span(str(run["host"])))
    if run.get("users") is not None:
        parts.append(f"{cell(str(run['users']))} users")
    seconds = duration_s(run)
    if seconds:
        parts.append(f"{seconds:g} s")
    return " · ".join(parts)
