"""Goodput: the turns and conversations that were not only answered but answered in time.

`--goodput 'ttft<800ms,turn<3s'` sets latency bounds (repeatable; `,` or `;` between bounds)::

    METRIC OP NUMBER[UNIT]          ttft<800ms   turn<=3s   itl<100ms   conversation<2m

- METRIC: a latency metric of thresholds (`catalog.THRESHOLD_METRICS`). `ttft`, `turn`, `ttfb` and
  `tpot` bound each turn's own value (a turn without it, such as `tpot` with no token usage, does not
  meet the bound), `itl` every inter-chunk gap of the turn, `conversation` a whole conversation.
- OP: `<` or `<=` (a bound is a most).
- UNIT: `us`, `ms` (a bare number), `s`, or `m` for minutes.

A turn is good when it succeeded and met every turn bound; a conversation is good when it completed,
all its turns were good and it met the conversation bound. Without bounds every successful turn and
completed conversation is good. The counts are `catalog` counters (`turns_good`, `conversations_good`),
so they add up exactly across workers; the rates are `report.schema` rates (`goodput`,
`conversation_goodput`), so thresholds take them: `goodput>=95%`.

Plain Python: `loadtest.options` parses the option with `parse`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from loadtest import catalog
from loadtest.errors import ConfigError
from loadtest.report.schema import (
    CONVERSATION_GOODPUT,
    GOODPUT,
    Summary,
    count_of,
    per_second,
)


class TurnValues(Protocol):
    """What a turn bound reads of a turn (`loadtest.client.TurnResult` has it)."""

    @property
    def ttft_ns(self) -> int | None: ...
    @property
    def latency_ns(self) -> int: ...
    @property
    def ttfb_ns(self) -> int | None: ...
    @property
    def tpot_ns(self) -> int | None: ...
    @property
    def itl_ns(self) -> Sequence[int]: ...


# What each turn bound reads of a turn: every value must meet it; None (never got there) does not.
_TURN_VALUES: dict[str, Callable[[TurnValues], Sequence[int | None]]] = {
    catalog.TTFT.key: lambda turn: (turn.ttft_ns,),
    catalog.TURN_LATENCY.key: lambda turn: (turn.latency_ns,),
    catalog.ITL.key: lambda turn: turn.itl_ns,
    catalog.TTFB.key: lambda turn: (turn.ttfb_ns,),
    catalog.TPOT.key: lambda turn: (turn.tpot_ns,),
}
TURN_METRICS = tuple(_TURN_VALUES)
CONVERSATION_METRICS = (catalog.CONVERSATION.key,)
METRICS = (*TURN_METRICS, *CONVERSATION_METRICS)
# Threshold metrics that bound no turn: a connection's phases (a turn on a kept-alive connection has
# none), the time to reasoning (only reasoning models), and output tokens per second (a least, not a
# most, and in tokens/s).
NOT_BOUNDS = (catalog.DNS.key, catalog.CONNECT.key, catalog.TLS.key, catalog.TTFR.key, catalog.OUTPUT_TPS.key)
OPS = ("<", "<=")
UNITS_NS = {
    "us": Decimal(1_000),
    "ms": Decimal(1_000_000),
    "s": Decimal(1_000_000_000),
    "m": Decimal(60_000_000_000),
}
FLAG = "--goodput"

_BOUND = re.compile(r"^\s*([A-Za-z_]+)\s*(<=|>=|<|>|==|=)\s*((?:\d+(?:\.\d*)?|\.\d+))\s*([A-Za-z%]*)\s*$")
_SEPARATORS = re.compile(r"[,;]")


@dataclass(frozen=True, slots=True)
class Bound:
    """One latency bound: `metric` at most (`<=`) or under (`<`) `limit_ns`."""

    expr: str
    metric: str
    op: str
    limit_ns: int

    def met(self, value_ns: int) -> bool:
        return value_ns <= self.limit_ns if self.op == "<=" else value_ns < self.limit_ns


@dataclass(frozen=True, slots=True)
class Goodput:
    """The bounds of `--goodput` and what they make of a turn and a conversation."""

    bounds: tuple[Bound, ...] = ()

    @property
    def exprs(self) -> list[str]:
        return [b.expr for b in self.bounds]

    def turn_good(self, turn: TurnValues) -> bool:
        """Whether a successful turn met every turn bound (no first token: a TTFT bound is not met)."""
        for bound in self.bounds:
            read = _TURN_VALUES.get(bound.metric)
            if read is not None and not all(v is not None and bound.met(v) for v in read(turn)):
                return False
        return True

    def conversation_good(self, duration_ns: int) -> bool:
        """Whether a completed conversation, all of whose turns were good, met the conversation bound."""
        return all(b.met(duration_ns) for b in self.bounds if b.metric in CONVERSATION_METRICS)


def parse(values: Iterable[Any]) -> Goodput:
    """The bounds of every value (each may hold several, `,`- or `;`-separated); `ConfigError` naming
    the fix for a bad one, or for two bounds on one metric."""
    bounds: list[Bound] = []
    for value in values:
        for part in _SEPARATORS.split(str(value)):
            if part.strip():
                bounds.append(parse_bound(part))
    seen: dict[str, str] = {}
    for bound in bounds:
        if bound.metric in seen:
            raise _error(
                bound.expr, f"{seen[bound.metric]} bounds {bound.metric} already: keep one of the two"
            )
        seen[bound.metric] = bound.expr
    return Goodput(tuple(bounds))


def parse_bound(text: str) -> Bound:
    found = _BOUND.match(text)
    metrics = " or ".join(METRICS)
    if found is None:
        raise _error(text, f"write METRIC<LIMIT with METRIC {metrics}, as in ttft<800ms or turn<3s")
    metric, op, number, unit = found.groups()
    if metric not in METRICS:
        raise _error(text, f"unknown metric '{metric}': use {metrics}")
    if op not in OPS:
        raise _error(text, f"a bound is a most: use < or <=, as in {metric}<800ms")
    unit = unit or "ms"
    if unit not in UNITS_NS:
        raise _error(text, f"unknown unit '{unit}': use us, ms, s or m (a bare number is ms)")
    limit_ns = int(Decimal(number) * UNITS_NS[unit])
    if limit_ns <= 0:
        raise _error(text, "the limit must be above 0")
    return Bound(f"{metric}{op}{number}{unit}", metric, op, limit_ns)


def _error(text: str, problem: str) -> ConfigError:
    return ConfigError(f"{FLAG} '{' '.join(text.split())}': {problem}")


# -- summary.json's `goodput` -------------------------------------------------------------------------


def section(summary: Summary, bounds: Sequence[str]) -> dict[str, Any]:
    """summary.json's `goodput`: good turns and conversations, their rates and good conversations per
    second, overall, per turn index and per scenario; from the counts, so exact across workers."""
    out: dict[str, Any] = {"bounds": list(bounds), **_rates(summary)}
    good_per_s = per_second(summary, "conversations_good")
    out["good_conversations_per_s"] = None if good_per_s is None else round(good_per_s, 4)
    out["by_turn"] = {key: _rates(entry) for key, entry in (summary.get("by_turn") or {}).items()}
    out["by_scenario"] = {key: _rates(entry) for key, entry in (summary.get("by_scenario") or {}).items()}
    return out


def _rates(source: Mapping[str, Any]) -> dict[str, Any]:
    """`turns_good` and `good_turn_rate`, and the same of conversations where they are counted."""
    out: dict[str, Any] = {}
    turns_good = count_of(source, "turns_good")
    if turns_good is not None:
        out["turns_good"] = int(turns_good)
        out["good_turn_rate"] = _round(GOODPUT.of(source))
    conversations_good = count_of(source, "conversations_good")
    if conversations_good is not None:
        out["conversations_good"] = int(conversations_good)
        out["good_conversation_rate"] = _round(CONVERSATION_GOODPUT.of(source))
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def describe(goodput: Mapping[str, Any] | None) -> str | None:
    """One line for the console and the reports: `goodput 97.10% of turns, 90.00% of conversations,
    0.75 good conversations/s within ttft<800ms, turn<3s`; None for a summary without it."""
    if not isinstance(goodput, Mapping) or "good_turn_rate" not in goodput:
        return None
    parts = [f"{_percent(goodput.get('good_turn_rate'))} of turns"]
    if "good_conversation_rate" in goodput:
        parts.append(f"{_percent(goodput.get('good_conversation_rate'))} of conversations")
    per_s = goodput.get("good_conversations_per_s")
    if isinstance(per_s, int | float):
        parts.append(f"{per_s:.2f} good conversations/s")
    bounds = goodput.get("bounds") or []
    within = (
        f"within {', '.join(str(b) for b in bounds)}" if bounds else "(no --goodput bounds: every success)"
    )
    return f"goodput {', '.join(parts)} {within}"


def _percent(value: Any) -> str:
    return f"{value * 100:.2f}%" if isinstance(value, int | float) else "-"
