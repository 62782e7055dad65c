"""summary.json (`loadtest.summary/1`): its shape, its one reader, and what is computed from it.

Every report (console, Markdown, junit.xml, HTML, `loadtest compare`) and the thresholds read a
summary through these types and functions, so that a rate or a duration is worked out once.

Metric sections are keyed by `catalog.Metric.summary_key` (`ttft_ms`, `output_tps`) and counts by
`catalog.Counter.key`: those two are plain dicts, so a new metric or counter needs no edit here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NotRequired, Required, TypedDict, cast

import orjson

from loadtest import catalog
from loadtest.errors import ConfigError

SCHEMA = "loadtest.summary/1"
SCHEMA_PREFIX = "loadtest.summary/"


class Stats(TypedDict):
    """One histogram in milliseconds, or the metric's own unit (`catalog.Metric.unit`: output_tps in
    tokens/s), `None` without samples, with the histogram encoded (`hdr`, thousandths of the unit)
    for charts and exact merges. Its statistic keys are `catalog.STAT_KEYS`."""

    count: int
    min: float | None
    mean: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    p999: float | None
    max: float | None
    hdr: NotRequired[str]


class ScopeEntry(TypedDict, total=False):
    """One value of `by_turn` or `by_scenario`. It also holds the `Stats` of each metric kept for that
    scope under its summary key (`ttft_ms`): read them with `stats_of`."""

    counts: dict[str, int]
    # Failed turns by kind (by_scenario always, by_turn when a turn failed), and the first example of
    # each kind in this scope: what a check expected and the start of the reply it got.
    errors: dict[str, int]
    examples: dict[str, str]


class ErrorEntry(TypedDict):
    kind: str  # a catalog.Failure, or http_{status}
    count: int
    example: str


# A threshold's unit: a metric's (`catalog.Metric.unit`: ms, tokens/s) or a rate's ("ratio").
Unit = Literal["ms", "tokens/s", "ratio"]


class ThresholdOutcome(TypedDict):
    expr: str
    observed: float | None  # in `unit`: ms, tokens/s, or a fraction for "ratio"; None: no data
    passed: bool
    unit: Unit


class Timeline(TypedDict):
    interval_s: int
    # {"t": epoch s, "users": int | None, counts of catalog.TIMELINE_COUNTS, and for each timeline
    # metric its summary key with count, the catalog.TIMELINE_STATS and max}
    points: list[dict[str, Any]]


class TimeSplit(TypedDict):
    """Where the time of the succeeded turns around one percentile of turn latency went: the turns in
    the 5 %-wide band of latency that holds it, their number and mean latency, and the mean of each
    of `catalog.TIME_SPLIT_PARTS` (`{part}_ms`), which add up to `turn_ms`."""

    turn_ms: float
    turns: int
    setup_ms: float  # request start to the connection acquired: pool wait, then DNS, connect, TLS
    headers_ms: float  # then to the response headers
    first_content_ms: float  # then to the first answer content
    streaming_ms: float  # then to the last event


class RunInfo(TypedDict, total=False):
    id: str
    started: str | None
    ended: str
    duration_s: float | None
    loadtest_version: str | None
    locust_version: str | None
    host: str | None
    deployment: str | None
    channel: str | None
    mock: bool
    users: int
    workers: int
    history: str | None
    transport: str | None
    gc: str | None
    system_fingerprints: list[str]
    workers_without_final_report: list[str]
    # Workers that went missing mid-run: {"id", "lost_after_s"}; their data until then is kept.
    workers_lost: list[dict[str, Any]]
    aborted_by_threshold: str
    # What was planned (-t, or the --stages total; None: until stopped) and what ended the run: one
    # of `verdict.STOPPED_BY`; `signal` names it (SIGINT, SIGTERM) when one did.
    planned_duration_s: float | None
    stopped_by: str
    signal: str
    # Fail-fast: the line naming the refusal (every first turn 401, 403 or 404) and its fix.
    refused: str
    # Locust's RESET during the run: when the last one was, and the seconds the figures cover since.
    reset_at: str
    measured_s: float
    # The options the run went with, as given or defaulted (`options.OPTIONS` by their flag's name;
    # never a secret: keys come from the environment only).
    settings: dict[str, Any]


class Reason(TypedDict):
    """Why a run did not pass: `kind` is a `verdict.ReasonKind`, `text` one line for people."""

    kind: str
    text: str


class Summary(TypedDict, total=False):
    """A run's summary.json. A run writes every key but the last four only when it has them;
    `load_summary` guarantees `schema` and `metrics`, and readers take the rest with `.get`, so
    that older summaries still render."""

    schema: Required[str]
    metrics: Required[dict[str, Stats]]
    run: RunInfo
    counts: dict[str, int]
    by_turn: dict[str, ScopeEntry]
    by_scenario: dict[str, ScopeEntry]
    errors: list[ErrorEntry]
    protocol: dict[str, int]
    timeline: Timeline
    thresholds: list[ThresholdOutcome]
    # The one verdict every output shows: pass, fail, incomplete or empty (`verdict.VERDICTS`); the
    # reasons behind it (none for a pass), and the exit code it sets.
    verdict: str
    reasons: list[Reason]
    exit_code: int
    # Options that had no effect, latency-only thresholds while turns failed...: one line each.
    warnings: list[str]
    client_health: dict[str, Any]
    # Good turns and conversations (`loadtest.goodput.section`), and a capacity search's answer and
    # steps (`loadtest.capacity.section`).
    goodput: dict[str, Any]
    capacity: dict[str, Any]
    # "Where the time goes", by catalog.TIME_SPLIT_STATS key (p50, p95, p99); absent when no turn
    # succeeded.
    time_split: dict[str, TimeSplit]


def load_summary(path: Path) -> Summary:
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
    if not isinstance(schema, str) or not schema.startswith(SCHEMA_PREFIX):
        raise ConfigError(
            f'{file} is not a loadtest summary (no "schema": "{SCHEMA}"): '
            "pass the summary.json a loadtest run wrote"
        )
    if schema != SCHEMA:
        # Another version names its keys otherwise: read as this one, a renamed key looks like a change.
        raise ConfigError(
            f"{file} is a {schema} summary and this loadtest reads {SCHEMA}: use the version that wrote it"
        )
    if not isinstance(data.get("metrics"), dict):
        raise ConfigError(f'{file} has no "metrics": pass the summary.json a loadtest run wrote')
    summary: Summary = data
    return summary


@dataclass(frozen=True, slots=True)
class ScopedError:
    """Failed turns of one kind in one scenario or turn, with the first example there."""

    scope: str  # catalog.SCENARIO or catalog.TURN
    value: str
    kind: str
    count: int
    example: str


def scoped_errors(summary: Mapping[str, Any]) -> list[ScopedError]:
    """The failures of `by_scenario`, then of `by_turn`, most frequent first within each: where a check
    fails and what it saw. Empty for a summary written before scopes kept examples."""
    out: list[ScopedError] = []
    for scope, key in ((catalog.SCENARIO, "by_scenario"), (catalog.TURN, "by_turn")):
        table = summary.get(key)
        found = []
        for value, entry in table.items() if isinstance(table, Mapping) else ():
            if not isinstance(entry, Mapping):
                continue
            examples = entry.get("examples")
            if not isinstance(examples, Mapping):
                continue
            for kind, count in (entry.get("errors") or {}).items():
                found.append(
                    ScopedError(scope, str(value), str(kind), int(count), str(examples.get(kind, "")))
                )
        out += sorted(found, key=lambda e: (-e.count, e.value, e.kind))
    return out


def number(value: object) -> float | None:
    """A JSON number as a float; None for anything else (null, a string, a bool)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def stats_of(section: Mapping[str, object] | None, metric: catalog.Metric) -> Stats | None:
    """`metric`'s statistics in `section`: a summary's `metrics`, or a `by_turn`/`by_scenario` entry."""
    found = section.get(metric.summary_key) if section is not None else None
    return cast(Stats, found) if isinstance(found, Mapping) else None


def table_metrics(
    section: Mapping[str, object] | None, metrics: tuple[catalog.Metric, ...] = catalog.TABLE_METRICS
) -> list[catalog.Metric]:
    """The rows of a summary table of `section`: each of `metrics` it holds, an optional one only with
    samples (no TLS row for a run without TLS, no token rows for a server that sends no usage)."""
    shown = []
    for metric in metrics:
        stats = stats_of(section, metric)
        if stats is not None and (not metric.optional or number(stats.get("count"))):
            shown.append(metric)
    return shown


def stat_of(section: Mapping[str, object] | None, metric: catalog.Metric, stat: catalog.Stat) -> float | None:
    """One statistic in ms, or None when the metric has no samples (or the section lacks it)."""
    stats = stats_of(section, metric)
    return number(cast(Mapping[str, object], stats).get(stat.key)) if stats is not None else None


def counts_of(source: Mapping[str, object]) -> Mapping[str, object]:
    """The counts of a summary or of a by_turn/by_scenario entry (both hold them under `counts`), or
    `source` itself when it is already counts."""
    counts = source.get("counts", source)
    return cast(Mapping[str, object], counts) if isinstance(counts, Mapping) else {}


def count_of(source: Mapping[str, object], key: str) -> float | None:
    return number(counts_of(source).get(key))


@dataclass(frozen=True, slots=True)
class Rate:
    """A share worked out from counters: part / the sum of `whole`."""

    key: str  # as thresholds name it: error_rate<1%
    meaning: str
    part: str  # catalog.Counter keys
    whole: tuple[str, ...]

    @property
    def counters(self) -> tuple[str, ...]:
        return (self.part, *self.whole)

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes all its counters are kept for, so the rate can be read per turn or scenario."""
        kept = {c.key: c.scopes for c in catalog.COUNTERS}
        return tuple(s for s in catalog.SCOPES if all(s in kept[key] for key in self.counters))

    def of(self, source: Mapping[str, object]) -> float | None:
        """The rate in `source` (a summary, a by_turn/by_scenario entry or counts); None without
        counts or with a zero denominator."""
        part = count_of(source, self.part)
        whole = [count_of(source, key) for key in self.whole]
        if part is None or None in whole:
            return None
        total = sum(n for n in whole if n is not None)
        return part / total if total > 0 else None


ERROR_RATE = Rate(
    "error_rate",
    "failed turns / (ok + failed turns); cut turns are left out",
    "turns_failed",
    ("turns_failed", "turns_ok"),
)
CONVERSATION_SUCCESS = Rate(
    "conversation_success",
    "completed / (completed + failed conversations)",
    "conversations_completed",
    ("conversations_completed", "conversations_failed"),
)
GOODPUT = Rate(
    "goodput",
    "good turns (succeeded within the --goodput bounds) / (ok + failed turns)",
    "turns_good",
    ("turns_ok", "turns_failed"),
)
CONVERSATION_GOODPUT = Rate(
    "conversation_goodput",
    "good conversations (completed, every turn good) / (completed + failed conversations)",
    "conversations_good",
    ("conversations_completed", "conversations_failed"),
)
RATES = (ERROR_RATE, CONVERSATION_SUCCESS, GOODPUT, CONVERSATION_GOODPUT)
RATE_BY_KEY = {r.key: r for r in RATES}


def error_rate(source: Mapping[str, object]) -> float | None:
    """failed / (ok + failed) turns of a summary, a by_turn/by_scenario entry or counts; None without
    turns. The one definition: thresholds, compare and every report use it."""
    return ERROR_RATE.of(source)


def duration_s(run: Mapping[str, object]) -> float | None:
    """`run.duration_s`, else ended - started; None when neither is known."""
    value = number(run.get("duration_s"))
    if value is not None and value > 0:
        return value
    try:
        started = datetime.fromisoformat(str(run["started"]))
        ended = datetime.fromisoformat(str(run["ended"]))
    except (KeyError, TypeError, ValueError):
        return None
    seconds = (ended - started).total_seconds()
    return seconds if seconds > 0 else None


def throughput(summary: Mapping[str, object]) -> float | None:
    """Completed turns per second over the time the figures cover (since a RESET, when there was one);
    None without a duration."""
    return per_second(summary, "turns_ok")


def per_second(summary: Mapping[str, object], counter: str) -> float | None:
    """A count of `summary` per second of the time its figures cover (since a RESET, when there was
    one); None without the count or a duration."""
    count = count_of(summary, counter)
    run = summary.get("run")
    seconds = None
    if isinstance(run, Mapping):
        seconds = number(run.get("measured_s")) or duration_s(cast(Mapping[str, object], run))
    if count is None or not seconds:
        return None
    return count / seconds


def format_observed(observed: float | None, unit: str) -> str:
    """A threshold's observed value: `912.3 ms`, `42.1 tokens/s`, `1.52%` (unit "ratio") or `no data`."""
    if observed is None:
        return "no data"
    if unit == "ratio":
        return f"{observed * 100:.2f}%"
    return f"{catalog.format_number(observed)} {unit}"
