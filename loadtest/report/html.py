"""report.html and compare.html: self-contained pages, readable offline and from a CI artifact.

Everything is inline: the CSS, the chart data as JSON, uPlot (MIT, `vendor/`) and the few lines that
draw with it (`assets/report.js`). No font, image or script comes from anywhere else, and every value
from a summary goes through `html.escape`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import cache
from html import escape
from importlib import resources
from typing import Any

from loadtest.errors import ConfigError
from loadtest.report import charts
from loadtest.report.compare import (
    ERROR_RATE_FLOOR,
    METRICS,
    STATS,
    Comparison,
    Delta,
    duration_s,
    error_rate,
    format_change,
    format_pp,
    format_ratio,
    rule,
    throughput,
)
from loadtest.thresholds import format_observed
from loadtest.thresholds import parse as parse_threshold

LATENCY = (
    ("ttft_ms", "Time to first token", charts.COLORS["ttft"]),
    ("turn_ms", "Turn latency", charts.COLORS["turn"]),
    ("itl_ms", "Inter-chunk gap", "#0891b2"),
    ("conversation_ms", "Conversation", "#64748b"),
    # Measured from when the turn should have started: differs from the service time above when
    # arrivals queued or the generator lagged (coordinated omission).
    ("ttft_response_ms", "TTFT from intended start", "#93c5fd"),
    ("turn_response_ms", "Turn from intended start", "#c4b5fd"),
)
HEADLINE_STATS = (
    ("count", "count"),
    ("min", "min"),
    ("mean", "mean"),
    ("p50", "p50"),
    ("p90", "p90"),
    ("p95", "p95"),
    ("p99", "p99"),
    ("p999", "p99.9"),
    ("max", "max"),
)
BREAKDOWN_STATS = ("p50", "p95", "p99")
PROTOCOL = (
    ("no_done", "streams that ended without data: [DONE]"),
    ("unterminated_tail", "streams whose last event no blank line ended"),
    ("empty_events", "blank lines that carried no data"),
    ("events_after_done", "events received after [DONE]"),
    ("bom", "streams that began with a byte-order mark"),
    ("role_only_chunks", "chunks with only the assistant role (usual first chunk)"),
    ("comments", "comment lines (keep-alives)"),
)
# Counters that describe a normal stream; the others are quirks worth a look when not zero.
PROTOCOL_NORMAL = frozenset({"role_only_chunks", "comments"})
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
    ("loadtest_version", "loadtest"),
    ("locust_version", "Locust"),
    ("system_fingerprints", "system fingerprints"),
)
UPLOT_VERSION = "1.6.32"


def render_html(summary: Mapping[str, Any]) -> str:
    """The report of one run: verdict, facts, latency tables and charts, breakdowns, errors, protocol."""
    run: Mapping[str, Any] = _mapping(summary.get("run"))
    metrics: Mapping[str, Any] = _mapping(summary.get("metrics"))
    specs: list[dict[str, Any]] = []
    host = str(run.get("host") or "unknown host")

    body = [
        _top("Conversation load test", host, _run_subline(run)),
        _verdict(summary),
        _tiles(summary),
        _card("Thresholds", _thresholds(summary), "Pass/fail rules given with --threshold"),
        _card("Run", _facts(run)),
        _card("Latency", _headline(metrics), "milliseconds; completed turns only"),
        _card(
            "Latency by percentile",
            _distributions(metrics, specs),
            "HDR percentile distribution: the tail gets as much room as the median",
        ),
        _card("Over time", _over_time(summary, specs), "per interval, times in UTC"),
        _card("By turn", _by_turn(summary.get("by_turn")), "the N-th turn of each conversation; ms"),
        _card("By scenario", _by_scenario(summary.get("by_scenario")), "ms"),
        _card("Errors", _errors(summary)),
        _card("Stream protocol", _protocol(summary.get("protocol")), "counted, not failed"),
        _card("Client health", _health(summary.get("client_health")), "the load generator's own overhead"),
        _footer(run),
    ]
    title = f"Load test {run.get('id', '')} · {host}"
    return _page(title, body, specs)


def render_compare_html(comparison: Comparison, baseline: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """Two runs side by side: verdict, judged statistics, all deltas, overlaid distributions, facts."""
    b_run, n_run = _mapping(baseline.get("run")), _mapping(new.get("run"))
    specs: list[dict[str, Any]] = []
    sub = [
        f'<span class="part">baseline <code>{escape(str(b_run.get("id", "?")))}</code></span>',
        f'<span class="part">new <code>{escape(str(n_run.get("id", "?")))}</code></span>',
        f'<span class="part">tolerance {escape(_pct(comparison.tolerance, None))}</span>',
    ]
    b_host, n_host = str(b_run.get("host") or "?"), str(n_run.get("host") or "?")
    headline = b_host if b_host == n_host else f"{b_host} → {n_host}"
    body = [
        _top("Load test comparison", headline, "".join(sub)),
        _compare_verdict(comparison),
        _card("Judged statistics", _checks(comparison), "the regression verdict is made of these"),
        _card(
            "Latency by percentile",
            _overlays(baseline, new, specs),
            "baseline in grey, new in colour; HDR percentile distribution",
        ),
        _card("All latency statistics", _delta_table(comparison), "ms; Δ = new − baseline"),
        _card("Counts and throughput", _count_deltas(comparison, baseline, new)),
        _card("Runs", _facts_side_by_side(b_run, n_run)),
        _footer(n_run),
    ]
    return _page(f"Load test comparison · {headline}", body, specs)


# --- page -------------------------------------------------------------------------------------


def _page(title: str, body: Sequence[str], specs: Sequence[Mapping[str, Any]]) -> str:
    data = json.dumps({"charts": list(specs)}, separators=(",", ":"), allow_nan=False)
    # Inside <script>, "</" could end the element: JSON allows "<" as an escape.
    data = data.replace("<", "\\u003c")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{_asset("vendor/uPlot.min.css")}</style>
<style>{_asset("assets/report.css")}</style>
</head>
<body>
<main>
{"".join(body)}
</main>
<script type="application/json" id="report-data">{data}</script>
<script>
/*! uPlot v{UPLOT_VERSION} (MIT License, Copyright (c) 2022 Leon Sorokin); full license text in the
    loadtest package, loadtest/report/vendor/uPlot.LICENSE */
{_asset("vendor/uPlot.iife.min.js")}
</script>
<script>
{_asset("assets/report.js")}
</script>
</body>
</html>
"""


@cache
def _asset(name: str) -> str:
    text = resources.files("loadtest.report").joinpath(name).read_text(encoding="utf-8")
    # None of our assets may close the element that holds it.
    assert "</script" not in text.lower() and "</style" not in text.lower(), name
    return text


def _top(eyebrow: str, title: str, sub: str) -> str:
    return (
        f'<header class="top"><div><div class="eyebrow">{escape(eyebrow)}</div>'
        f'<h1>{escape(title)}</h1><div class="sub">{sub}</div></div></header>'
    )


def _card(title: str, content: str, note: str = "") -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in title.lower())
    hint = f"<p>{escape(note)}</p>" if note else ""
    return (
        f'<section class="card" id="{slug}"><header><h2>{escape(title)}</h2>{hint}</header>'
        f"{content}</section>"
    )


def _footer(run: Mapping[str, Any]) -> str:
    version = run.get("loadtest_version")
    made = f"loadtest {escape(str(version))}" if version else "loadtest"
    return (
        f"<footer>Written by {made} from summary.json · charts drawn with uPlot {UPLOT_VERSION} (MIT) · "
        "this file loads nothing from the network</footer>"
    )


def _run_subline(run: Mapping[str, Any]) -> str:
    parts = []
    if run.get("started"):
        parts.append(escape(_when(run.get("started"))))
    seconds = duration_s(run)
    if seconds:
        parts.append(escape(_duration(seconds)))
    if run.get("users") is not None:
        parts.append(f"{escape(str(run['users']))} users")
    if run.get("id"):
        parts.append(f"run <code>{escape(str(run['id']))}</code>")
    spans = "".join(f'<span class="part">{p}</span>' for p in parts)
    if run.get("mock"):
        spans += '<span class="tag mock">built-in mock</span>'
    return spans


# --- one run ----------------------------------------------------------------------------------


def _verdict(summary: Mapping[str, Any]) -> str:
    thresholds = _thresholds_of(summary)
    counts = _mapping(summary.get("counts"))
    turns, failed = _int(counts.get("turns")), _int(counts.get("turns_failed"))
    run = _mapping(summary.get("run"))
    aborted = run.get("aborted_by_threshold")
    stopped = f" The run was stopped early: {escape(str(aborted))}." if aborted else ""
    if not thresholds:
        return _banner(
            "none",
            "NO THRESHOLDS",
            "No thresholds were set, so this run has no pass/fail verdict",
            f"{failed:,} of {turns:,} turns failed. Gate runs with --threshold, "
            "as in <code>ttft.p95&lt;800ms</code> or <code>error_rate&lt;1%</code>." + stopped,
        )
    failures = [t for t in thresholds if not t.get("passed")]
    verdict = summary.get("verdict") or ("fail" if failures else "pass")
    if verdict == "pass" and not failures:
        n = len(thresholds)
        what = "The threshold held" if n == 1 else f"All {n} thresholds held"
        return _banner("pass", "PASS", what, f"{failed:,} of {turns:,} turns failed." + stopped)
    names = ", ".join(f"<code>{escape(str(t.get('expr', '')))}</code>" for t in failures)
    what = f"{len(failures)} of {len(thresholds)} thresholds failed"
    return _banner("fail", "FAIL", what, (names or escape(str(verdict))) + "." + stopped)


def _banner(kind: str, word: str, what: str, why: str) -> str:
    return (
        f'<section class="verdict {kind}" id="verdict"><div class="word">{escape(word)}</div>'
        f'<div><div class="what">{escape(what)}</div><div class="why">{why}</div></div></section>'
    )


def _tiles(summary: Mapping[str, Any]) -> str:
    counts = _mapping(summary.get("counts"))
    metrics = _mapping(summary.get("metrics"))
    rate = error_rate(summary)
    tput = throughput(summary)
    ttft = _mapping(metrics.get("ttft_ms")).get("p95")
    turn = _mapping(metrics.get("turn_ms")).get("p95")
    conv_done = _int(counts.get("conversations_completed"))
    conv_started = _int(counts.get("conversations_started"))
    tiles = [
        _tile(
            "Turns completed",
            f"{_int(counts.get('turns_ok')):,}",
            f"of {_int(counts.get('turns')):,} · {_int(counts.get('turns_cut')):,} cut at the stop",
        ),
        _tile(
            "Error rate",
            "–" if rate is None else f"{rate * 100:.2f}<small>%</small>",
            f"{_int(counts.get('turns_failed')):,} failed turns",
            bad=bool(rate),
        ),
        _tile("Throughput", "–" if tput is None else f"{tput:,.2f}<small>turns/s</small>", "completed turns"),
        _tile("TTFT p95", _ms_html(ttft), f"p50 {_ms_text(_mapping(metrics.get('ttft_ms')).get('p50'))} ms"),
        _tile(
            "Turn latency p95",
            _ms_html(turn),
            f"p50 {_ms_text(_mapping(metrics.get('turn_ms')).get('p50'))} ms",
        ),
        _tile(
            "Conversations",
            f"{conv_done:,}",
            f"completed of {conv_started:,} · {_int(counts.get('conversations_failed')):,} failed",
        ),
    ]
    return f'<div class="tiles">{"".join(tiles)}</div>'


def _tile(key: str, value: str, detail: str, *, bad: bool = False) -> str:
    cls = "tile bad" if bad else "tile"
    return (
        f'<div class="{cls}"><div class="k">{escape(key)}</div><div class="v">{value}</div>'
        f'<div class="d">{escape(detail)}</div></div>'
    )


def _thresholds(summary: Mapping[str, Any]) -> str:
    thresholds = _thresholds_of(summary)
    if not thresholds:
        return '<p class="note">No thresholds were set for this run.</p>'
    rows = []
    for t in thresholds:
        unit = str(t.get("unit", "ms"))
        observed = format_observed(_float(t.get("observed")), unit)
        passed = bool(t.get("passed"))
        pill = '<span class="pill pass">PASS</span>' if passed else '<span class="pill fail">FAIL</span>'
        rows.append(
            f"<tr><td><code>{escape(str(t.get('expr', '')))}</code></td>"
            f"<td>{escape(observed)}</td><td>{escape(_limit(t.get('expr'), unit))}</td><td>{pill}</td></tr>"
        )
    return _table(["threshold", "observed", "limit", "result"], rows, cls="thresholds")


def _limit(expr: Any, unit: str) -> str:
    """`< 450 ms` from `ttft.p95<450ms`; a dash when the expression does not parse (any more)."""
    try:
        th = parse_threshold(str(expr))
    except ConfigError:
        return "–"
    return f"{th.op} {format_observed(th.limit, unit)}"


def _facts(run: Mapping[str, Any]) -> str:
    items = []
    known = {key for key, _ in RUN_FACTS}
    for key, label in RUN_FACTS:
        if key in run and run[key] is not None:
            items.append((label, _fact(key, run)))
    if "duration_s" not in run:
        seconds = duration_s(run)
        if seconds:
            items.append(("duration", escape(_duration(seconds))))
    for key, value in run.items():
        if key not in known and value is not None:
            items.append((key.replace("_", " "), _fact(key, run)))
    if not items:
        return '<p class="note">This summary has no run facts.</p>'
    rows = "".join(f"<div><dt>{escape(label)}</dt><dd>{value}</dd></div>" for label, value in items)
    return f'<dl class="facts">{rows}</dl>'


def _fact(key: str, run: Mapping[str, Any]) -> str:
    value = run.get(key)
    if key == "mock":
        return "yes" if value else "no"
    if key in ("started", "ended"):
        return escape(_when(value))
    if key == "duration_s":
        seconds = duration_s(run)
        return escape(_duration(seconds)) if seconds else escape(str(value))
    if isinstance(value, list | tuple):
        return escape(", ".join(str(v) for v in value)) if value else '<span class="dim">none</span>'
    if key in ("id", "host", "deployment", "channel"):
        return f"<code>{escape(str(value))}</code>"
    return escape(str(value))


def _headline(metrics: Mapping[str, Any]) -> str:
    rows = []
    for key, label, color in LATENCY:
        stats = _mapping(metrics.get(key))
        if not stats:
            continue
        cells = [f"<td>{_int(stats.get('count')):,}</td>"]
        cells += [f"<td>{_ms(stats.get(stat))}</td>" for stat, _ in HEADLINE_STATS[1:]]
        rows.append(
            f'<tr><td class="name"><span class="swatch" style="background:{color}"></span>'
            f"{escape(label)}</td>{''.join(cells)}</tr>"
        )
    if not rows:
        return '<p class="note">This summary has no latency statistics.</p>'
    return _table(["metric", *(label for _, label in HEADLINE_STATS)], rows, cls="headline")


def _distributions(metrics: Mapping[str, Any], specs: list[dict[str, Any]]) -> str:
    figures = []
    for key, label, color in LATENCY[:2]:
        stats = _mapping(metrics.get(key))
        curve = charts.percentile_curve(stats.get("hdr"))
        chart_id = f"dist-{key.removesuffix('_ms')}"
        spec = charts.distribution_spec(chart_id, "ms", [(label, color, curve)], stats)
        caption = f"{label} <span>n = {_int(stats.get('count')):,}</span>"
        figures.append(_figure(chart_id, caption, spec, specs, "No completed turns: nothing to draw."))
    return f'<div class="grid2">{"".join(figures)}</div>'


def _over_time(summary: Mapping[str, Any], specs: list[dict[str, Any]]) -> str:
    tl = charts.timeline(summary)
    if tl is None:
        return (
            '<p class="note">No timeline in this summary: it was written by an older loadtest, or the run '
            "recorded nothing. The charts over time need <code>timeline</code> in summary.json.</p>"
        )
    top = []
    for metric, label in (("ttft", "Time to first token"), ("turn", "Turn latency")):
        chart_id = f"time-{metric}"
        spec = charts.latency_over_time_spec(chart_id, tl, metric)
        top.append(_figure(chart_id, f"{label} <span>p50 · p90 · p99, ms</span>", spec, specs, ""))
    tput = charts.throughput_spec("time-throughput", tl)
    bottom = _figure(
        "time-throughput",
        f"Throughput and users <span>turns per second, every {tl.interval_s} s</span>",
        tput,
        specs,
        "",
    )
    return f'<div class="grid2">{"".join(top)}</div><div style="margin-top:18px">{bottom}</div>'


def _figure(
    chart_id: str, caption: str, spec: dict[str, Any] | None, specs: list[dict[str, Any]], empty: str
) -> str:
    if spec is None:
        return (
            f'<figure class="chart"><figcaption>{caption}</figcaption>'
            f'<p class="note">{escape(empty)}</p></figure>'
        )
    specs.append(spec)
    return (
        f'<figure class="chart"><figcaption>{caption}</figcaption>'
        f'<div class="plot" id="{escape(chart_id)}" data-chart="{escape(spec["kind"])}"></div></figure>'
    )


def _by_turn(table: Any) -> str:
    if not isinstance(table, Mapping) or not table:
        return '<p class="note">No per-turn breakdown in this summary.</p>'
    groups = [("", 5), ("TTFT", 3), ("turn latency", 3)]
    head = ["turn", "turns", "ok", "failed", "cut", *BREAKDOWN_STATS, *BREAKDOWN_STATS]
    rows = []
    for name, entry in sorted(table.items(), key=lambda kv: _turn_key(kv[0])):
        if not isinstance(entry, Mapping):
            continue
        c = _mapping(entry.get("counts"))
        cells = [f'<td class="name">{escape(str(name))}</td>']
        cells += [f"<td>{_int(c.get(k)):,}</td>" for k in ("turns", "turns_ok", "turns_failed", "turns_cut")]
        cells += _stat_cells(entry, ("ttft_ms", "turn_ms"))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return _table(head, rows, groups=groups)


def _by_scenario(table: Any) -> str:
    if not isinstance(table, Mapping) or not table:
        return '<p class="note">No per-scenario breakdown in this summary.</p>'
    groups = [
        ("", 1),
        ("conversations", 3),
        ("turns", 2),
        ("TTFT", 3),
        ("turn latency", 3),
        ("conversation", 3),
    ]
    head = ["scenario", "started", "completed", "failed", "ok", "failed"]
    head += [*BREAKDOWN_STATS, *BREAKDOWN_STATS, *BREAKDOWN_STATS]
    rows = []
    for name, entry in table.items():
        if not isinstance(entry, Mapping):
            continue
        c = _mapping(entry.get("counts"))
        cells = [f'<td class="name">{escape(str(name))}</td>']
        keys = ("conversations_started", "conversations_completed", "conversations_failed", "turns_ok")
        cells += [f"<td>{_int(c.get(k)):,}</td>" for k in (*keys, "turns_failed")]
        cells += _stat_cells(entry, ("ttft_ms", "turn_ms", "conversation_ms"))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return _table(head, rows, groups=groups)


def _stat_cells(entry: Mapping[str, Any], keys: Iterable[str]) -> list[str]:
    cells = []
    for key in keys:
        stats = _mapping(entry.get(key))
        cells += [f"<td>{_ms(stats.get(stat))}</td>" for stat in BREAKDOWN_STATS]
    return cells


def _errors(summary: Mapping[str, Any]) -> str:
    errors = [e for e in summary.get("errors") or [] if isinstance(e, Mapping)]
    if not errors:
        return '<p class="note">No errors: every finished turn succeeded.</p>'
    total = sum(_int(e.get("count")) for e in errors) or 1
    rows = []
    for e in errors:
        n = _int(e.get("count"))
        rows.append(
            f'<tr><td class="name">{escape(str(e.get("kind", "")))}</td><td>{n:,}</td>'
            f"<td>{n / total * 100:.1f}%</td>"
            f'<td class="l wrap"><pre class="example">{escape(str(e.get("example", "")))}</pre></td></tr>'
        )
    return _table(["kind", "count", "share", "first example"], rows, left={3})


def _protocol(section: Any) -> str:
    counters = dict(section) if isinstance(section, Mapping) else {}
    items = [(key, counters.pop(key, 0), note) for key, note in PROTOCOL]
    items += [(str(key), value, "") for key, value in sorted(counters.items())]
    out = []
    for key, value, note in items:
        n = _int(value)
        cls = "counter zero" if n == 0 else "counter"
        style = ' style="border-color:#f3d9a4;background:#fff8eb"' if n and key not in PROTOCOL_NORMAL else ""
        out.append(
            f'<div class="{cls}" title="{escape(note)}"{style}><code>{escape(key)}</code>'
            f'<span class="n">{n:,}</span></div>'
        )
    legend = "; ".join(f"<code>{escape(k)}</code>: {escape(note)}" for k, note in PROTOCOL)
    return f'<div class="counters">{"".join(out)}</div><p class="faint" style="font-size:12px">{legend}.</p>'


def _health(section: Any) -> str:
    health = _mapping(section)
    if not health:
        return '<p class="note">This summary has no client-health data.</p>'
    if health.get("bottleneck"):
        reasons = "; ".join(str(r) for r in health.get("reasons") or [])
        verdict = (
            '<p class="note" style="border-color:#f3c4c4;background:#fff1f1">'
            f"The load generator was the bottleneck: {escape(reasons)}. Latency figures include its own "
            "delay: use more worker processes (--processes) or fewer users per process.</p>"
        )
    elif health.get("judged") is False:
        verdict = '<p class="note">The run was too short to judge the load generator (under 10 s).</p>'
    else:
        verdict = '<p class="note">The load generator kept up: its own delays stayed under the limits.</p>'
    rows = []
    for key, label in (
        ("loop_lag_ms", "Event-loop lag (ms)"),
        ("pool_wait_ms", "Connection-pool wait (ms)"),
        ("cpu_percent", "CPU (% of one core)"),
    ):
        stats = _mapping(health.get(key))
        cells = "".join(f"<td>{_ms(stats.get(stat))}</td>" for stat in ("p50", "p90", "p99", "max"))
        rows.append(f'<tr><td class="name">{escape(label)}</td>{cells}</tr>')
    table = _table(["gauge", "p50", "p90", "p99", "max"], rows)
    return verdict + table


# --- comparison -------------------------------------------------------------------------------


def _compare_verdict(c: Comparison) -> str:
    tol = _pct(c.tolerance, None)
    if c.regressed:
        why = "<br>".join(escape(line) for line in c.regressions)
        n = len(c.regressions)
        what = f"{n} statistic{'s' if n != 1 else ''} worse than the baseline by more than {tol}"
        return _banner("fail", "REGRESSION", what, why)
    return _banner(
        "pass",
        "NO REGRESSION",
        f"Nothing judged is worse than the baseline by more than {tol}",
        "Judged: p50, p95 and p99 of TTFT and turn latency, and the error rate.",
    )


def _checks(c: Comparison) -> str:
    rows = []
    for d in c.checks:
        rate = d.metric == "error_rate"

        def value(v: float | None, rate: bool = rate) -> str:
            return _pct(v, 2) if rate else _ms(v)

        limit = value(d.limit)
        change = format_pp(d.change) if rate else format_change(d.change)
        if d.baseline is None:
            pill = '<span class="pill na">N/A</span>'
        elif d.regressed:
            pill = '<span class="pill fail">WORSE</span>'
        else:
            pill = '<span class="pill pass">OK</span>'
        label = "error rate" if rate else f"{dict(METRICS)[d.metric]} {dict(STATS)[d.stat]}"
        rows.append(
            f'<tr><td class="name">{escape(label)}</td><td>{value(d.baseline)}</td><td>{value(d.new)}</td>'
            f"{_delta_cells(d, change, c.tolerance)}<td>{limit}</td><td>{pill}</td></tr>"
        )
    floor = f"{ERROR_RATE_FLOOR * 100:g} pp"
    note = (
        f'<p class="faint" style="font-size:12px">limit: the largest new value that passes; for latency '
        f"baseline × (1 + {escape(_pct(c.tolerance, None))}), for the error rate baseline + max("
        f"{escape(_pct(c.tolerance, None))} of baseline, {floor}).</p>"
    )
    head = ["statistic", "baseline", "new", "Δ", "Δ %", "limit", "result"]
    return f'<p class="rule" id="rule">{escape(rule(c.tolerance))}</p>' + _table(head, rows) + note


def _delta_table(c: Comparison) -> str:
    rows = []
    for d in c.latency:
        label = f"{dict(METRICS)[d.metric]} {dict(STATS)[d.stat]}"
        judged = ' <span class="tag">judged</span>' if d.gated else ""
        rows.append(
            f'<tr><td class="name">{escape(label)}{judged}</td>'
            f"<td>{_ms(d.baseline)}</td><td>{_ms(d.new)}</td>"
            f"{_delta_cells(d, format_change(d.change), c.tolerance)}</tr>"
        )
    return _table(["statistic", "baseline", "new", "Δ ms", "Δ %"], rows)


def _delta_cells(d: Delta, change: str, tolerance: float) -> str:
    """Δ and Δ% cells, red when worse by more than the tolerance, green when better by as much."""
    ratio = d.ratio
    cls = ""
    if d.regressed or (ratio is not None and ratio > tolerance):
        cls = ' class="worse"'
    elif ratio is not None and ratio < -tolerance:
        cls = ' class="better"'
    return f"<td{cls}>{escape(change)}</td><td{cls}>{escape(format_ratio(ratio))}</td>"


def _count_deltas(c: Comparison, baseline: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    rows = []
    r = c.error_rate
    rows.append(
        f'<tr><td class="name">error rate</td><td>{_pct(r.baseline, 2)}</td><td>{_pct(r.new, 2)}</td>'
        f"{_delta_cells(r, format_pp(r.change), c.tolerance)}</tr>"
    )
    t = c.throughput
    rows.append(
        f'<tr><td class="name">throughput (turns/s)</td>'
        f"<td>{_num(t.baseline, 2)}</td><td>{_num(t.new, 2)}</td>"
        f"<td>{escape(format_change(t.change, 2))}</td><td>{escape(format_ratio(t.ratio))}</td></tr>"
    )
    b_counts, n_counts = _mapping(baseline.get("counts")), _mapping(new.get("counts"))
    for key in ("turns", "turns_ok", "turns_failed", "turns_cut", "conversations_completed", "chunks"):
        before, after = _float(b_counts.get(key)), _float(n_counts.get(key))
        d = Delta(key, "", before, after)
        rows.append(
            f'<tr><td class="name">{escape(key.replace("_", " "))}</td><td>{_num(before, 0)}</td>'
            f"<td>{_num(after, 0)}</td><td>{escape(format_change(d.change, 0))}</td>"
            f"<td>{escape(format_ratio(d.ratio))}</td></tr>"
        )
    b_run, n_run = _mapping(baseline.get("run")), _mapping(new.get("run"))
    b_s, n_s = duration_s(b_run), duration_s(n_run)
    rows.append(
        f'<tr><td class="name">duration</td><td>{escape(_duration(b_s) if b_s else "-")}</td>'
        f"<td>{escape(_duration(n_s) if n_s else '-')}</td><td></td><td></td></tr>"
    )
    return _table(["", "baseline", "new", "Δ", "Δ %"], rows)


def _overlays(baseline: Mapping[str, Any], new: Mapping[str, Any], specs: list[dict[str, Any]]) -> str:
    figures = []
    for key, label, color in LATENCY[:2]:
        b = _mapping(_mapping(baseline.get("metrics")).get(key))
        n = _mapping(_mapping(new.get("metrics")).get(key))
        chart_id = f"dist-{key.removesuffix('_ms')}"
        spec = charts.distribution_spec(
            chart_id,
            "ms",
            [
                ("baseline", charts.COLORS["baseline"], charts.percentile_curve(b.get("hdr"))),
                ("new", color, charts.percentile_curve(n.get("hdr"))),
            ],
        )
        caption = f"{label} <span>n = {_int(b.get('count')):,} baseline, {_int(n.get('count')):,} new</span>"
        figures.append(_figure(chart_id, caption, spec, specs, "Neither run completed a turn."))
    return f'<div class="grid2">{"".join(figures)}</div>'


def _facts_side_by_side(b_run: Mapping[str, Any], n_run: Mapping[str, Any]) -> str:
    keys = [key for key, _ in RUN_FACTS if key in b_run or key in n_run]
    known = {key for key, _ in RUN_FACTS}
    keys += [k for k in dict.fromkeys([*b_run, *n_run]) if k not in known]
    labels = dict(RUN_FACTS)
    rows = []
    for key in keys:
        before = _fact(key, b_run) if b_run.get(key) is not None else '<span class="dim">–</span>'
        after = _fact(key, n_run) if n_run.get(key) is not None else '<span class="dim">–</span>'
        differs = (
            ' class="worse"'
            if key not in ("id", "started", "ended", "duration_s") and before != after
            else ""
        )
        rows.append(
            f'<tr><td class="name">{escape(labels.get(key, key.replace("_", " ")))}</td>'
            f'<td class="l wrap">{before}</td><td class="l wrap"{differs}>{after}</td></tr>'
        )
    return _table(["", "baseline", "new"], rows, left={1, 2})


# --- tables and numbers -----------------------------------------------------------------------


def _table(
    head: Sequence[str],
    rows: Sequence[str],
    *,
    cls: str = "",
    groups: Sequence[tuple[str, int]] = (),
    left: set[int] | None = None,
) -> str:
    left = left or set()
    top = ""
    if groups:
        top = (
            '<tr class="groups">'
            + "".join(f'<th colspan="{span}">{escape(label)}</th>' for label, span in groups)
            + "</tr>"
        )
    ths = "".join(
        f'<th class="l">{escape(h)}</th>' if i in left else f"<th>{escape(h)}</th>"
        for i, h in enumerate(head)
    )
    klass = f' class="data {cls}"' if cls else ' class="data"'
    return (
        f'<div class="scroll"><table{klass}><thead>{top}<tr>{ths}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _thresholds_of(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [t for t in summary.get("thresholds") or [] if isinstance(t, Mapping)]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int:
    number = _float(value)
    return int(number) if number is not None else 0


def _ms(value: Any) -> str:
    """Milliseconds for an HTML cell; a dimmed dash when there is no value."""
    text = _ms_text(value)
    return '<span class="dim">–</span>' if text == "–" else text


def _ms_text(value: Any) -> str:
    number = _float(value)
    if number is None:
        return "–"
    return f"{number:,.1f}" if abs(number) >= 10 else f"{number:.3g}"


def _ms_html(value: Any) -> str:
    number = _float(value)
    if number is None:
        return "–"
    return f"{_ms(number)}<small>ms</small>"


def _num(value: float | None, digits: int) -> str:
    return '<span class="dim">–</span>' if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None, digits: int | None) -> str:
    if value is None:
        return "–"
    return f"{value * 100:g}%" if digits is None else f"{value * 100:.{digits}f}%"


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
