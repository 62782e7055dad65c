"""Pass/fail thresholds over a run's summary, in the spirit of k6.

A threshold is one expression, given with `--threshold` (repeatable; several may also be joined with
`;` in one value). Whitespace around the parts is allowed.

Latency::

    METRIC[{SCOPE}].STAT OP NUMBER[UNIT]

    ttft.p95<800ms                  time to first token, 95th percentile, under 800 ms
    turn.p99<=3s                    turn latency
    itl.p50<50ms                    inter-chunk gap
    conversation.p90<30s            a whole conversation
    ttft{turn=1}.p95<500ms          first turns only
    turn{scenario=booking}.p99 < 2.5s

- METRIC: `ttft` (time to first token), `turn` (turn latency), `itl` (inter-chunk gap), `conversation`.
- STAT: `min`, `mean` (or `avg`), `p50`, `p90`, `p95`, `p99`, `p99.9` (or `p999`), `max`.
- UNIT: `us`, `ms`, `s`; a bare number is milliseconds.

Rates::

    RATE[{SCOPE}] OP NUMBER[%]

    error_rate<1%                   failed turns / (ok + failed turns); cut turns are left out
    conversation_success>=99%       completed / (completed + failed conversations)
    error_rate{scenario=booking}<0.005

- RATE: `error_rate`, `conversation_success`.
- A number with `%` is a percentage (0..100), without it a fraction (0..1): `1%` is `0.01`.

OP is `<`, `<=`, `>` or `>=`. SCOPE is `turn=N` (N >= 1, the N-th turn of conversations) or
`scenario=NAME` (letters, digits, `_`, `-`, `.`). `conversation` and `conversation_success` have no
per-turn scope; `itl` has no scope at all.

A threshold with no data (an empty histogram, no turns) fails. Anything that does not follow the
grammar raises `ConfigError` with one line that quotes the expression and says what is accepted.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from loadtest.errors import ConfigError

LATENCY_METRICS = ("ttft", "turn", "itl", "conversation")
RATE_METRICS = ("error_rate", "conversation_success")
METRICS = (*LATENCY_METRICS, *RATE_METRICS)
STATS = ("min", "mean", "p50", "p90", "p95", "p99", "p999", "max")
OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
UNITS_MS = {"us": Decimal("0.001"), "ms": Decimal(1), "s": Decimal(1000)}

_STAT_ALIASES = {"avg": "mean", "p99.9": "p999"}
_STATS_HELP = "min, mean, p50, p90, p95, p99, p99.9 or max"
_METRICS_HELP = "ttft, turn, itl, conversation, error_rate or conversation_success"
_OPS_HELP = "<, <=, > or >="

_OP_RE = re.compile(r"<=|>=|==|!=|=<|=>|<|>|=")
_NAME_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*")
_NUMBER_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_SCOPE_RE = re.compile(r"\{[^{}]*\}")
_SCENARIO_RE = re.compile(r"[A-Za-z0-9_.-]+")
_TURN_RE = re.compile(r"\d+")


@dataclass(frozen=True, slots=True)
class Threshold:
    """One parsed threshold; `limit` is in milliseconds for latency, a fraction 0..1 for rates."""

    expr: str
    metric: str
    scope: tuple[str, str] | None
    stat: str | None
    op: str
    limit: float

    @property
    def is_rate(self) -> bool:
        return self.metric in RATE_METRICS

    def check(self, observed: float | None) -> bool:
        """Whether `observed` meets the threshold; no data (None) never does."""
        if observed is None:
            return False
        return OPS[self.op](observed, self.limit)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A threshold evaluated against a summary."""

    expr: str
    observed: float | None
    passed: bool
    unit: str = "ms"

    def to_json(self) -> dict[str, Any]:
        return {"expr": self.expr, "observed": self.observed, "passed": self.passed, "unit": self.unit}


def format_observed(observed: float | None, unit: str) -> str:
    """`912.3 ms`, `1.52%` (unit "ratio") or `no data`."""
    if observed is None:
        return "no data"
    if unit == "ratio":
        return f"{observed * 100:.2f}%"
    return f"{observed:.1f} ms" if abs(observed) >= 10 else f"{observed:.3g} ms"


def parse(expr: str) -> Threshold:
    """Parse one expression; raise `ConfigError` naming the problem."""
    text = expr.strip()
    if not text:
        raise _error(text, "empty threshold: write METRIC.STAT OP LIMIT (ttft.p95<800ms) or RATE OP LIMIT")
    # Operators are looked for outside scopes, whose `=` is not a comparison.
    masked = _SCOPE_RE.sub(lambda m: "#" * len(m.group()), text)
    if "{" in masked:
        raise _error(text, "unclosed '{': write a scope as {turn=N} or {scenario=NAME}")
    if "}" in masked:
        raise _error(text, "'}' without '{': write a scope as {turn=N} or {scenario=NAME}")
    ops = list(_OP_RE.finditer(masked))
    if not ops:
        raise _error(text, f"missing operator: use {_OPS_HELP}, as in ttft.p95<800ms or error_rate<1%")
    found = ops[0]
    op = found.group()
    if op not in OPS:
        raise _error(text, f"unknown operator '{op}': use {_OPS_HELP}")
    if len(ops) > 1:
        raise _error(text, "more than one operator: write one comparison, as in ttft.p95<800ms")
    left, right = text[: found.start()], text[found.end() :]

    metric, scope, stat = _parse_left(text, left)
    if metric in RATE_METRICS:
        limit = _parse_rate(text, right.strip(), metric)
    else:
        limit = _parse_latency(text, right.strip())
    return Threshold(expr=text, metric=metric, scope=scope, stat=stat, op=op, limit=limit)


def parse_all(exprs: Iterable[str]) -> list[Threshold]:
    """Parse every expression; each item may hold several separated by `;`. Empty items are skipped."""
    return [parse(part) for item in exprs for part in item.split(";") if part.strip()]


def observe(th: Threshold, summary: Mapping[str, Any]) -> float | None:
    """The value `th` is about, read from `summary`: ms for latency, a fraction for rates; None if no data."""
    section = _section(th, summary)
    if section is None:
        return None
    if th.metric == "error_rate":
        return _ratio(section.get("counts"), "turns_failed", "turns_ok")
    if th.metric == "conversation_success":
        return _ratio(section.get("counts"), "conversations_completed", "conversations_failed")
    stats = section.get(f"{th.metric}_ms")
    if not isinstance(stats, Mapping):
        return None
    value = stats.get(th.stat) if th.stat is not None else None
    return float(value) if isinstance(value, int | float) else None


def evaluate(thresholds: Sequence[Threshold], summary: Mapping[str, Any]) -> list[Outcome]:
    outcomes = []
    for th in thresholds:
        observed = observe(th, summary)
        unit = "ratio" if th.is_rate else "ms"
        outcomes.append(Outcome(expr=th.expr, observed=observed, passed=th.check(observed), unit=unit))
    return outcomes


def verdict(outcomes: Sequence[Outcome]) -> str:
    """`pass` when every threshold passed (or there are none), else `fail`."""
    return "pass" if all(o.passed for o in outcomes) else "fail"


def can_still_pass(th: Threshold, summary: Mapping[str, Any]) -> bool:
    """Whether a run in progress should go on, for `--threshold-abort`.

    No data yet: True. Otherwise whether it passes now, as k6's abortOnFail: a `max` above a `<`/`<=`
    limit or a `min` below a `>`/`>=` limit can never recover; other thresholds might, but a run that
    asked to abort on thresholds stops at the first breach.
    """
    observed = observe(th, summary)
    return observed is None or th.check(observed)


def _parse_left(text: str, left: str) -> tuple[str, tuple[str, str] | None, str | None]:
    m = _NAME_RE.match(left)
    if m is None or not m.group(1):
        shown = left.strip()
        if not shown:
            raise _error(text, f"missing metric before the operator: use {_METRICS_HELP}")
        raise _error(text, f"unknown metric '{shown}': use {_METRICS_HELP}")
    metric = m.group(1)
    if metric not in METRICS:
        raise _error(text, f"unknown metric '{metric}': use {_METRICS_HELP}")
    rest = left[m.end() :]

    scope: tuple[str, str] | None = None
    if rest.startswith("{"):
        close = rest.find("}")
        scope = _parse_scope(text, metric, rest[1:close])
        rest = rest[close + 1 :].strip()
    elif "{" in rest or "}" in rest:
        raise _error(text, f"misplaced scope: put it right after the metric, as in {metric}{{turn=1}}")

    if metric in RATE_METRICS:
        if rest:
            raise _error(text, f"{metric} takes no statistic: write {metric}<1% (got '{rest}')")
        return metric, scope, None
    if not rest:
        raise _error(text, f"missing statistic: write {metric}.p95 ({_STATS_HELP})")
    if not rest.startswith("."):
        raise _error(text, f"unexpected '{rest}' after {metric}: write {metric}.STAT with STAT {_STATS_HELP}")
    given = rest[1:].strip()
    stat = _STAT_ALIASES.get(given, given)
    if stat not in STATS:
        if not given:
            raise _error(text, f"missing statistic after '.': use {_STATS_HELP}")
        raise _error(text, f"unknown statistic '{given}': use {_STATS_HELP}")
    return metric, scope, stat


def _parse_scope(text: str, metric: str, inner: str) -> tuple[str, str]:
    key, eq, value = (part.strip() for part in inner.partition("="))
    if not inner.strip():
        raise _error(text, "empty scope {}: use {turn=N} or {scenario=NAME}")
    if key not in ("turn", "scenario"):
        shown = key or inner.strip()
        raise _error(text, f"unknown scope '{shown}': use {{turn=N}} or {{scenario=NAME}}")
    if not eq or not value:
        raise _error(text, f"scope '{key}' needs a value: write {{{key}=...}}")
    if metric == "itl":
        raise _error(text, "itl has no per-turn or per-scenario breakdown: use itl.STAT without a scope")
    if key == "turn":
        if not _TURN_RE.fullmatch(value) or int(value) < 1:
            raise _error(text, f"turn '{value}' is not a turn number: use an integer >= 1, as in {{turn=1}}")
        if metric in ("conversation", "conversation_success"):
            raise _error(text, f"{metric} has no per-turn scope: use {{scenario=NAME}} or no scope")
        return key, str(int(value))
    if not _SCENARIO_RE.fullmatch(value):
        raise _error(text, f"scenario '{value}' is not a scenario name: use letters, digits, _, - and .")
    return key, value


def _parse_latency(text: str, right: str) -> float:
    m = _NUMBER_RE.match(right)
    if m is None:
        if not right:
            raise _error(text, "missing limit after the operator: write a number with a unit (us, ms, s)")
        raise _error(text, f"'{right}' is not a number with a unit (us, ms, s)")
    unit = right[m.end() :].strip()
    if unit == "%":
        raise _error(
            text,
            "a latency takes us, ms or s, not %: percentages are for error_rate and conversation_success",
        )
    if unit and unit not in UNITS_MS:
        raise _error(text, f"unknown unit '{unit}': use us, ms or s (a bare number is ms)")
    # Decimal arithmetic, so that 506400us is exactly the float 506.4.
    return float(Decimal(m.group()) * UNITS_MS[unit or "ms"])


def _parse_rate(text: str, right: str, metric: str) -> float:
    m = _NUMBER_RE.match(right)
    if m is None:
        if not right:
            raise _error(text, "missing limit after the operator: write a fraction (0.01) or a percent (1%)")
        raise _error(text, f"'{right}' is not a fraction (0.01) or a percentage (1%)")
    unit = right[m.end() :].strip()
    value = Decimal(m.group())
    if unit == "%":
        if value > 100:
            raise _error(text, f"{m.group()}% is over 100%: {metric} is between 0% and 100%")
        return float(value / 100)
    if unit:
        raise _error(text, f"{metric} is a ratio, not a time ('{unit}'): write a fraction (0.01) or 1%")
    if value > 1:
        raise _error(text, f"{m.group()} is over 1: write a fraction 0..1 or a percentage ({m.group()}%)")
    return float(value)


def _section(th: Threshold, summary: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if th.scope is None:
        if th.is_rate:
            return summary
        metrics = summary.get("metrics")
        return metrics if isinstance(metrics, Mapping) else None
    key, value = th.scope
    table = summary.get("by_turn" if key == "turn" else "by_scenario")
    if not isinstance(table, Mapping):
        return None
    entry = table.get(value)
    return entry if isinstance(entry, Mapping) else None


def _ratio(counts: Any, numerator: str, other: str) -> float | None:
    """numerator / (numerator + other); None without counts or with a zero denominator."""
    if not isinstance(counts, Mapping):
        return None
    num, rest = counts.get(numerator), counts.get(other)
    if not isinstance(num, int | float) or not isinstance(rest, int | float) or num + rest <= 0:
        return None
    return float(num) / float(num + rest)


def _error(text: str, problem: str) -> ConfigError:
    shown = text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")
    return ConfigError(f"--threshold '{shown}': {problem}")
