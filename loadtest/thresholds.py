r"""Pass/fail thresholds over a run's summary, in the spirit of k6.

A threshold is one expression, given with `--threshold` (repeatable; several may also be joined with
`;` in one value). Whitespace around the parts is allowed.

Latency (and the other metrics)::

    METRIC[{SCOPE}].STAT OP NUMBER[UNIT]

    ttft.p95<800ms                  time to first token, 95th percentile, under 800 ms
    turn.p99<=3s                    turn latency
    itl.p50<50ms                    inter-chunk gap
    conversation.p90<30s            a whole conversation
    ttft{turn=1}.p95<500ms          first turns only
    turn{scenario=booking}.p99 < 2.5s
    ttfb.p95<500ms                  time to the response headers
    connect.p99<100ms               TCP connect of new connections (also dns, tls)
    tpot.p95<50ms                   time per output token (--api openai)
    output_tps.p50>20               output tokens per second (--api openai)

- METRIC: a `catalog.Metric` with `threshold=True`: `ttft` (time to first token), `turn` (turn
  latency), `itl` (inter-chunk gap), `conversation`, `ttfb`, `dns`, `connect`, `tls`, `ttfr` (time
  to first reasoning), `tpot`, `output_tps`.
- STAT: a `catalog.Stat` by label or key: `min`, `mean` (or `avg`), `p50`, `p90`, `p95`, `p99`,
  `p99.9` (or `p999`), `max`.
- UNIT: for a time `us`, `ms`, `s`, a bare number being milliseconds; for a metric in another unit
  (`output_tps`, tokens/s) a bare number, or the unit written out (`output_tps.p50>20tokens/s`).

Rates::

    RATE[{SCOPE}] OP NUMBER[%]

    error_rate<1%                   failed turns / (ok + failed turns); cut turns are left out
    conversation_success>=99%       completed / (completed + failed conversations)
    error_rate{scenario=booking}<0.005

- RATE: a `schema.Rate`: `error_rate`, `conversation_success`.
- A number with `%` is a percentage (0..100), without it a fraction (0..1): `1%` is `0.01`.

OP is `<`, `<=`, `>` or `>=`. SCOPE is `turn=N` (N >= 1, the N-th turn of conversations) or
`scenario=NAME`. NAME is bare (letters, digits, `_`, `-`, `.`) or in double quotes, where any
character goes and `\"` and `\\` stand for a quote and a backslash: `ttft{scenario="order status, v2"}`.
A `;` inside a quoted name does not separate thresholds. A metric takes the scopes of `Metric.scopes`,
a rate those both its counters are kept for: `conversation` and `conversation_success` have no per-turn
scope; `itl` has no scope at all.

`check_scopes` checks the scopes against the conversations file at start: a scenario it does not
hold, or a turn beyond its longest scenario, would only ever give "no data".

`evaluate` reads a summary; `evaluate_live` reads a run in progress (`--threshold-abort`) straight from
its `Metrics`: only the histograms and counters the thresholds name, through the functions that build
the summary, so that both give the same outcomes.

A threshold with no data (an empty histogram, no turns) fails. Anything that does not follow the
grammar raises `ConfigError` with one line that quotes the expression and says what is accepted.
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from loadtest import catalog
from loadtest.conversation import Scenario
from loadtest.errors import ConfigError
from loadtest.metrics import Metrics, scoped
from loadtest.report.schema import RATE_BY_KEY, RATES, ThresholdOutcome, Unit, format_observed, stat_of

__all__ = [
    "LATENCY_METRICS",
    "METRICS",
    "OPS",
    "RATE_METRICS",
    "STATS",
    "UNITS_MS",
    "Outcome",
    "Threshold",
    "can_still_pass",
    "check_scopes",
    "evaluate",
    "evaluate_live",
    "format_observed",
    "observe",
    "one_of",
    "parse",
    "parse_all",
    "quote_name",
    "scope_text",
    "split",
    "unit_of",
    "verdict",
]

LATENCY_METRICS = tuple(m.key for m in catalog.THRESHOLD_METRICS)
RATE_METRICS = tuple(r.key for r in RATES)
METRICS = (*LATENCY_METRICS, *RATE_METRICS)
STATS = catalog.STAT_KEYS
OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
UNITS_MS = {"us": Decimal("0.001"), "ms": Decimal(1), "s": Decimal(1000)}
# The unit of each metric's outcome in summary.json (a metric in a unit missing here fails loudly).
_UNITS: dict[str, Unit] = {catalog.MS: "ms", catalog.TOKENS_PER_S: "tokens/s"}
# How each scope is written, in messages.
SCOPE_FORMS = {catalog.TURN: "{turn=N}", catalog.SCENARIO: "{scenario=NAME}"}


def one_of(names: Iterable[str], conjunction: str = "or") -> str:
    """`a, b or c` (or `a, b and c`), for messages that list what is accepted."""
    *most, last = names
    return f"{', '.join(most)} {conjunction} {last}" if most else last


_STATS_HELP = one_of(s.label for s in catalog.STATS)
_METRICS_HELP = one_of(METRICS)
_OPS_HELP = one_of(OPS)
_SCOPES_HELP = one_of(SCOPE_FORMS.values())

_OP_RE = re.compile(r"<=|>=|==|!=|=<|=>|<|>|=")
_NAME_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*")
_NUMBER_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_SCENARIO_RE = re.compile(r"[A-Za-z0-9_.-]+")
_TURN_RE = re.compile(r"\d+")
# How many scenario names a message lists before it says how many more there are.
NAMES_SHOWN = 8

# The class of each character of an expression (see `_classes`).
_OUTSIDE, _SCOPE, _QUOTED, _CLOSE = "o", "s", "q", "c"


@dataclass(frozen=True, slots=True)
class Threshold:
    """One parsed threshold; `limit` is in the metric's unit (milliseconds for a time), a fraction 0..1
    for rates."""

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
    unit: Unit = "ms"

    def to_json(self) -> ThresholdOutcome:
        return {"expr": self.expr, "observed": self.observed, "passed": self.passed, "unit": self.unit}


def parse(expr: str) -> Threshold:
    """Parse one expression; raise `ConfigError` naming the problem."""
    text = expr.strip()
    if not text:
        raise _error(text, "empty threshold: write METRIC.STAT OP LIMIT (ttft.p95<800ms) or RATE OP LIMIT")
    classes, in_scope, in_quote = _classes(text)
    if in_quote:
        raise _error(
            text,
            "unclosed '\"' in the scope: end the quoted name with '\"' (a locust.conf list [a, b] splits "
            'at every comma: write a JSON list ["..."] or one threshold per value)',
        )
    if in_scope:
        raise _error(text, f"unclosed '{{': write a scope as {_SCOPES_HELP}")
    # Operators are looked for outside scopes, whose `=` is not a comparison and whose names may
    # hold anything.
    masked = "".join(ch if cls == _OUTSIDE else "#" for ch, cls in zip(text, classes, strict=True))
    if "}" in masked:
        raise _error(text, f"'}}' without '{{': write a scope as {_SCOPES_HELP}")
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

    metric, scope, stat = _parse_left(text, left, classes[: found.start()])
    if metric in RATE_METRICS:
        limit = _parse_rate(text, right.strip(), metric)
    elif catalog.METRIC_BY_KEY[metric].unit != catalog.MS:
        limit = _parse_other_unit(text, right.strip(), catalog.METRIC_BY_KEY[metric])
    else:
        limit = _parse_latency(text, right.strip())
    return Threshold(expr=text, metric=metric, scope=scope, stat=stat, op=op, limit=limit)


def parse_all(exprs: Iterable[str]) -> list[Threshold]:
    """Parse every expression; each item may hold several separated by `;`. Empty items are skipped."""
    return [parse(part) for item in exprs for part in split(item)]


def split(item: str) -> list[str]:
    """The thresholds of one value, `;`-separated; a `;` inside a quoted scenario name stays in it.
    Blank parts are left out."""
    classes, _, _ = _classes(item)
    parts, start = [], 0
    for i, (ch, cls) in enumerate(zip(item, classes, strict=True)):
        if ch == ";" and cls != _QUOTED:
            parts.append(item[start:i])
            start = i + 1
    parts.append(item[start:])
    return [part for part in parts if part.strip()]


def quote_name(name: str) -> str:
    """A scenario name as a scope writes it: bare when it can be, else in double quotes."""
    if _SCENARIO_RE.fullmatch(name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def scope_text(scope: tuple[str, str]) -> str:
    """`{turn=1}`, `{scenario=booking}`, `{scenario="order status, v2"}`: as written in a threshold."""
    key, value = scope
    return f"{{{key}={quote_name(value) if key == catalog.SCENARIO else value}}}"


def check_scopes(
    thresholds: Iterable[Threshold], scenarios: Sequence[Scenario], source: str = "the conversations file"
) -> None:
    """Raise ConfigError when a threshold's scope names a scenario that `scenarios` lack, or a turn
    beyond the longest of them: such a threshold could only fail with no data, after a whole run.
    `source` names the file in the message."""
    names = [s.name for s in scenarios]
    longest = max((len(script) for s in scenarios for script in s.scripts), default=None)
    for th in thresholds:
        if th.scope is None:
            continue
        key, value = th.scope
        if key == catalog.SCENARIO and value not in names:
            raise _error(th.expr, f"{source} has no scenario '{value}': use {_known_names(value, names)}")
        if key == catalog.TURN and longest is not None and int(value) > longest:
            turns = "{turn=1}" if longest == 1 else f"{{turn=1}} to {{turn={longest}}}"
            raise _error(
                th.expr, f"no scenario in {source} has a turn {value}, the longest has {longest}: use {turns}"
            )


def _known_names(wanted: str, names: Sequence[str]) -> str:
    """The scenario names for a message, the closest to `wanted` first, at most NAMES_SHOWN of them."""
    close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.6)
    ordered = [*close, *(n for n in names if n not in close)]
    shown = [quote_name(n) for n in ordered[:NAMES_SHOWN]]
    if len(ordered) > NAMES_SHOWN:
        shown.append(f"one of {len(ordered) - NAMES_SHOWN} more")
    return one_of(shown)


def observe(th: Threshold, summary: Mapping[str, Any]) -> float | None:
    """The value `th` is about, read from `summary`: in the metric's unit (ms for a time), a fraction for
    rates; None if no data."""
    section = _section(th, summary)
    return None if section is None else _read(th, section)


def _read(th: Threshold, section: Mapping[str, Any]) -> float | None:
    """The value `th` is about in its section: the summary, its `metrics` or a scope's entry."""
    rate = RATE_BY_KEY.get(th.metric)
    if rate is not None:
        # A rate reads the `counts` of the summary or of the scope's entry, never the summary itself.
        return rate.of(counts) if isinstance(counts := section.get("counts"), Mapping) else None
    if th.stat is None:
        return None
    return stat_of(section, catalog.METRIC_BY_KEY[th.metric], catalog.STAT_BY_LABEL[th.stat])


def evaluate(thresholds: Sequence[Threshold], summary: Mapping[str, Any]) -> list[Outcome]:
    return _outcomes(thresholds, lambda th: observe(th, summary))


def evaluate_live(thresholds: Sequence[Threshold], metrics: Metrics) -> list[Outcome]:
    """`evaluate` over the summary `metrics` would give, without building it: each threshold's section
    holds only what it reads, the statistic (`Histogram.stat_ms`, as `stats_ms` gives it to the
    summary) or counters it names, and nothing is added to `metrics`."""
    return _outcomes(thresholds, lambda th: _read(th, _live_section(th, metrics)))


def _live_section(th: Threshold, metrics: Metrics) -> Mapping[str, Any]:
    """The part of `th`'s summary section it reads, from `metrics`. A scope no turn reached reads as
    it would in the summary: no counts and no samples, so no data."""
    rate = RATE_BY_KEY.get(th.metric)
    if rate is not None:
        # As Metrics.summary_counts and summary_breakdown count: a counter never added is 0.
        counts = {key: int(metrics.counts.get(_key(key, th.scope), 0)) for key in rate.counters}
        return {"counts": counts}
    metric = catalog.METRIC_BY_KEY[th.metric]
    # `get`, not `Metrics.hist`: reading must not add empty histograms to the run's data.
    hist = metrics.histograms.get(_key(metric.key, th.scope))
    if hist is None or th.stat is None:
        return {}
    return {metric.summary_key: {th.stat: hist.stat_ms(catalog.STAT_BY_LABEL[th.stat])}}


def _key(name: str, scope: tuple[str, str] | None) -> str:
    """The key `Metrics` keeps a histogram or counter under, for the whole run or one scope value."""
    return name if scope is None else scoped(name, *scope)


def _outcomes(thresholds: Sequence[Threshold], observe: Callable[[Threshold], float | None]) -> list[Outcome]:
    outcomes = []
    for th in thresholds:
        observed = observe(th)
        outcomes.append(Outcome(expr=th.expr, observed=observed, passed=th.check(observed), unit=unit_of(th)))
    return outcomes


def unit_of(th: Threshold) -> Unit:
    """What `th` compares: "ratio" for a rate, else its metric's unit (ms, tokens/s)."""
    return "ratio" if th.is_rate else _UNITS[catalog.METRIC_BY_KEY[th.metric].unit]


def verdict(outcomes: Sequence[Outcome]) -> str:
    """`pass` when every threshold passed (or there are none), else `fail`."""
    return "pass" if all(o.passed for o in outcomes) else "fail"


def can_still_pass(outcome: Outcome) -> bool:
    """Whether a run in progress should go on, for `--threshold-abort`.

    No data yet: True. Otherwise whether it passes now, as k6's abortOnFail: a `max` above a `<`/`<=`
    limit or a `min` below a `>`/`>=` limit can never recover; other thresholds might, but a run that
    asked to abort on thresholds stops at the first breach.
    """
    return outcome.observed is None or outcome.passed


def _parse_left(text: str, left: str, classes: str) -> tuple[str, tuple[str, str] | None, str | None]:
    m = _NAME_RE.match(left)
    if m is None or not m.group(1):
        shown = left.strip()
        if not shown:
            raise _error(text, f"missing metric before the operator: use {_METRICS_HELP}")
        raise _error(text, f"unknown metric '{shown}': use {_METRICS_HELP}")
    metric = m.group(1)
    if metric not in METRICS:
        raise _error(text, f"unknown metric '{metric}': use {_METRICS_HELP}")
    rest, rest_classes = left[m.end() :], classes[m.end() :]

    scope: tuple[str, str] | None = None
    if rest.startswith("{"):
        close = rest_classes.find(_CLOSE)
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
    found = catalog.STAT_BY_LABEL.get(given)
    if found is None:
        if not given:
            raise _error(text, f"missing statistic after '.': use {_STATS_HELP}")
        raise _error(text, f"unknown statistic '{given}': use {_STATS_HELP}")
    return metric, scope, found.key


def _parse_scope(text: str, metric: str, inner: str) -> tuple[str, str]:
    key, eq, value = (part.strip() for part in inner.partition("="))
    if not inner.strip():
        raise _error(text, f"empty scope {{}}: use {_SCOPES_HELP}")
    if key not in SCOPE_FORMS:
        shown = key or inner.strip()
        raise _error(text, f"unknown scope '{shown}': use {_SCOPES_HELP}")
    quoted = value.startswith('"')
    if quoted:
        value = _unquote(text, value)
    if not eq or not value:
        raise _error(text, f"scope '{key}' needs a value: write {{{key}=...}}")
    allowed = scopes(metric)
    if not allowed:
        per = one_of(f"per-{s}" for s in SCOPE_FORMS)
        stat = "" if metric in RATE_METRICS else ".STAT"
        raise _error(text, f"{metric} has no {per} breakdown: use {metric}{stat} without a scope")
    if key == catalog.TURN:
        if not _TURN_RE.fullmatch(value) or int(value) < 1:
            raise _error(text, f"turn '{value}' is not a turn number: use an integer >= 1, as in {{turn=1}}")
        value = str(int(value))
    elif not quoted and not _SCENARIO_RE.fullmatch(value):
        raise _error(
            text,
            f"scenario '{value}' is not a scenario name: use letters, digits, _, - and ., "
            f"or quote it: {{scenario={quote_name(value)}}}",
        )
    if key not in allowed:
        others = one_of(SCOPE_FORMS[s] for s in allowed)
        raise _error(text, f"{metric} has no per-{key} scope: use {others} or no scope")
    return key, value


def _unquote(text: str, quoted: str) -> str:
    """The name in `"..."`, its `\\"` and `\\\\` read; nothing may follow the closing quote."""
    name: list[str] = []
    i = 1
    while i < len(quoted):
        ch = quoted[i]
        if ch == "\\":
            escaped = quoted[i + 1 : i + 2]
            if escaped not in ('"', "\\"):
                raise _error(
                    text,
                    f"unknown escape '\\{escaped}' in a quoted name: write \\\" for '\"' and \\\\ for '\\'",
                )
            name.append(escaped)
            i += 2
        elif ch == '"':
            after = quoted[i + 1 :].strip()
            if after:
                raise _error(text, f"'{after}' after the quoted name: put the whole name in the quotes")
            return "".join(name)
        else:
            name.append(ch)
            i += 1
    raise _error(text, "unclosed '\"' in the scope: end the quoted name with '\"'")


def _classes(text: str) -> tuple[str, bool, bool]:
    """One class per character of `text` (outside any scope, in a scope, in a quoted name or its quotes,
    a scope's closing brace), and whether the text ends inside a scope and inside a quote."""
    out: list[str] = []
    in_scope = in_quote = escaped = False
    for ch in text:
        if in_quote:
            out.append(_QUOTED)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_quote = False
        elif in_scope:
            in_quote = ch == '"'
            in_scope = ch != "}"
            out.append(_QUOTED if in_quote else _SCOPE if in_scope else _CLOSE)
        else:
            in_scope = ch == "{"
            out.append(_SCOPE if in_scope else _OUTSIDE)
    return "".join(out), in_scope, in_quote


def scopes(metric: str) -> tuple[str, ...]:
    """The scopes `metric` (a latency metric or a rate) can be given: `catalog.TURN`, `catalog.SCENARIO`."""
    rate = RATE_BY_KEY.get(metric)
    return rate.scopes if rate is not None else catalog.METRIC_BY_KEY[metric].scopes


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


def _parse_other_unit(text: str, right: str, metric: catalog.Metric) -> float:
    """A limit in a metric's own unit (tokens/s): a bare number, or one followed by the unit."""
    m = _NUMBER_RE.match(right)
    example = f"{metric.key}.p50>20"
    if m is None:
        if not right:
            raise _error(
                text, f"missing limit after the operator: write a number of {metric.unit}, as in {example}"
            )
        raise _error(text, f"'{right}' is not a number of {metric.unit}: write one, as in {example}")
    unit = right[m.end() :].strip()
    if unit and unit != metric.unit:
        raise _error(
            text, f"{metric.key} is in {metric.unit}, not '{unit}': write a bare number, as in {example}"
        )
    return float(Decimal(m.group()))


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


def _error(text: str, problem: str) -> ConfigError:
    shown = text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")
    # Scenario names quoted in the problem come from files, and may hold line breaks too.
    one_line = problem.replace("\r", "\\r").replace("\n", "\\n")
    return ConfigError(f"--threshold '{shown}': {one_line}")
