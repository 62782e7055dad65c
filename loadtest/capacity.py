"""Capacity search: the most load a deployment holds within its SLO, stepped and bisected.

    locust -f locustfiles/capacity.py --headless --threshold 'ttft.p95<800ms' --search-users 10:400

The `--threshold` rules are the SLO. The search runs one load at a time (a *step*: `--step-time`,
the first `--step-warmup` of it not measured) and judges each step on its own data. It starts at the
bottom of the range and doubles the load until a step fails (or the top of the range passes), then
bisects between the highest passing and the lowest failing load until they are within
`--search-resolution` of each other, in at most `MAX_STEPS` steps. A step that fails while the load
generator was the bottleneck ends the search: the answer is then a floor.

`--search-users LOW:HIGH` steps the number of concurrent conversations (closed model);
`--search-rate LOW:HIGH` (or `constant:LOW:HIGH`) steps conversation arrivals per second (open model,
`-u` then being the most conversations at once).

This module is the plan and the arithmetic, pure: `plan` checks the options, `next_load` picks the
next step from the outcomes so far, `section` makes summary.json's `capacity` and `console_line` its
one line. Running steps and measuring them is `loadtest.search`'s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loadtest import catalog, thresholds
from loadtest.errors import ConfigError
from loadtest.report.schema import format_observed, number
from loadtest.stages import parse_timespan

if TYPE_CHECKING:
    from loadtest.settings import Settings

USERS = "users"
RATE = "rate"
# How the load of each mode is written, and the option that sets its range.
UNITS = {USERS: "concurrent conversations", RATE: "conversations/s"}
FLAGS = {USERS: "--search-users", RATE: "--search-rate"}
# Each step below the first failure doubles the load.
GROWTH = 2.0
MAX_STEPS = 20
# Why the search ended where it did (`limited_by`).
BY_SERVER = "server"  # a threshold failed at the load above the answer
BY_GENERATOR = "generator"  # that step failed while the load generator was the bottleneck
BY_RANGE = "range"  # the top of the range passed

_RANGE = re.compile(r"^\s*(?:(poisson|constant)\s*:\s*)?([0-9.]+)\s*:\s*([0-9.]+)\s*$")


@dataclass(frozen=True, slots=True)
class LoadRange:
    """The loads a search may try, `low` to `high`; for rates, how arrivals are spaced."""

    low: float
    high: float
    process: str = "poisson"


def parse_range(flag: str, text: str, *, whole: bool) -> LoadRange:
    """`10:400` (users: whole numbers from 1), `0.5:20` or `constant:0.5:20` (rates above 0)."""
    found = _RANGE.match(str(text))
    example = "10:400" if whole else "0.5:20 (or constant:0.5:20)"
    if found is None or (whole and found.group(1)):
        raise ConfigError(f"{flag} {text!r} is not a range: write LOW:HIGH, e.g. {flag} {example}")
    process, low_text, high_text = found.groups()
    try:
        low, high = float(low_text), float(high_text)
    except ValueError:
        raise ConfigError(f"{flag} {text!r} is not a range: write LOW:HIGH, e.g. {flag} {example}") from None
    if whole and not (low.is_integer() and high.is_integer() and low >= 1):
        raise ConfigError(f"{flag} {text!r}: users are whole numbers from 1, e.g. {flag} {example}")
    if not low > 0:
        raise ConfigError(f"{flag} {text!r}: the low end must be above 0, e.g. {flag} {example}")
    if not low < high:
        raise ConfigError(
            f"{flag} {text!r}: the low end must be below the high end, e.g. {flag} {high_text}:{low_text}"
        )
    return LoadRange(low, high, process or "poisson")


def parse_users(value: Any) -> LoadRange | None:
    return None if value in (None, "") else parse_range(FLAGS[USERS], str(value), whole=True)


def parse_rate(value: Any) -> LoadRange | None:
    return None if value in (None, "") else parse_range(FLAGS[RATE], str(value), whole=False)


_SECONDS = re.compile(r"^(\d+(?:\.\d+)?)s?$")


def parse_step_seconds(flag: str) -> Any:
    """A duration in Locust's forms (`60`, `60s`, `1m`, `1m30s`) or seconds with a fraction (`1.5s`),
    in seconds."""

    def parse(value: Any) -> float:
        text = str(value).strip()
        found = _SECONDS.match(text)
        try:
            seconds = float(found.group(1)) if found else float(parse_timespan(text))
        except ValueError:
            raise ConfigError(f"{flag} {text!r} is not a duration: write seconds like 60s, or 2m") from None
        return seconds

    return parse


@dataclass(frozen=True, slots=True)
class SearchPlan:
    """What a capacity search steps, over which range, and how long each step runs."""

    mode: str  # USERS or RATE
    low: float
    high: float
    resolution: float  # a fraction: stop when first failing - highest passing <= resolution x passing
    step_s: float
    warmup_s: float
    process: str = "poisson"  # RATE: how arrivals are spaced
    max_steps: int = MAX_STEPS
    min_capacity: float | None = None

    @property
    def unit(self) -> str:
        return UNITS[self.mode]

    @property
    def flag(self) -> str:
        return FLAGS[self.mode]

    def rounded(self, load: float) -> float:
        """A load as the search runs it: whole users, rates to a thousandth."""
        return float(int(load)) if self.mode == USERS else round(load, 3)

    def shown(self, load: float | None) -> float | int | None:
        """A load as summary.json holds it: users as whole numbers."""
        if load is None:
            return None
        return int(load) if self.mode == USERS else load


def plan(settings: Settings, users: int | None = None) -> SearchPlan | None:
    """The search the options ask for, or None; `ConfigError` naming the fix when they do not go
    together. `users` is Locust's `-u`, which a rate search needs (the most conversations at once)."""
    users_range, rate_range = settings.search_users, settings.search_rate
    if users_range is None and rate_range is None:
        if settings.min_capacity is not None:
            raise ConfigError(
                "--min-capacity holds a capacity search to a capacity: add --search-users LOW:HIGH "
                "or --search-rate LOW:HIGH (with locustfiles/capacity.py)"
            )
        return None
    if users_range is not None and rate_range is not None:
        raise ConfigError(
            "--search-users and --search-rate both given: a search steps one of them, "
            "concurrent conversations or arrivals per second"
        )
    mode = USERS if users_range is not None else RATE
    flag = FLAGS[mode]
    if not settings.thresholds:
        raise ConfigError(
            f"{flag} needs an SLO to search against: add --threshold, e.g. --threshold 'ttft.p95<800ms'"
        )
    if settings.threshold_abort:
        raise ConfigError(f"{flag} judges each step by the thresholds: drop --threshold-abort")
    if mode == USERS and settings.arrival_rate is not None:
        raise ConfigError(
            "--search-users steps concurrent conversations (closed model): drop --arrival-rate, "
            "or step the arrival rate with --search-rate"
        )
    if mode == RATE:
        if settings.arrival_rate is not None:
            raise ConfigError("--search-rate steps the arrival rate itself: drop --arrival-rate")
        if not users:
            raise ConfigError(
                "--search-rate needs -u, the most conversations at once (arrivals beyond wait for a "
                "free user): e.g. -u 400"
            )
    if not settings.step_warmup < settings.step_time:
        raise ConfigError(
            f"--step-warmup {settings.step_warmup:g}s leaves nothing of --step-time "
            f"{settings.step_time:g}s to measure: make the warm-up shorter than the step"
        )
    chosen = users_range or rate_range
    assert chosen is not None
    return SearchPlan(
        mode=mode,
        low=chosen.low,
        high=chosen.high,
        resolution=settings.search_resolution,
        step_s=settings.step_time,
        warmup_s=settings.step_warmup,
        process=chosen.process,
        min_capacity=settings.min_capacity,
    )


# -- stepping ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a step found: its load, whether every threshold held, whether the generator kept up."""

    load: float
    passed: bool
    generator_bound: bool = False


def next_load(plan: SearchPlan, steps: Sequence[Outcome]) -> float | None:
    """The load of the next step, or None when the search is over: doubling from `plan.low` while
    steps pass, then bisecting between the highest passing and the lowest failing load down to the
    resolution. Over as well: the top of the range passed, the bottom failed, a step failed while the
    generator was the bottleneck, or `plan.max_steps` ran."""
    if not steps:
        return plan.low
    if len(steps) >= plan.max_steps or any(s.generator_bound and not s.passed for s in steps):
        return None
    best, worst = bracket(steps)
    if worst is None:
        assert best is not None
        return None if best >= plan.high else min(plan.rounded(best * GROWTH), plan.high)
    if best is None:
        return None
    if worst - best <= plan.resolution * best:
        return None
    middle = plan.rounded((best + worst) / 2)
    return middle if best < middle < worst else None


def bracket(steps: Sequence[Outcome]) -> tuple[float | None, float | None]:
    """The lowest failing load, and the highest passing load below it (a step that passed above a
    failing one was luck, not capacity)."""
    failing = [s.load for s in steps if not s.passed]
    worst = min(failing) if failing else None
    passing = [s.load for s in steps if s.passed and (worst is None or s.load < worst)]
    return (max(passing) if passing else None), worst


# -- summary.json's `capacity` and the console line ------------------------------------------------------


def section(plan: SearchPlan, steps: Sequence[Mapping[str, Any]], *, complete: bool) -> dict[str, Any]:
    """summary.json's `capacity`: the answer (`max_passing`), the load that failed above it, why the
    search ended there, the threshold that failed with what it observed, and every step as measured
    (see `loadtest.search.step_record`)."""
    outcomes = [outcome_of(step) for step in steps]
    best, worst = bracket(outcomes)
    first_failing = next((s for s in steps if s["load"] == worst), None)
    passing = next((s for s in steps if s["load"] == best), None)
    limited_by = None
    if first_failing is not None:
        limited_by = BY_GENERATOR if _generator_bound(first_failing) else BY_SERVER
    elif best is not None and best >= plan.high:
        limited_by = BY_RANGE
    failed = _first_failed(first_failing)
    return {
        "mode": plan.mode,
        "unit": plan.unit,
        "range": [plan.shown(plan.low), plan.shown(plan.high)],
        "process": plan.process if plan.mode == RATE else None,
        "resolution": plan.resolution,
        "step_s": plan.step_s,
        "warmup_s": plan.warmup_s,
        "max_passing": plan.shown(best),
        "first_failing": plan.shown(worst),
        "limited_by": limited_by,
        "complete": complete,
        "failed_threshold": failed,
        # What the threshold that failed above the answer observed at the answer.
        "at_max_passing": _observed(passing, failed["expr"] if failed else None),
        "min_capacity": _whole(plan.min_capacity),
        "steps": list(steps),
    }


def slo_outcomes(capacity: Mapping[str, Any]) -> list[Any] | None:
    """The thresholds of a search as its summary reports them: their outcomes at the answer (where all
    held), or at the first step when none passed; None before a step finished. Over the whole run they
    would mix every load the search tried."""
    steps = list(capacity.get("steps") or [])
    best = capacity.get("max_passing")
    chosen = next((s for s in steps if s.get("load") == best), None) if best is not None else None
    if chosen is None and steps:
        chosen = steps[0]
    return None if chosen is None else list(chosen.get("thresholds") or [])


def _whole(value: float | None) -> float | int | None:
    return int(value) if value is not None and float(value).is_integer() else value


def outcome_of(step: Mapping[str, Any]) -> Outcome:
    return Outcome(float(step["load"]), bool(step.get("passed")), _generator_bound(step))


def _generator_bound(step: Mapping[str, Any]) -> bool:
    client = step.get("client")
    return bool(client.get("bottleneck")) if isinstance(client, Mapping) else False


def _first_failed(step: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if step is None:
        return None
    for outcome in step.get("thresholds") or []:
        if not outcome.get("passed"):
            return {
                "expr": outcome.get("expr"),
                "observed": outcome.get("observed"),
                "unit": outcome.get("unit"),
            }
    return None


def _observed(step: Mapping[str, Any] | None, expr: str | None) -> dict[str, Any] | None:
    """The outcome of `expr` (or, without one, of the first threshold) in `step`."""
    if step is None:
        return None
    outcomes = [o for o in step.get("thresholds") or [] if expr is None or o.get("expr") == expr]
    if not outcomes:
        return None
    first = outcomes[0]
    return {"expr": first.get("expr"), "observed": first.get("observed"), "unit": first.get("unit")}


def format_load(load: Any, unit: str | None = None) -> str:
    """`180 concurrent conversations`, `2.5 conversations/s` (without `unit`, the number alone)."""
    value = number(load)
    text = "?" if value is None else f"{value:g}"
    return f"{text} {unit}" if unit else text


def left_side(expr: Any) -> str:
    """What a threshold observes, as written: `ttft.p95` of `ttft.p95<800ms`, `error_rate`."""
    try:
        th = thresholds.parse(str(expr))
    except ConfigError:
        return str(expr)
    scope = thresholds.scope_text(th.scope) if th.scope else ""
    stat = f".{catalog.STAT_BY_LABEL[th.stat].label}" if th.stat else ""
    return f"{th.metric}{scope}{stat}"


def _seen(observed: Mapping[str, Any] | None) -> str:
    if not observed:
        return ""
    value = format_observed(number(observed.get("observed")), str(observed.get("unit") or "ms"))
    return f"{left_side(observed.get('expr'))} {value}"


def answer(capacity: Mapping[str, Any]) -> str:
    """The answer in words: `180 concurrent conversations`, `at least 180 ...`, `400 ... or more`,
    `below 10 ...`; `none` when no step finished."""
    unit = str(capacity.get("unit") or "")
    best, worst = capacity.get("max_passing"), capacity.get("first_failing")
    limited_by = capacity.get("limited_by")
    if best is None:
        return "none" if worst is None else f"below {format_load(worst, unit)}"
    found = format_load(best, unit)
    if limited_by == BY_GENERATOR:
        return f"at least {found}"
    if limited_by == BY_RANGE:
        return f"{found} or more"
    return found


def console_line(capacity: Mapping[str, Any]) -> str:
    """`capacity: 180 concurrent conversations (ttft.p95 742 ms); 200 failed ttft.p95<800ms with
    912 ms`, and what a floor or a cut search means."""
    if not capacity.get("steps"):
        return "capacity: no step of the search finished"
    line = f"capacity: {answer(capacity)}"
    seen = _seen(capacity.get("at_max_passing"))
    if seen and capacity.get("max_passing") is not None:
        line += f" ({seen})"
    failed = capacity.get("failed_threshold")
    worst = capacity.get("first_failing")
    if worst is not None:
        line += f"; {format_load(worst)} failed"
        if isinstance(failed, Mapping):
            value = format_observed(number(failed.get("observed")), str(failed.get("unit") or "ms"))
            line += f" {failed.get('expr')} with {value}"
    limited_by = capacity.get("limited_by")
    if limited_by == BY_GENERATOR:
        line += " while the load generator was the bottleneck: add --processes and search again"
    elif limited_by == BY_RANGE:
        line += f": the top of {FLAGS.get(str(capacity.get('mode')), 'the range')} passed"
    elif not capacity.get("complete"):
        line += ": the search was cut before it ended"
    return line
