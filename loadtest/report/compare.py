"""Two runs side by side: per-percentile deltas, error rate and throughput, and a regression verdict.

The rule (`RULE` says it in words, and every report prints it): the new run regressed when

- any of p50, p95, p99 of TTFT or turn latency is above baseline x (1 + tolerance), or is missing
  (no completed turns) where the baseline has it; or
- the error rate, failed / (ok + failed) turns, rose by more than max(tolerance x baseline rate,
  0.5 percentage points).

Everything else (p90, p99.9, max, the inter-chunk gap, throughput) is shown but not judged: it
moves with the load shape and with a handful of samples.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from loadtest.errors import ConfigError

DEFAULT_TOLERANCE = "10%"
ERROR_RATE_FLOOR = 0.005

METRICS = (("ttft", "TTFT"), ("turn", "turn latency"), ("itl", "inter-chunk gap"))
STATS = (("p50", "p50"), ("p90", "p90"), ("p95", "p95"), ("p99", "p99"), ("p999", "p99.9"), ("max", "max"))
GATED_METRICS = ("ttft", "turn")
GATED_STATS = ("p50", "p95", "p99")

_TOLERANCE_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(%?)")


def rule(tolerance: float | None) -> str:
    """The regression rule for `tolerance` (None: in general), in one sentence."""
    tol = "the tolerance" if tolerance is None else _percent(tolerance)
    return (
        f"A regression is the new run worse than the baseline by more than {tol}: p50, p95 or p99 of "
        f"TTFT or turn latency above the baseline's by more than {tol} (or missing where the baseline "
        f"has it), or the error rate (failed / (ok + failed) turns) up by more than max({tol} of the "
        f"baseline's rate, {ERROR_RATE_FLOOR * 100:g} percentage points). Inter-chunk gap, p90, p99.9, "
        "max and throughput are shown, not judged."
    )


def parse_tolerance(text: str) -> float:
    """`10%` or `0.1` -> 0.1; raise `ConfigError` naming the accepted forms."""
    m = _TOLERANCE_RE.fullmatch(text.strip())
    if m is None:
        raise ConfigError(
            f"--tolerance '{text}': not a tolerance: write a percentage (10%) or a fraction (0.1)"
        )
    value = float(m.group(1))
    if m.group(2):
        value /= 100
    elif value > 1:
        raise ConfigError(
            f"--tolerance '{text}': over 1: write {m.group(1)}% for a percentage, or a fraction"
        )
    return value


def load_summary(path: Path) -> dict[str, Any]:
    """The summary.json at `path`, or in the run folder `path`; `ConfigError` if it is not one."""
    file = path / "summary.json" if path.is_dir() else path
    if not file.exists():
        where = f"no summary.json in {path}" if path.is_dir() else f"{path} does not exist"
        raise ConfigError(f"{where}: pass a run's summary.json or its folder (reports/RUN-ID)")
    try:
        data = orjson.loads(file.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError:
        raise ConfigError(f"{file} is not JSON: pass the summary.json a loadtest run wrote") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if not isinstance(schema, str) or not schema.startswith("loadtest.summary/"):
        raise ConfigError(
            f'{file} is not a loadtest summary (no "schema": "loadtest.summary/1"): '
            "pass the summary.json a loadtest run wrote"
        )
    if not isinstance(data.get("metrics"), dict):
        raise ConfigError(f'{file} has no "metrics": pass the summary.json a loadtest run wrote')
    summary: dict[str, Any] = data
    return summary


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
        return f"{self.metric}.{dict(STATS).get(self.stat, self.stat)}" if self.stat else self.metric

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
    for metric, _ in METRICS:
        for stat, _ in STATS:
            before, after = _stat(baseline, metric, stat), _stat(new, metric, stat)
            gated = metric in GATED_METRICS and stat in GATED_STATS
            limit = before * (1 + tolerance) if gated and before is not None else None
            latency.append(Delta(metric, stat, before, after, limit, gated))
    rate_before, rate_after = error_rate(baseline), error_rate(new)
    rate_limit = (
        rate_before + max(tolerance * rate_before, ERROR_RATE_FLOOR) if rate_before is not None else None
    )
    return Comparison(
        tolerance=tolerance,
        latency=tuple(latency),
        error_rate=Delta("error_rate", "", rate_before, rate_after, rate_limit, gated=True),
        throughput=Delta("throughput", "", throughput(baseline), throughput(new)),
        turns=Delta("turns", "", _count(baseline, "turns"), _count(new, "turns")),
    )


def error_rate(summary: Mapping[str, Any]) -> float | None:
    """failed / (ok + failed) turns, as `error_rate` thresholds count it; None without turns."""
    ok, failed = _count(summary, "turns_ok"), _count(summary, "turns_failed")
    if ok is None or failed is None or ok + failed <= 0:
        return None
    return failed / (ok + failed)


def throughput(summary: Mapping[str, Any]) -> float | None:
    """Completed turns per second over the run; None without a duration."""
    ok = _count(summary, "turns_ok")
    seconds = duration_s(summary.get("run") or {})
    if ok is None or not seconds:
        return None
    return ok / seconds


def duration_s(run: Mapping[str, Any]) -> float | None:
    """`run.duration_s`, else ended - started; None when neither is known."""
    value = run.get("duration_s")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    try:
        started = datetime.fromisoformat(str(run["started"]))
        ended = datetime.fromisoformat(str(run["ended"]))
    except (KeyError, TypeError, ValueError):
        return None
    seconds = (ended - started).total_seconds()
    return seconds if seconds > 0 else None


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
    if d.new is None:
        return f"{d.name}: no data in the new run (the baseline has {format_ms(d.baseline)} ms)"
    ratio = d.ratio
    rise = f"+{ratio * 100:.1f}%" if ratio is not None else "up"
    return (
        f"{d.name} {rise} ({format_ms(d.baseline)} → {format_ms(d.new)} ms), more than {_percent(tolerance)}"
    )


def render_markdown(comparison: Comparison, baseline: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The comparison as GitHub-flavoured Markdown, for a pull-request comment."""
    c = comparison
    tol = _percent(c.tolerance)
    if c.regressed:
        out = [f"## ❌ Load test comparison: regression beyond {tol}", ""]
        out += [f"- {_md(line)}" for line in c.regressions]
    else:
        out = [f"## ✅ Load test comparison: no regression beyond {tol}", ""]
    out += ["", f"Baseline {_run_line(baseline)}  ", f"New {_run_line(new)}", ""]

    out += ["| metric | baseline | new | Δ | Δ % | |", "|---|---:|---:|---:|---:|---|"]
    labels = dict(METRICS)
    for d in c.latency:
        mark = ("❌" if d.regressed else "✅") if d.gated else ""
        out.append(
            f"| {labels[d.metric]} {dict(STATS)[d.stat]} (ms) | {format_ms(d.baseline)} | {format_ms(d.new)} "
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
    n = c.turns
    out.append(f"| turns | {_num(n.baseline, 0)} | {_num(n.new, 0)} | {format_change(n.change, 0)} | | |")
    out += ["", f"<sub>{_md(rule(c.tolerance))} ✅/❌ mark the judged statistics.</sub>", ""]
    return "\n".join(out)


def format_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"


def format_change(value: float | None, digits: int | None = None) -> str:
    """A signed difference: `digits` decimals, or by default as `format_ms` writes milliseconds."""
    if value is None:
        return "-"
    if digits is not None:
        return f"{value:+,.{digits}f}"
    return f"{value:+,.1f}" if abs(value) >= 10 else f"{value:+.3g}"


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


def _stat(summary: Mapping[str, Any], metric: str, stat: str) -> float | None:
    metrics = summary.get("metrics")
    stats = metrics.get(f"{metric}_ms") if isinstance(metrics, Mapping) else None
    value = stats.get(stat) if isinstance(stats, Mapping) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _count(summary: Mapping[str, Any], key: str) -> float | None:
    counts = summary.get("counts")
    value = counts.get(key) if isinstance(counts, Mapping) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _run_line(summary: Mapping[str, Any]) -> str:
    run: Mapping[str, Any] = summary.get("run") or {}
    parts = [_code(str(run.get("id", "?")))]
    if run.get("host"):
        parts.append(_code(str(run["host"])))
    if run.get("users") is not None:
        parts.append(f"{_md(str(run['users']))} users")
    seconds = duration_s(run)
    if seconds:
        parts.append(f"{seconds:g} s")
    return " · ".join(parts)


def _md(text: str) -> str:
    """One line, safe in a table cell or list item."""
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    text = _md(text)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
