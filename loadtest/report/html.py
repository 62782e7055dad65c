"""report.html and compare.html: self-contained pages, readable offline and from a CI artifact.

The functions here shape a summary into plain values (formatted numbers, labels, flags); the markup
is in `templates/`, rendered by Jinja2 with every value autoescaped. The metrics, statistics and
counters shown come from `loadtest.catalog`, numbers are written by `catalog.format_number`.

Everything is inline: the CSS, the chart data as JSON (`tojson`, which cannot close its <script>),
uPlot (MIT, `vendor/`) and the few lines that draw with it (`assets/report.js`). No font, image or
script comes from anywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup

from loadtest import capacity, catalog
from loadtest.catalog import format_number
from loadtest.errors import ConfigError
from loadtest.report import charts
from loadtest.report.compare import (
    ERROR_RATE_FLOOR,
    Comparison,
    Delta,
    duration_s,
    error_rate,
    format_change,
    format_pp,
    format_ratio,
    rule,
    shown_deltas,
    throughput,
)
from loadtest.report.schema import number, scoped_errors
from loadtest.report.summary import RunVerdict, output_tokens_per_s, run_verdict
from loadtest.thresholds import format_observed
from loadtest.thresholds import parse as parse_threshold
from loadtest.verdict import ReasonKind

# The two metrics a run is read by: tiles, percentile distributions, the comparison's overlays.
HEADLINE_METRICS = tuple(m for m in catalog.METRICS if m.gated)
HEALTH_STATS = ("p50", "p90", "p99", "max")
RUN_FACTS = (
    ("id", "run id"),
    ("host", "host"),
    ("deployment", "deployment"),
    ("channel", "channel"),
    ("mock", "mock server"),
    ("users", "peak users"),
    ("workers", "workers"),
    ("history", "history"),
    ("transport", "HTTP transport"),
    ("gc", "garbage collector during the run"),
    ("started", "started"),
    ("ended", "ended"),
    ("duration_s", "duration"),
    ("planned_duration_s", "planned duration"),
    ("stopped_by", "stopped by"),
    ("signal", "signal"),
    ("workers_lost", "workers lost"),
    ("reset_at", "figures reset at"),
    ("measured_s", "figures cover (s)"),
    ("loadtest_version", "loadtest"),
    ("locust_version", "Locust"),
    ("system_fingerprints", "system fingerprints"),
)
CODE_FACTS = frozenset({"id", "host", "deployment", "channel"})
# Facts that differ between any two runs: not marked as a difference on the comparison page.
OWN_FACTS = frozenset({"id", "started", "ended", "duration_s"})
COMPARED_COUNTS = ("turns", "turns_ok", "turns_failed", "turns_cut", "conversations_completed", "chunks")
UPLOT_VERSION = "1.6.32"
# run.settings: shown in a card of its own, not among the facts.
SETTINGS_KEY = "settings"


def render_html(summary: Mapping[str, Any]) -> str:
    """The report of one run: verdict, facts, latency tables and charts, breakdowns, errors, protocol."""
    run = _mapping(summary.get("run"))
    metrics = _mapping(summary.get("metrics"))
    specs: list[dict[str, Any]] = []
    host = str(run.get("host") or "unknown host")
    verdict = run_verdict(summary)
    return _render(
        "report.html",
        title=f"Load test {run.get('id', '')} · {host}",
        specs=specs,
        host=host,
        parts=_run_parts(run),
        mock=bool(run.get("mock")),
        verdict=_verdict(summary, verdict),
        warnings=verdict.warnings,
        tiles=_tiles(summary),
        capacity=_capacity(summary, specs),
        thresholds=[_threshold(t) for t in _thresholds_of(summary)],
        facts=_facts(run),
        settings=_settings(run),
        latency=_latency(metrics),
        distributions=_distributions(metrics, specs),
        time_split=_time_split(summary, specs),
        time_parts=catalog.TIME_SPLIT_PARTS,
        over_time=_over_time(summary, specs),
        by_turn=_breakdown(summary.get("by_turn"), catalog.TURN),
        by_scenario=_breakdown(summary.get("by_scenario"), catalog.SCENARIO),
        errors=_errors(summary),
        scoped_errors=scoped_errors(summary),
        protocol=_protocol(summary.get("protocol")),
        protocol_legend=catalog.PROTOCOL_COUNTS,
        health=_health(summary.get("client_health")),
        version=run.get("loadtest_version") or "",
    )


def render_compare_html(comparison: Comparison, baseline: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """Two runs side by side: verdict, judged statistics, all deltas, overlaid distributions, facts."""
    b_run, n_run = _mapping(baseline.get("run")), _mapping(new.get("run"))
    specs: list[dict[str, Any]] = []
    tolerance = _pct(comparison.tolerance, None)
    b_host, n_host = str(b_run.get("host") or "?"), str(n_run.get("host") or "?")
    headline = b_host if b_host == n_host else f"{b_host} → {n_host}"
    judged_stats = _and([s.label for s in catalog.BREAKDOWN_STATS])
    judged_metrics = _and([m.label for m in HEADLINE_METRICS])
    return _render(
        "compare.html",
        title=f"Load test comparison · {headline}",
        specs=specs,
        headline=headline,
        parts=[
            Part("baseline", str(b_run.get("id", "?"))),
            Part("new", str(n_run.get("id", "?"))),
            Part(f"tolerance {tolerance}"),
        ],
        regressed=comparison.regressed,
        regressions=comparison.regressions,
        verdict_what=_compare_what(comparison, tolerance),
        judged=f"Judged: {judged_stats} of {judged_metrics}, and the error rate.",
        tolerance=tolerance,
        floor=f"{ERROR_RATE_FLOOR * 100:g} pp",
        rule=rule(comparison.tolerance),
        checks=[_check(d, comparison.tolerance) for d in comparison.checks],
        deltas=[_latency_delta(d, comparison.tolerance) for d in shown_deltas(comparison)],
        counts=_count_deltas(comparison, baseline, new),
        overlays=_overlays(baseline, new, specs),
        facts=_facts_side_by_side(b_run, n_run),
        version=n_run.get("loadtest_version") or "",
    )


# --- page -------------------------------------------------------------------------------------


def _render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("loadtest.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    # `tojson` writes <, >, & and ' as \u003c ...: the data cannot end the <script> that holds it.
    env.policies["json.dumps_kwargs"] = {"separators": (",", ":"), "allow_nan": False}
    env.globals.update(asset=_asset, uplot_version=UPLOT_VERSION, metrics=catalog.METRICS)
    env.filters["slug"] = _slug
    return env


@cache
def _asset(name: str) -> Markup:
    text = resources.files("loadtest.report").joinpath(name).read_text(encoding="utf-8")
    # Our own files, inlined as they are: none of them may close the element that holds it.
    assert "</script" not in text.lower() and "</style" not in text.lower(), name
    return Markup(text)


def _slug(title: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in title.lower())


@dataclass(frozen=True, slots=True)
class Part:
    """One piece of the line under the title: text, then a value in code type when there is one."""

    text: str
    code: str = ""


def _run_parts(run: Mapping[str, Any]) -> list[Part]:
    parts = []
    if run.get("started"):
        parts.append(Part(_when(run.get("started"))))
    seconds = duration_s(run)
    if seconds:
        parts.append(Part(_duration(seconds)))
    if run.get("users") is not None:
        parts.append(Part(f"{run['users']} users"))
    if run.get("id"):
        parts.append(Part("run", str(run["id"])))
    return parts


# --- one run ----------------------------------------------------------------------------------


# The banner's headline: what the reason that decided the verdict means.
HEADLINES = {
    ReasonKind.THRESHOLD: "A threshold failed",
    ReasonKind.FAILED_TURNS: "Turns failed, and no threshold says how many may",
    ReasonKind.STRICT_CLIENT: "The load generator was the bottleneck (--strict-client)",
    ReasonKind.MIN_CAPACITY: "The capacity found is below --min-capacity",
    ReasonKind.REFUSED: "Every first turn was refused",
    ReasonKind.INTERRUPTED: "The run was cut before its planned end",
    ReasonKind.WORKERS_LOST: "The data of a worker was lost",
    ReasonKind.EMPTY: "No turn finished: there is nothing to judge",
}


@dataclass(frozen=True, slots=True)
class Banner:
    """The verdict at the top of report.html."""

    kind: str  # pass, fail, incomplete or empty: the banner's colour
    word: str  # PASS, FAIL, INCOMPLETE or EMPTY
    what: str
    turns: str  # "2 of 40 turns failed"
    reasons: list[tuple[str, str]]  # kind, text
    ended: str  # how the run ended, when no reason says it; or ""
    ungated: bool  # a pass without thresholds: the banner says how to set some


def _verdict(summary: Mapping[str, Any], verdict: RunVerdict) -> Banner:
    thresholds = _thresholds_of(summary)
    counts = _mapping(summary.get("counts"))
    turns = f"{_int(counts.get('turns_failed')):,} of {_int(counts.get('turns')):,} turns failed"
    reasons = [(str(r.get("kind", "")), str(r.get("text", ""))) for r in verdict.reasons]
    kind = verdict.verdict
    what = _headline(thresholds, reasons)
    ungated = kind == "pass" and not thresholds
    return Banner(kind, kind.upper(), what, turns, reasons, verdict.ended or "", ungated)


def _headline(thresholds: Sequence[Mapping[str, Any]], reasons: list[tuple[str, str]]) -> str:
    """What decided the verdict, ranked as `verdict.judge` ranks it: an empty run, refused first turns,
    failed thresholds, then the first other reason."""
    kinds = [k for k, _ in reasons]
    for decisive in (ReasonKind.EMPTY, ReasonKind.REFUSED):
        if decisive in kinds:
            return HEADLINES[decisive]
    failed = sum(1 for t in thresholds if not t.get("passed"))
    if failed and len(thresholds) == 1:
        return "The threshold failed"
    if failed:
        return f"{failed} of {len(thresholds)} thresholds failed"
    if kinds:
        return HEADLINES[ReasonKind(kinds[0])] if kinds[0] in HEADLINES else kinds[0].replace("_", " ")
    if not thresholds:
        return "No thresholds were set, and no turn failed"
    return "The threshold held" if len(thresholds) == 1 else f"All {len(thresholds)} thresholds held"


@dataclass(frozen=True, slots=True)
class Tile:
    key: str
    value: str | None  # None: a dash
    unit: str
    detail: str
    bad: bool = False


def _tiles(summary: Mapping[str, Any]) -> list[Tile]:
    counts = _mapping(summary.get("counts"))
    metrics = _mapping(summary.get("metrics"))
    rate, tput = error_rate(summary), throughput(summary)

    def count(key: str) -> str:
        return f"{_int(counts.get(key)):,}"

    tiles = [
        Tile(
            "Turns completed",
            count("turns_ok"),
            "",
            f"of {count('turns')} · {count('turns_cut')} cut at the stop",
        ),
        Tile(
            "Error rate",
            None if rate is None else f"{rate * 100:.2f}",
            "%",
            f"{count('turns_failed')} failed turns",
            bad=bool(rate),
        ),
        Tile("Throughput", None if tput is None else f"{tput:,.2f}", "turns/s", "completed turns"),
        _goodput_tile(summary.get("goodput")),
    ]
    for m in HEADLINE_METRICS:
        stats = _mapping(metrics.get(m.summary_key))
        detail = f"p50 {_ms(stats.get('p50')) or '–'} {m.unit}"
        tiles.append(Tile(f"{_capital(m.label)} p95", _ms(stats.get("p95")), m.unit, detail))
    tiles.append(
        Tile(
            "Conversations",
            count("conversations_completed"),
            "",
            f"completed of {count('conversations_started')} · {count('conversations_failed')} failed · "
            f"{count('conversations_abandoned')} abandoned",
        )
    )
    return tiles


def _goodput_tile(section: Any) -> Tile:
    good = _mapping(section)
    rate = _float(good.get("good_turn_rate"))
    conversations = _float(good.get("good_conversation_rate"))
    bounds = ", ".join(str(b) for b in good.get("bounds") or []) or "no --goodput bounds"
    detail = f"of turns · {_pct(conversations, 1)} of conversations · {bounds}"
    if not good:
        detail = "not in this summary"
    return Tile("Goodput", None if rate is None else f"{rate * 100:.2f}", "%", detail)


@dataclass(frozen=True, slots=True)
class Capacity:
    """The "Latency against load" card of a capacity search."""

    answer: str  # the console's line, without its `capacity: `
    figures: list[Figure]
    steps: Table
    note: str


def _capacity(summary: Mapping[str, Any], specs: list[dict[str, Any]]) -> Capacity | None:
    section = _mapping(summary.get("capacity"))
    if not section:
        return None
    steps = [_mapping(s) for s in section.get("steps") or []]
    unit = str(section.get("unit") or "load")
    rules = _bounds(section)
    figures = []
    for m in HEADLINE_METRICS:
        chart_id = f"load-{m.key}"
        spec = charts.load_spec(chart_id, steps, m, unit, rules.get(m.key, []))
        detail = " · ".join(s.label for s in catalog.BREAKDOWN_STATS) + f", {m.unit}; the SLO dashed"
        figures.append(_figure(chart_id, _capital(m.label), detail, spec, specs, "No step finished."))
    spec = charts.goodput_load_spec("load-goodput", steps, unit)
    figures.append(_figure("load-goodput", "Goodput and errors", "% of finished turns", spec, specs, ""))
    note = (
        f"Each step ran {_num(_float(section.get('step_s')), 0)} s, measured after "
        f"{_num(_float(section.get('warmup_s')), 0)} s of warm-up; steps in the order they ran."
    )
    return Capacity(
        capacity.console_line(section).removeprefix("capacity: "), figures, _step_table(steps, unit), note
    )


def _bounds(section: Mapping[str, Any]) -> dict[str, list[charts.Bound]]:
    """The unscoped latency thresholds of the search's steps, by metric: the SLO lines of its charts."""
    found: dict[str, list[charts.Bound]] = {}
    steps = section.get("steps") or []
    outcomes = _mapping(steps[0]).get("thresholds") if steps else []
    for outcome in outcomes or []:
        try:
            th = parse_threshold(str(_mapping(outcome).get("expr", "")))
        except ConfigError:
            continue
        if th.scope is None and not th.is_rate and th.stat is not None:
            found.setdefault(th.metric, []).append(charts.Bound(f"SLO {th.expr}", th.stat, th.limit))
    return found


def _step_table(steps: list[Mapping[str, Any]], unit: str) -> Table:
    stats = catalog.BREAKDOWN_STATS
    metrics = HEADLINE_METRICS
    head = [unit, "measured", "turns", "error rate", "goodput"]
    groups: list[tuple[str, int]] = [("", 5)]
    for m in metrics:
        head += [s.label for s in stats]
        groups.append((f"{m.label} (ms)", len(stats)))
    head += ["client", "result"]
    groups.append(("", 2))
    rows = []
    for step in steps:
        client = _mapping(step.get("client"))
        cells: list[str | None] = [
            _duration(_float(step.get("duration_s")) or 0.0),
            f"{_int(step.get('turns')):,}",
            _pct(_float(step.get("error_rate")), 2),
            _pct(_float(step.get("goodput")), 2),
        ]
        for m in metrics:
            values = _mapping(step.get(m.summary_key))
            cells += [_ms(values.get(s.key)) for s in stats]
        cells += [
            "bottleneck" if client.get("bottleneck") else "kept up",
            "pass" if step.get("passed") else "FAIL",
        ]
        rows.append(Row(capacity.format_load(step.get("load")), cells))
    return Table(head, rows, groups)


@dataclass(frozen=True, slots=True)
class ThresholdRow:
    expr: str
    observed: str
    limit: str
    passed: bool


def _threshold(t: Mapping[str, Any]) -> ThresholdRow:
    unit = str(t.get("unit", "ms"))
    observed = format_observed(_float(t.get("observed")), unit)
    return ThresholdRow(str(t.get("expr", "")), observed, _limit(t.get("expr"), unit), bool(t.get("passed")))


def _limit(expr: Any, unit: str) -> str:
    """`< 450 ms` from `ttft.p95<450ms`; a dash when the expression does not parse (any more)."""
    try:
        th = parse_threshold(str(expr))
    except ConfigError:
        return "–"
    return f"{th.op} {format_observed(th.limit, unit)}"


@dataclass(frozen=True, slots=True)
class Value:
    """A fact as shown: plain text, in code type, or dimmed (none, missing)."""

    text: str
    style: str = ""  # "", "code" or "dim"


def _facts(run: Mapping[str, Any]) -> list[tuple[str, Value]]:
    run = _without_settings(run)
    items = [(label, _fact(key, run)) for key, label in RUN_FACTS if run.get(key) is not None]
    if "duration_s" not in run:
        seconds = duration_s(run)
        if seconds:
            items.append(("duration", Value(_duration(seconds))))
    known = {key for key, _ in RUN_FACTS}
    items += [
        (key.replace("_", " "), _fact(key, run)) for key in run if key not in known and run[key] is not None
    ]
    return items


def _without_settings(run: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in run.items() if key != SETTINGS_KEY}


def _settings(run: Mapping[str, Any]) -> list[tuple[str, Value]]:
    """The options the run went with (`run.settings`), as `--flag value` rows."""
    settings = _mapping(run.get(SETTINGS_KEY))
    return [(f"--{name.replace('_', '-')}", _setting_value(value)) for name, value in settings.items()]


def _setting_value(value: Any) -> Value:
    if value is None or value == [] or value == "":
        return Value("–", "dim")
    if isinstance(value, bool):
        return Value("on" if value else "off")
    if isinstance(value, list | tuple):
        return Value("; ".join(str(item) for item in value))
    if isinstance(value, float):
        return Value(f"{value:g}")
    return Value(str(value))


def _fact(key: str, run: Mapping[str, Any]) -> Value:
    value = run.get(key)
    if key == "mock":
        return Value("yes" if value else "no")
    if key in ("started", "ended"):
        return Value(_when(value))
    if key == "duration_s":
        seconds = duration_s(run)
        return Value(_duration(seconds) if seconds else str(value))
    if key == "planned_duration_s":
        planned = number(value)
        return Value(_duration(planned) if planned else str(value))
    if key == "workers_lost" and isinstance(value, list):
        lost = [_mapping(v) for v in value]
        return Value(
            ", ".join(f"{w.get('id')} after {_duration(number(w.get('lost_after_s')) or 0)}" for w in lost)
        )
    if isinstance(value, list | tuple):
        return Value(", ".join(str(v) for v in value)) if value else Value("none", "dim")
    return Value(str(value), "code" if key in CODE_FACTS else "")


@dataclass(frozen=True, slots=True)
class Row:
    """A table row: a name, then numbers as shown (None: no value, a dimmed dash)."""

    name: str
    cells: list[str | None]
    metric: str = ""  # the key of the metric it shows, for its colour


@dataclass(frozen=True, slots=True)
class Table:
    head: list[str]
    rows: list[Row]
    groups: list[tuple[str, int]] = field(default_factory=list)


def _latency(metrics: Mapping[str, Any]) -> Table:
    """The catalog's table metrics the summary has; an optional one only with samples (no TLS row for
    a run over http, no token rows for a server that sends no usage)."""
    rows = []
    for m in catalog.TABLE_METRICS:
        stats = _mapping(metrics.get(m.summary_key))
        if stats and (_int(stats.get("count")) or not m.optional):
            cells = [f"{_int(stats.get('count')):,}", *(_ms(stats.get(s.key)) for s in catalog.STATS)]
            rows.append(Row(_capital(m.heading), cells, m.key))
    return Table(["metric", "count", *(s.label for s in catalog.STATS)], rows)


@dataclass(frozen=True, slots=True)
class Figure:
    """A chart: drawn by report.js from the spec of the same id, or a note when there is no data."""

    id: str
    title: str
    detail: str
    kind: str  # of the spec (percentile or time); "" when there is none
    empty: str


def _figure(
    chart_id: str,
    title: str,
    detail: str,
    spec: dict[str, Any] | None,
    specs: list[dict[str, Any]],
    empty: str,
) -> Figure:
    if spec is not None:
        specs.append(spec)
    return Figure(chart_id, title, detail, "" if spec is None else str(spec["kind"]), empty)


def _distributions(metrics: Mapping[str, Any], specs: list[dict[str, Any]]) -> list[Figure]:
    figures = []
    for m in HEADLINE_METRICS:
        stats = _mapping(metrics.get(m.summary_key))
        curve = charts.percentile_curve(stats.get("hdr"))
        chart_id = f"dist-{m.key}"
        spec = charts.distribution_spec(chart_id, m.unit, [(m.label, m.color, curve)], stats)
        detail = f"n = {_int(stats.get('count')):,}"
        empty = "No completed turns: nothing to draw."
        figures.append(_figure(chart_id, _capital(m.label), detail, spec, specs, empty))
    return figures


@dataclass(frozen=True, slots=True)
class OverTime:
    latency: list[Figure]
    throughput: Figure
    output_tokens: Figure | None  # None when the stream reported no token usage


def _over_time(summary: Mapping[str, Any], specs: list[dict[str, Any]]) -> OverTime | None:
    tl = charts.timeline(summary)
    if tl is None:
        return None
    stats = " · ".join(s.label for s in catalog.TIMELINE_STATS)
    latency = []
    for m in catalog.TIMELINE_METRICS:
        chart_id = f"time-{m.key}"
        spec = charts.latency_over_time_spec(chart_id, tl, m)
        latency.append(_figure(chart_id, _capital(m.label), f"{stats}, {m.unit}", spec, specs, ""))
    detail = f"turns per second, every {tl.interval_s} s"
    tput = charts.throughput_spec("time-throughput", tl)
    throughput = _figure("time-throughput", "Throughput and users", detail, tput, specs, "")
    return OverTime(latency, throughput, _output_tokens(summary, tl, specs))


def _output_tokens(
    summary: Mapping[str, Any], tl: charts.Timeline, specs: list[dict[str, Any]]
) -> Figure | None:
    """Output tokens per second over time, the run's overall rate in the caption (the console's)."""
    spec = charts.output_tokens_spec("time-output-tokens", tl)
    if spec is None:
        return None
    detail = f"every {tl.interval_s} s"
    overall = output_tokens_per_s(summary)
    if overall is not None:
        detail += f"; {format_number(overall)} {catalog.TOKENS_PER_S} overall"
    return _figure("time-output-tokens", "Output tokens per second", detail, spec, specs, "")


# --- where the time goes ----------------------------------------------------------------------


# Tabled under the bars, those with samples: a run over http has no TLS handshake, one that kept its
# connections alive may have no DNS lookup after the first turns.
PHASE_METRICS = (catalog.TTFB, catalog.DNS, catalog.CONNECT, catalog.TLS)
CONNECTION_COUNTS = ("connections_opened", "connections_reused")
# A part narrower than this share of the widest bar has no room to write its ms in: the sentence under
# the bar gives it.
LABELLED_MIN_PCT = 8.0


@dataclass(frozen=True, slots=True)
class Segment:
    """A part of one bar, placed in % of the widest bar (the slowest of the percentiles)."""

    part: str  # the slug of its `catalog.Part`: its colour in the style sheet, .part-first-content
    ms: str
    x: float
    width: float

    @property
    def middle(self) -> float:
        return round(self.x + self.width / 2, 3)

    @property
    def labelled(self) -> bool:
        return self.width >= LABELLED_MIN_PCT


@dataclass(frozen=True, slots=True)
class SplitBar:
    stat: str  # p95
    turn: str  # the turn latency at that percentile, ms as shown
    basis: str  # which turns the split is the mean of: "the mean of 4 turns near p95"; "" when not said
    segments: list[Segment]
    sentence: str  # "p95 turn 912.0 ms: 310.0 ms connection set-up, ..."


@dataclass(frozen=True, slots=True)
class TimeSplit:
    """The "Where the time goes" card: a bar per percentile, the connections and their phases."""

    bars: list[SplitBar]
    connections: str  # one line of the counts; "" when the summary has none
    phases: Table | None
    over_time: Figure | None


def _time_split(summary: Mapping[str, Any], specs: list[dict[str, Any]]) -> TimeSplit | None:
    """None when the summary has no `time_split` (written before it, or no turn succeeded)."""
    section = _mapping(summary.get("time_split"))
    entries = [(s.label, _mapping(section.get(s.key))) for s in catalog.TIME_SPLIT_STATS]
    entries = [(stat, e) for stat, e in entries if (_float(e.get("turn_ms")) or 0) > 0]
    if not entries:
        return None
    # One scale for every bar, so that p99's is the longest; parts are means, their sum may pass the turn.
    scale = max(max(_float(e.get("turn_ms")) or 0.0, sum(_parts(e).values())) for _, e in entries)
    return TimeSplit(
        [_split_bar(stat, e, scale) for stat, e in entries],
        _connections(_mapping(summary.get("counts"))),
        _phases(_mapping(summary.get("metrics"))),
        _connections_over_time(summary, specs),
    )


def _parts(entry: Mapping[str, Any]) -> dict[catalog.Part, float]:
    """The parts an entry has, in ms (a negative mean, which no clock should give, as none)."""
    found = {part: _float(entry.get(f"{part.key}_ms")) for part in catalog.TIME_SPLIT_PARTS}
    return {part: max(ms, 0.0) for part, ms in found.items() if ms is not None}


def _split_bar(stat: str, entry: Mapping[str, Any], scale: float) -> SplitBar:
    segments, x = [], 0.0
    parts = _parts(entry)
    for part, ms in parts.items():
        width = ms / scale * 100
        if width > 0:
            segments.append(Segment(_slug(part.key), _ms(ms) or "", round(x, 3), round(width, 3)))
        x += width
    turn = _ms(entry.get("turn_ms")) or ""
    said = ", ".join(f"{_ms(ms)} ms {part.label}" for part, ms in parts.items())
    sentence = f"{stat} turn {turn} ms" + (f": {said}" if said else "")
    return SplitBar(stat, turn, _basis(_int(entry.get("turns")), stat), segments, sentence)


def _basis(turns: int, stat: str) -> str:
    if turns == 1:
        return f"the one turn near {stat}"
    return f"the mean of {turns:,} turns near {stat}" if turns else ""


def _connections(counts: Mapping[str, Any]) -> str:
    """The line of the connection counts; "" when no turn counted one (a summary from before them)."""
    opened, reused = (_int(counts.get(key)) for key in CONNECTION_COUNTS)
    if not opened + reused:
        return ""
    share = _pct(opened / (opened + reused), 1)
    return f"Connections: {opened:,} opened, {reused:,} kept-alive ones reused; {share} of turns opened one."


def _phases(metrics: Mapping[str, Any]) -> Table | None:
    """TTFB and the phases of new connections, as the Latency table shows them; None without samples."""
    stats = catalog.BREAKDOWN_STATS
    rows = []
    for metric in PHASE_METRICS:
        values = _mapping(metrics.get(metric.summary_key))
        if _int(values.get("count")):
            cells = [f"{_int(values.get('count')):,}", *(_ms(values.get(s.key)) for s in stats)]
            rows.append(Row(_capital(metric.label), cells, metric.key))
    return Table(["phase", "count", *(s.label for s in stats)], rows) if rows else None


def _connections_over_time(summary: Mapping[str, Any], specs: list[dict[str, Any]]) -> Figure | None:
    tl = charts.timeline(summary)
    spec = None if tl is None else charts.connections_spec("time-connections", tl)
    if tl is None or spec is None:
        return None
    detail = f"per second, every {tl.interval_s} s"
    return _figure("time-connections", "New and reused connections", detail, spec, specs, "")


def _breakdown(table: Any, scope: str) -> Table | None:
    """by_turn or by_scenario: the counters and metrics the catalog keeps per `scope`."""
    if not isinstance(table, Mapping) or not table:
        return None
    counts = catalog.scoped_counts(scope)
    metrics = catalog.scoped_metrics(scope)
    stats = catalog.BREAKDOWN_STATS
    groups: list[tuple[str, int]] = [("", 1)]
    head = [scope]
    for key in counts:
        group, _, rest = key.partition("_")
        head.append(rest or "all")
        if groups[-1][0] == group:
            groups[-1] = (group, groups[-1][1] + 1)
        else:
            groups.append((group, 1))
    for m in metrics:
        groups.append((m.label, len(stats)))
        head += [s.label for s in stats]
    names = sorted(table, key=_turn_key) if scope == catalog.TURN else list(table)
    rows = []
    for name in names:
        entry = table[name]
        if not isinstance(entry, Mapping):
            continue
        c = _mapping(entry.get("counts"))
        cells: list[str | None] = [f"{_int(c.get(k)):,}" for k in counts]
        for m in metrics:
            values = _mapping(entry.get(m.summary_key))
            cells += [_ms(values.get(s.key)) for s in stats]
        rows.append(Row(str(name), cells))
    return Table(head, rows, groups)


@dataclass(frozen=True, slots=True)
class ErrorRow:
    kind: str
    count: str
    share: str
    example: str


def _errors(summary: Mapping[str, Any]) -> list[ErrorRow]:
    errors = [e for e in summary.get("errors") or [] if isinstance(e, Mapping)]
    total = sum(_int(e.get("count")) for e in errors) or 1
    return [
        ErrorRow(
            str(e.get("kind", "")),
            f"{_int(e.get('count')):,}",
            f"{_int(e.get('count')) / total * 100:.1f}%",
            str(e.get("example", "")),
        )
        for e in errors
    ]


@dataclass(frozen=True, slots=True)
class ProtocolCount:
    key: str
    count: str
    note: str
    zero: bool
    quirk: bool  # a count of something unusual, not zero


def _protocol(section: Any) -> list[ProtocolCount]:
    counters = dict(section) if isinstance(section, Mapping) else {}
    items = [(c.key, counters.pop(c.key, 0), c.note, c.normal) for c in catalog.PROTOCOL_COUNTS]
    items += [(str(key), value, "", False) for key, value in sorted(counters.items())]
    return [
        ProtocolCount(key, f"{_int(n):,}", note, _int(n) == 0, _int(n) != 0 and not normal)
        for key, n, note, normal in items
    ]


@dataclass(frozen=True, slots=True)
class Health:
    state: str  # bottleneck, unjudged (too short a run) or kept-up
    reasons: str
    table: Table


def _health(section: Any) -> Health | None:
    health = _mapping(section)
    if not health:
        return None
    if health.get("bottleneck"):
        state = "bottleneck"
    elif health.get("judged") is False:
        state = "unjudged"
    else:
        state = "kept-up"
    rows = []
    for gauge in catalog.GAUGES:
        stats = _mapping(health.get(gauge.summary_key))
        rows.append(Row(gauge.heading, [_ms(stats.get(stat)) for stat in HEALTH_STATS]))
    reasons = "; ".join(str(r) for r in health.get("reasons") or [])
    return Health(state, reasons, Table(["gauge", *HEALTH_STATS], rows))


# --- comparison -------------------------------------------------------------------------------


def _compare_what(c: Comparison, tolerance: str) -> str:
    if not c.regressed:
        return f"Nothing judged is worse than the baseline by more than {tolerance}"
    n = len(c.regressions)
    return f"{n} statistic{'s' if n != 1 else ''} worse than the baseline by more than {tolerance}"


@dataclass(frozen=True, slots=True)
class DeltaRow:
    """A statistic of both runs: values, Δ and Δ % (coloured by `change`: worse, better or "")."""

    label: str
    baseline: str | None
    new: str | None
    delta: str
    ratio: str
    change: str = ""
    judged: bool = False
    limit: str | None = None
    result: str = ""  # of a judged statistic: ok, worse, or na (nothing in the baseline)


def _check(d: Delta, tolerance: float) -> DeltaRow:
    rate = d.metric == "error_rate"

    def value(v: float | None) -> str | None:
        return _pct(v, 2) if rate else _ms(v)

    result = "na" if d.baseline is None else "worse" if d.regressed else "ok"
    return DeltaRow(
        "error rate" if rate else _delta_label(d),
        value(d.baseline),
        value(d.new),
        format_pp(d.change) if rate else format_change(d.change),
        format_ratio(d.ratio),
        _change(d, tolerance),
        limit=value(d.limit),
        result=result,
    )


def _latency_delta(d: Delta, tolerance: float) -> DeltaRow:
    return DeltaRow(
        _delta_label(d),
        _ms(d.baseline),
        _ms(d.new),
        format_change(d.change),
        format_ratio(d.ratio),
        _change(d, tolerance),
        judged=d.gated,
    )


def _delta_label(d: Delta) -> str:
    metric = catalog.METRIC_BY_KEY.get(d.metric)
    stat = catalog.STAT_BY_LABEL.get(d.stat)
    return f"{metric.heading if metric else d.metric} {stat.label if stat else d.stat}"


def _change(d: Delta, tolerance: float) -> str:
    """worse when worse by more than the tolerance, better when better by as much."""
    ratio = d.ratio
    if d.regressed or (ratio is not None and ratio > tolerance):
        return "worse"
    if ratio is not None and ratio < -tolerance:
        return "better"
    return ""


def _count_deltas(c: Comparison, baseline: Mapping[str, Any], new: Mapping[str, Any]) -> list[DeltaRow]:
    r, t = c.error_rate, c.throughput
    rows = [
        DeltaRow(
            "error rate",
            _pct(r.baseline, 2),
            _pct(r.new, 2),
            format_pp(r.change),
            format_ratio(r.ratio),
            _change(r, c.tolerance),
        ),
        DeltaRow(
            "throughput (turns/s)",
            _num(t.baseline, 2),
            _num(t.new, 2),
            format_change(t.change, 2),
            format_ratio(t.ratio),
        ),
    ]
    for g, label in ((c.goodput, "goodput (turns)"), (c.conversation_goodput, "goodput (conversations)")):
        rows.append(
            DeltaRow(label, _pct(g.baseline, 2), _pct(g.new, 2), format_pp(g.change), format_ratio(g.ratio))
        )
    b_counts, n_counts = _mapping(baseline.get("counts")), _mapping(new.get("counts"))
    labels = {counter.key: counter.label for counter in catalog.COUNTERS}
    for key in COMPARED_COUNTS:
        d = Delta(key, "", _float(b_counts.get(key)), _float(n_counts.get(key)))
        rows.append(
            DeltaRow(
                labels[key],
                _num(d.baseline, 0),
                _num(d.new, 0),
                format_change(d.change, 0),
                format_ratio(d.ratio),
            )
        )
    b_s, n_s = duration_s(_mapping(baseline.get("run"))), duration_s(_mapping(new.get("run")))
    rows.append(DeltaRow("duration", _duration(b_s) if b_s else "-", _duration(n_s) if n_s else "-", "", ""))
    return rows


def _overlays(
    baseline: Mapping[str, Any], new: Mapping[str, Any], specs: list[dict[str, Any]]
) -> list[Figure]:
    figures = []
    for m in HEADLINE_METRICS:
        b = _mapping(_mapping(baseline.get("metrics")).get(m.summary_key))
        n = _mapping(_mapping(new.get("metrics")).get(m.summary_key))
        chart_id = f"dist-{m.key}"
        curves = [
            ("baseline", charts.COLORS["baseline"], charts.percentile_curve(b.get("hdr"))),
            ("new", m.color, charts.percentile_curve(n.get("hdr"))),
        ]
        spec = charts.distribution_spec(chart_id, m.unit, curves)
        detail = f"n = {_int(b.get('count')):,} baseline, {_int(n.get('count')):,} new"
        figures.append(
            _figure(chart_id, _capital(m.label), detail, spec, specs, "Neither run completed a turn.")
        )
    return figures


@dataclass(frozen=True, slots=True)
class FactPair:
    label: str
    baseline: Value
    new: Value
    differs: bool


def _facts_side_by_side(b_run: Mapping[str, Any], n_run: Mapping[str, Any]) -> list[FactPair]:
    pairs = _run_facts_side_by_side(_without_settings(b_run), _without_settings(n_run))
    # The options of the two runs, one row each: a changed think time explains a changed latency.
    b_settings, n_settings = dict(_settings(b_run)), dict(_settings(n_run))
    missing = Value("–", "dim")
    for flag in dict.fromkeys([*b_settings, *n_settings]):
        before, after = b_settings.get(flag, missing), n_settings.get(flag, missing)
        pairs.append(FactPair(flag, before, after, before != after))
    return pairs


def _run_facts_side_by_side(b_run: Mapping[str, Any], n_run: Mapping[str, Any]) -> list[FactPair]:
    labels = dict(RUN_FACTS)
    keys = [key for key in labels if key in b_run or key in n_run]
    keys += [k for k in dict.fromkeys([*b_run, *n_run]) if k not in labels]
    missing = Value("–", "dim")
    pairs = []
    for key in keys:
        before = _fact(key, b_run) if b_run.get(key) is not None else missing
        after = _fact(key, n_run) if n_run.get(key) is not None else missing
        label = labels.get(key, key.replace("_", " "))
        pairs.append(FactPair(label, before, after, key not in OWN_FACTS and before != after))
    return pairs


# --- values -----------------------------------------------------------------------------------


def _thresholds_of(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [t for t in summary.get("thresholds") or [] if isinstance(t, Mapping)]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int:
    number = _float(value)
    return int(number) if number is not None else 0


def _ms(value: Any) -> str | None:
    """A measured value as every output writes it; None when there is none."""
    number = _float(value)
    return None if number is None else format_number(number)


def _num(value: float | None, digits: int) -> str | None:
    return None if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None, digits: int | None) -> str:
    if value is None:
        return "–"
    return f"{value * 100:g}%" if digits is None else f"{value * 100:.{digits}f}%"


def _capital(label: str) -> str:
    return label[:1].upper() + label[1:]


def _and(items: Sequence[str]) -> str:
    return " and ".join([", ".join(items[:-1]), items[-1]]) if len(items) > 1 else "".join(items)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _when(value: Any) -> str:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    zone = moment.strftime("%Z") or ""
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text} {'UTC' if zone in ('UTC', 'UTC+00:00') else zone}".strip()


def _turn_key(name: Any) -> tuple[int, str]:
    text = str(name)
    return (int(text), "") if text.isdigit() else (1 << 30, text)
