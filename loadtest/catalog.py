"""What a run measures, in one place: metrics, statistics, counters and failed-turn kinds.

Everything that lists metrics (summary.json, thresholds, the console, Markdown, HTML, the web UI tab,
`loadtest compare`) derives its list from here. Adding a metric is one `Metric` entry plus the line
that records it (see `loadtest.recorder`); adding a counter is one `Counter` entry.

Plain data only: this module imports nothing of loadtest's, so anything may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# Scopes a metric or counter can be broken down by: `ttft{turn=1}`, `turns{scenario=booking}`.
TURN = "turn"
SCENARIO = "scenario"
SCOPES = (TURN, SCENARIO)


@dataclass(frozen=True, slots=True)
class Stat:
    """One statistic of a latency histogram, as summary.json names it and as people read it."""

    key: str  # in summary.json: p999
    label: str  # shown and accepted in thresholds: p99.9
    percentile: float | None  # None for min, mean and max


STATS = (
    Stat("min", "min", None),
    Stat("mean", "mean", None),
    Stat("p50", "p50", 50.0),
    Stat("p90", "p90", 90.0),
    Stat("p95", "p95", 95.0),
    Stat("p99", "p99", 99.0),
    Stat("p999", "p99.9", 99.9),
    Stat("max", "max", None),
)
STAT_KEYS = tuple(s.key for s in STATS)
PERCENTILE_STATS = tuple(s for s in STATS if s.percentile is not None)
# The tables of a report (console, Markdown, HTML, compare): the tail, not min and mean.
TABLE_STATS = tuple(s for s in STATS if s.key in ("p50", "p90", "p95", "p99", "p999", "max"))
# Per-turn and per-scenario tables, the time series and the regression gate: fewer columns.
BREAKDOWN_STATS = tuple(s for s in STATS if s.key in ("p50", "p95", "p99"))
TIMELINE_STATS = tuple(s for s in STATS if s.key in ("p50", "p90", "p99"))
STAT_BY_LABEL = {**{s.label: s for s in STATS}, **{s.key: s for s in STATS}, "avg": STATS[1]}


MS = "ms"
TOKENS_PER_S = "tokens/s"


@dataclass(frozen=True, slots=True)
class Metric:
    """One histogram of a run. Values are recorded in thousandths of `unit` (µs for ms, milli-tokens
    per second for tokens/s), so every statistic is the recorded value / 1000 in `unit`."""

    key: str  # summary.json has it under `metrics` as `summary_key`
    label: str  # long name, for tables and charts
    short: str  # column heading where space is tight
    scopes: tuple[str, ...] = ()  # breakdowns kept: by_turn, by_scenario
    threshold: bool = True  # usable as METRIC.STAT in --threshold
    compared: bool = False  # in `loadtest compare`'s table
    gated: bool = False  # a regression of it fails `loadtest compare`
    timeline: bool = False  # kept per time-series interval
    table: bool = True  # a row of the summary tables (console, Markdown, HTML, web UI tab)
    # Left out of a table when it has no samples: a run without TLS has no `tls`, a server that sends
    # no usage no token figures. The others show a row of dashes, which says no turn got that far.
    optional: bool = False
    color: str = "#64748b"  # charts
    shades: tuple[str, str, str] = ("#cbd5e1", "#64748b", "#1e293b")  # p50, p90, p99 light to dark
    unit: str = MS

    @property
    def summary_key(self) -> str:
        """`ttft_ms` for a time; the bare key for another unit (`output_tps`, in tokens/s)."""
        return f"{self.key}_ms" if self.unit == MS else self.key

    @property
    def heading(self) -> str:
        """The label with its unit when that is not ms, for tables whose heading says (ms)."""
        return self.label if self.unit == MS else f"{self.label} ({self.unit})"


TTFT = Metric(
    "ttft",
    "TTFT",
    "TTFT",
    scopes=(TURN, SCENARIO),
    compared=True,
    gated=True,
    timeline=True,
    color="#2563eb",
    shades=("#93c5fd", "#3b82f6", "#1e3a8a"),
)
TURN_LATENCY = Metric(
    "turn",
    "turn latency",
    "turn",
    scopes=(TURN, SCENARIO),
    compared=True,
    gated=True,
    timeline=True,
    color="#7c3aed",
    shades=("#c4b5fd", "#8b5cf6", "#4c1d95"),
)
ITL = Metric("itl", "inter-chunk gap", "inter-chunk", compared=True, color="#0891b2")
CONVERSATION = Metric("conversation", "conversation", "conversation", scopes=(SCENARIO,), color="#059669")
# Measured from the intended start of a turn (coordinated omission corrected); the others from the
# actual send (service time).
TTFT_RESPONSE = Metric(
    "ttft_response",
    "TTFT from the intended start",
    "TTFT (resp.)",
    threshold=False,
    table=False,
    color="#93c5fd",
)
TURN_RESPONSE = Metric(
    "turn_response",
    "turn latency from the intended start",
    "turn (resp.)",
    threshold=False,
    table=False,
    color="#c4b5fd",
)
# Where the time of a turn goes (see `loadtest.client.TurnResult` and the README's "What a turn
# measures"). Request start to the response headers, for every turn that got them.
TTFB = Metric("ttfb", "time to response headers", "TTFB", compared=True, color="#0d9488")
# The set-up of a new connection, each phase on its own (a reused connection has none).
DNS = Metric("dns", "DNS lookup (new connections)", "DNS", compared=True, optional=True, color="#a16207")
CONNECT = Metric(
    "connect", "TCP connect (new connections)", "connect", compared=True, optional=True, color="#ca8a04"
)
TLS = Metric("tls", "TLS handshake (new connections)", "TLS", compared=True, optional=True, color="#eab308")
# Request start to the first reasoning chunk (`delta.reasoning_content` or `delta.reasoning`).
TTFR = Metric("ttfr", "time to first reasoning", "TTFR", compared=True, optional=True, color="#db2777")
# From the usage the stream reports (--api openai): time per output token after the first, and output
# tokens per second of streaming.
TPOT = Metric("tpot", "time per output token", "TPOT", compared=True, optional=True, color="#ea580c")
OUTPUT_TPS = Metric(
    "output_tps",
    "output tokens per second",
    "tokens/s",
    compared=True,
    optional=True,
    color="#16a34a",
    unit=TOKENS_PER_S,
)
METRICS = (
    TTFT,
    TURN_LATENCY,
    ITL,
    CONVERSATION,
    TTFT_RESPONSE,
    TURN_RESPONSE,
    TTFB,
    DNS,
    CONNECT,
    TLS,
    TTFR,
    TPOT,
    OUTPUT_TPS,
)
METRIC_BY_KEY = {m.key: m for m in METRICS}
# What the summary tables show (console, Markdown, HTML, web UI tab): the service-time metrics.
TABLE_METRICS = tuple(m for m in METRICS if m.table)
THRESHOLD_METRICS = tuple(m for m in METRICS if m.threshold)
COMPARED_METRICS = tuple(m for m in METRICS if m.compared)
TIMELINE_METRICS = tuple(m for m in METRICS if m.timeline)


def scoped_metrics(scope: str) -> tuple[Metric, ...]:
    """The metrics kept per turn index (TURN) or per scenario (SCENARIO)."""
    return tuple(m for m in METRICS if scope in m.scopes)


@dataclass(frozen=True, slots=True)
class Counter:
    """One count of a run, under `counts` in summary.json."""

    key: str
    label: str
    scopes: tuple[str, ...] = ()
    timeline: bool = False  # kept per time-series interval


COUNTERS = (
    Counter("turns", "turns", (TURN, SCENARIO)),
    Counter("turns_ok", "turns ok", (TURN, SCENARIO), timeline=True),
    Counter("turns_failed", "turns failed", (TURN, SCENARIO), timeline=True),
    Counter("turns_cut", "turns cut by the end of the run", (TURN, SCENARIO)),
    # Succeeded within the --goodput bounds (every success without bounds): see loadtest.goodput.
    Counter("turns_good", "good turns (within the --goodput bounds)", (TURN, SCENARIO)),
    Counter("conversations_started", "conversations started", (SCENARIO,)),
    Counter("conversations_completed", "conversations completed", (SCENARIO,)),
    Counter("conversations_failed", "conversations failed", (SCENARIO,)),
    Counter("conversations_abandoned", "conversations abandoned", (SCENARIO,)),
    Counter("conversations_good", "good conversations (completed, every turn good)", (SCENARIO,)),
    Counter("chunks", "content chunks", timeline=True),
    Counter("chars", "characters of content"),
    # Reasoning (`delta.reasoning_content`, `delta.reasoning`) is counted apart from the answer.
    Counter("reasoning_chars", "characters of reasoning"),
    # Connections: a turn that opened one, or reused one the user had kept alive.
    Counter("connections_opened", "connections opened", timeline=True),
    Counter("connections_reused", "connections reused", timeline=True),
    # Tokens as the stream's usage reports them (--api openai); never estimated.
    Counter("turns_with_usage", "turns whose stream reported token usage"),
    Counter("prompt_tokens", "prompt tokens"),
    Counter("completion_tokens", "completion tokens", timeline=True),
    Counter("reasoning_tokens", "reasoning tokens (part of the completion tokens)"),
    Counter("turns_late", "turns started over 10 ms late"),
    Counter("arrivals", "arrivals (open model)"),
    Counter("arrivals_late", "arrivals started over 10 ms late"),
    Counter("arrivals_dropped", "arrivals dropped after --max-queue-wait"),
    Counter("arrivals_cut", "arrivals still waiting at the end, or at a rate search's drain"),
)
COUNT_KEYS = tuple(c.key for c in COUNTERS)
COUNTER_KEYS = frozenset(COUNT_KEYS)
TIMELINE_COUNTS = tuple(c.key for c in COUNTERS if c.timeline)


def scoped_counts(scope: str) -> tuple[str, ...]:
    """The counters kept per turn index (TURN) or per scenario (SCENARIO)."""
    return tuple(c.key for c in COUNTERS if scope in c.scopes)


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a succeeded turn's latency in "Where the time goes" (summary.json's `time_split`)."""

    key: str  # `{key}_ms` in each entry of time_split
    label: str


# The parts add up to the turn latency: request start -> connection acquired (pool wait, then DNS,
# TCP connect and TLS for a new connection) -> response headers -> first answer content -> last event.
TIME_SPLIT_PARTS = (
    Part("setup", "connection set-up"),
    Part("headers", "waiting for the response headers"),
    Part("first_content", "headers to first content"),
    Part("streaming", "streaming"),
)
# Which statistics of turn latency time_split explains: the turns in the band that holds each.
TIME_SPLIT_STATS = BREAKDOWN_STATS
# Turns are grouped by latency in log-spaced bands, each this ratio wide (5 %).
TIME_SPLIT_BAND_RATIO = 1.05


@dataclass(frozen=True, slots=True)
class ProtocolCount:
    """One count of how the endpoint spoke the event-stream format, under `protocol` in summary.json."""

    key: str
    note: str
    normal: bool = False  # a normal stream has these; the others are quirks worth a look when not zero


PROTOCOL_COUNTS = (
    ProtocolCount("no_done", "streams that ended without data: [DONE]"),
    ProtocolCount("unterminated_tail", "streams whose last event no blank line ended"),
    ProtocolCount("empty_events", "blank lines that carried no data"),
    ProtocolCount("events_after_done", "events received after [DONE]"),
    ProtocolCount("bom", "streams that began with a byte-order mark"),
    ProtocolCount("role_only_chunks", "chunks with only the assistant role (usual first chunk)", normal=True),
    ProtocolCount("comments", "comment lines (keep-alives)", normal=True),
)
PROTOCOL_KEYS = frozenset(c.key for c in PROTOCOL_COUNTS)

# The client is the bottleneck when any of these holds, over the run or in any one process:
# - event-loop lag p99 above 10 ms: every TTFT and inter-chunk gap the client measures is late by
#   the lag, and token gaps are typically 10-50 ms, so beyond this the ITL tail is the client's own.
LOOP_LAG_P99_LIMIT_MS = 10.0
# - CPU p90 above 90 % of one core: a gevent process runs on one core, and near saturation every
#   greenlet queues for it (Locust warns at the same 90 %).
CPU_P90_LIMIT_PERCENT = 90.0
# - connection-pool wait p99 above 10 ms: time spent inside the client before the request goes out,
#   all of it in the measured TTFT. Each user streams one turn at a time on its own pool, so true
#   queueing for a connection is rare; but with `--transport httpx`, httpcore polls a kept-alive
#   connection with a zero timeout before reusing it, which under gevent is a trip round the event
#   loop, so this wait also carries one loop iteration. 5 ms would make it a stricter loop-lag limit
#   in disguise; at the loop-lag limit, a pool wait flagged on its own points at the pool (its
#   limits, a shared client).
POOL_WAIT_P99_LIMIT_MS = 10.0


@dataclass(frozen=True, slots=True)
class Gauge:
    """One measure of the load generator's own health (`loadtest.health`): how it is recorded, shown
    in summary.json's `client_health` and judged."""

    key: str
    label: str
    suffix: str  # of its keys in summary.json: loop_lag_ms, cpu_percent
    per_unit: int  # recorded units (µs, per-mille) per shown unit (ms, %)
    unit: str
    shown: tuple[float, ...]  # percentiles in summary.json
    percentile: float  # the percentile judged
    limit: float  # in shown units
    heading: str  # a report's row

    @property
    def summary_key(self) -> str:
        return f"{self.key}_{self.suffix}"

    @property
    def limit_recorded(self) -> int:
        return round(self.limit * self.per_unit)

    def allowed_over(self, samples: int) -> int:
        """How many of `samples` may exceed the limit before the judged percentile does: the rank
        HdrHistogram reads that percentile at, counted from the top. Counts are kept per process,
        where a histogram each would cost too much memory."""
        if samples == 0:
            return 0
        rank = max(int(self.percentile * samples / 100 + 0.5), 1)
        return samples - rank


LOOP_LAG = Gauge(
    "loop_lag", "event-loop lag", "ms", 1000, " ms", (50.0, 90.0, 99.0), 99.0, LOOP_LAG_P99_LIMIT_MS,
    "Event-loop lag (ms)",
)  # fmt: skip
CPU = Gauge(
    "cpu", "CPU", "percent", 10, "%", (50.0, 90.0), 90.0, CPU_P90_LIMIT_PERCENT, "CPU (% of one core)"
)
POOL_WAIT = Gauge(
    "pool_wait", "connection-pool wait", "ms", 1000, " ms", (50.0, 99.0), 99.0, POOL_WAIT_P99_LIMIT_MS,
    "Connection-pool wait (ms)",
)  # fmt: skip
GAUGES = (LOOP_LAG, CPU, POOL_WAIT)


class Failure(StrEnum):
    """Why a turn failed: the `kind` of a failed turn in every output. HTTP errors are `http_{status}`
    (see `http_failure`), one kind per status."""

    CONNECT = "connect"
    CONNECT_TIMEOUT = "connect_timeout"
    FIRST_BYTE_TIMEOUT = "first_byte_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    TIMEOUT = "timeout"
    DISCONNECT = "disconnect"
    TRANSPORT = "transport"
    CONTENT_TYPE = "content_type"
    ERROR_BODY = "error_body"
    STREAM_ERROR = "stream_error"
    BAD_JSON = "bad_json"
    EVENT_TOO_LARGE = "event_too_large"
    NO_CONTENT = "no_content"
    ASSERTION = "assertion"
    # Stopped by the end of the run mid-turn: counted as `turns_cut`, not as a failure.
    CUT = "cut"
    UNKNOWN = "unknown"


HTTP_FAILURE_PREFIX = "http_"


def http_failure(status: int) -> str:
    """The kind of a turn answered with HTTP `status` (>= 300: a redirect is never followed): `http_429`."""
    return f"{HTTP_FAILURE_PREFIX}{status}"


ELLIPSIS = "…"


def excerpt(text: str, limit: int) -> str:
    """`text` on one line, at most `limit` characters, ending with an ellipsis when it was cut (so a
    reader knows it goes on): error examples, replies in the turn log. The one text rule."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - len(ELLIPSIS)] + ELLIPSIS


def format_number(value: float, *, sign: bool = False) -> str:
    """A measured value as every output writes it: 1,912.3, 9.12, 0.0421 (with `sign`: +9.12)."""
    plus = "+" if sign else ""
    return f"{value:{plus},.1f}" if abs(value) >= 10 else f"{value:{plus}.3g}"
