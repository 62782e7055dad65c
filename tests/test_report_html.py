"""report.html and compare.html: rendered from summaries built in-process, every section there, every
value escaped, nothing fetched; in headless Chromium, the charts drawn without a console error."""

from __future__ import annotations

import copy
import html as html_module
import json
import re
from collections.abc import Callable, Iterator
from functools import cache, wraps
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from markupsafe import escape
from playwright.sync_api import Browser

from loadtest import capacity, catalog, thresholds
from loadtest.catalog import PROTOCOL_COUNTS, format_number
from loadtest.cli import main
from loadtest.health import HealthMonitor
from loadtest.metrics import ERROR_COUNT_PREFIX, Histogram, Metrics, at, interval_of, scoped
from loadtest.report import build_summary, charts
from loadtest.report.compare import compare
from loadtest.report.html import render_compare_html, render_html
from loadtest.report.markdown import render_markdown
from loadtest.report.summary import stream_lines
from loadtest.thresholds import format_observed
from tests.browser import chromium, load, loaded_references, require_chromium

NASTY = "https://evil.example/</script><script>alert(1)</script>\"'><img src=x onerror=alert(2)>"
T0 = 1767225600  # 2026-01-01T00:00:00Z
SECTIONS = (
    "verdict",
    "thresholds",
    "run",
    "latency",
    "latency-by-percentile",
    "over-time",
    "by-turn",
    "by-scenario",
    "errors",
    "stream-protocol",
    "client-health",
)
COMPARE_SECTIONS = (
    "verdict",
    "judged-statistics",
    "latency-by-percentile",
    "all-latency-statistics",
    "counts-and-throughput",
    "runs",
)


# --- summaries, built as a run builds them -------------------------------------------------------


def run_facts(**changes: Any) -> dict[str, Any]:
    run: dict[str, Any] = {
        "id": "20260101-000000-abc",
        "started": "2026-01-01T00:00:00+00:00",
        "ended": "2026-01-01T00:00:20+00:00",
        "duration_s": 20.0,
        "loadtest_version": "0.1.0",
        "locust_version": "2.40.0",
        "host": "http://127.0.0.1:8089",
        "deployment": "dep1",
        "channel": "web-en-US",
        "mock": True,
        "users": 4,
        "workers": 1,
        "history": "server",
        "transport": "gevent",
        "gc": "auto",
        "system_fingerprints": [],
    }
    return {**run, **changes}


def record(
    metrics: Metrics, *, turns: int, failed: int = 0, scenarios: tuple[str, ...] = ("booking", "faq")
) -> None:
    """`turns` turns over 20 s, the first `failed` of them failed, in three turn positions."""
    m = metrics
    for i in range(turns):
        scenario = scenarios[i % len(scenarios)]
        scopes = (f"turn={i % 3 + 1}", f"scenario={scenario}")
        interval = interval_of(T0 + i * 20 // turns)
        m.count_scoped("turns", scopes)
        m.count("chunks", 5)
        m.counts[at("chunks", interval)] += 5
        if i < failed:
            kind = "http_500" if i % 2 else catalog.Failure.IDLE_TIMEOUT
            m.count_scoped("turns_failed", scopes)
            m.counts[at("turns_failed", interval)] += 1
            m.error(kind, f"{kind} on turn {i}")
            m.counts[scoped(f"{ERROR_COUNT_PREFIX}{kind}", catalog.SCENARIO, scenario)] += 1
            continue
        m.count_scoped("turns_ok", scopes)
        m.counts[at("turns_ok", interval)] += 1
        ttft_ns, turn_ns = (20 + 3 * i) * 1_000_000, (70 + 3 * i) * 1_000_000
        m.record_scoped("ttft", ttft_ns, scopes, interval)
        m.record_scoped("turn", turn_ns, scopes, interval)
        m.hist("ttft_response").record_ns(ttft_ns + 2_000_000)
        m.hist("ttfb").record_ns(ttft_ns - 10_000_000)
        m.hist("turn_response").record_ns(turn_ns + 2_000_000)
        for gap_ms in (2, 3, 4, 5):
            m.itl.record_ns(gap_ms * 1_000_000)
    for n, scenario in enumerate(scenarios):
        scope = (f"scenario={scenario}",)
        m.count_scoped("conversations_started", scope, 5)
        m.count_scoped("conversations_completed", scope, 4 - n)
        m.record_scoped("conversation", (300 + n) * 1_000_000, scope)
    m.protocol["role_only_chunks"] += turns
    m.protocol["no_done"] += 2


def summarise(metrics: Metrics, run: dict[str, Any], users: dict[int, int]) -> dict[str, Any]:
    """summary.json as a run writes it, as plain data the tests may change."""
    return cast(dict[str, Any], build_summary(metrics, run, users))


def client_health(*, lag_ms: float, samples: int = 400) -> dict[str, Any]:
    monitor = HealthMonitor()
    for i in range(samples):
        monitor.record_lag(int(lag_ms * 1_000_000) + i * 1000)
        monitor.record_pool_wait(500_000)
    monitor.record_cpu(500, 1000)
    return monitor.summary()


def judged(summary: dict[str, Any], *exprs: str) -> dict[str, Any]:
    outcomes = thresholds.evaluate(thresholds.parse_all(exprs), summary)
    summary["thresholds"] = [o.to_json() for o in outcomes]
    summary["verdict"] = thresholds.verdict(outcomes)
    return summary


def users_by_interval() -> dict[int, int]:
    return {interval_of(T0 + s): 4 for s in range(0, 21, 5)}


def built_once(build: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """A summary builder whose summaries are built once (hdrh's mean walks every bucket in Python:
    a second or two each) and handed out as copies a test may change."""
    built = cache(build)

    @wraps(build)
    def fresh(*args: Any) -> dict[str, Any]:
        return copy.deepcopy(built(*args))

    return fresh


@built_once
def passing_run() -> dict[str, Any]:
    metrics = Metrics()
    record(metrics, turns=40)
    summary = summarise(metrics, run_facts(), users_by_interval())
    summary["client_health"] = client_health(lag_ms=1)
    return judged(summary, "ttft.p95<5s", "error_rate<1%")


@built_once
def failing_run(name: str = "faq") -> dict[str, Any]:
    """Failed turns, failed thresholds, a run stopped early, an overloaded client; `name` is a scenario,
    an error kind and example, the host, a threshold and a protocol counter."""
    metrics = Metrics()
    record(metrics, turns=40, failed=6, scenarios=(name, "booking"))
    metrics.error(name, name)
    metrics.protocol[name] += 1
    run = run_facts(host=name, deployment=name, system_fingerprints=[name, "fp_2"], aborted_by_threshold=name)
    summary = summarise(metrics, run, users_by_interval())
    summary["client_health"] = client_health(lag_ms=30)
    summary = judged(summary, "ttft.p95<50ms", "error_rate<1%", "turn{scenario=booking}.p99<10s")
    summary["thresholds"].append({"expr": name, "observed": None, "passed": False, "unit": "ms"})
    return summary


@built_once
def empty_run() -> dict[str, Any]:
    summary = summarise(Metrics(), run_facts(users=0, started=None, ended=None, duration_s=None), {})
    summary["client_health"] = client_health(lag_ms=1, samples=10)
    return summary


def old_summary() -> dict[str, Any]:
    """A summary as the first loadtest versions wrote it: no timeline, breakdowns, protocol or verdict."""
    stats = {"count": 0, "min": None, "mean": None, "p50": None, "p90": None, "p95": None, "p99": None}
    return {
        "schema": "loadtest.summary/1",
        "run": {"id": "old-run", "host": "http://old.example"},
        "metrics": {"ttft_ms": dict(stats), "turn_ms": dict(stats), "itl_ms": dict(stats)},
        "counts": {"turns": 0},
        "errors": [],
    }


SHAPES = {"passing": passing_run, "failing": failing_run, "empty": empty_run, "old": old_summary}


# --- reading a page without a browser -----------------------------------------------------------


class Page(HTMLParser):
    """A page as a reader sees it: the text of each <section id=...>, the title, every attribute."""

    BLOCKS = frozenset({"br", "dd", "div", "dt", "figcaption", "h1", "h2", "p", "pre", "td", "th", "tr"})

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.html = html
        self.sections: dict[str, list[str]] = {}
        self.attributes: list[tuple[str, str, str | None]] = []
        self.repeated: list[tuple[str, list[tuple[str, str | None]]]] = []  # a tag with an attribute twice
        self.title = ""
        self._open: list[str | None] = []
        self._tag = ""
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag = tag
        self.attributes += [(tag, name, value) for name, value in attrs]
        if len({name for name, _ in attrs}) < len(attrs):
            self.repeated.append((tag, attrs))
        if tag == "section":
            section = dict(attrs).get("id")
            self._open.append(section)
            if section:
                self.sections[section] = []
        self._gap(tag)

    def handle_endtag(self, tag: str) -> None:
        self._tag = ""
        self._gap(tag)
        if tag == "section":
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._tag == "title":
            self.title += data
        for section in self._open:
            if section:
                self.sections[section].append(data)

    def _gap(self, tag: str) -> None:
        if tag in self.BLOCKS:
            self.handle_data(" ")

    def text(self, section: str) -> str:
        return " ".join("".join(self.sections[section]).split())

    def _card(self, section: str) -> str:
        found = re.search(rf'<section class="card" id="{section}">(.*?)</section>', self.html, re.S)
        assert found is not None, section
        return found.group(1)

    def rows(self, section: str) -> list[list[str]]:
        """The cell texts of the body rows of the tables of `section`."""
        bodies = re.findall(r"<tbody>(.*?)</tbody>", self._card(section), re.S)
        rows = [row for body in bodies for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]
        return [[_text(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)] for row in rows]

    def head(self, section: str) -> list[list[str]]:
        """The heading rows of the first table of `section`."""
        thead = re.search(r"<thead>(.*?)</thead>", self._card(section), re.S)
        assert thead is not None, section
        rows = re.findall(r"<tr[^>]*>(.*?)</tr>", thead.group(1), re.S)
        return [[_text(cell) for cell in re.findall(r"<th[^>]*>(.*?)</th>", row, re.S)] for row in rows]


def _text(markup: str) -> str:
    return html_module.unescape(" ".join(re.sub(r"<[^>]+>", "", markup).split()))


def chart_data(html: str) -> list[dict[str, Any]]:
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    assert found is not None
    specs: list[dict[str, Any]] = json.loads(found.group(1))["charts"]
    return specs


# --- without a browser --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_every_section_is_there_and_nothing_is_fetched(shape: str) -> None:
    summary = SHAPES[shape]()
    html = render_html(summary)
    page = Page(html)
    assert html.startswith("<!doctype html>")
    assert tuple(page.sections) == SECTIONS
    assert loaded_references(html) == []
    # No address in the markup but the tested host's (uPlot's code names the SVG namespace).
    markup = re.sub(r"<(script|style)[^>]*>.*?</\1>", "", html, flags=re.S)
    host = str(summary["run"].get("host", ""))
    assert not re.search("https?://", markup.replace(str(escape(host)), ""))
    assert html.count("<script") == 3  # the chart data, uPlot, ours
    # Colours are in the style sheet: no style attribute anywhere.
    assert [a for a in page.attributes if a[1] == "style"] == []
    assert page.repeated == []
    assert "this file loads nothing from the network" in html


def test_a_passing_run() -> None:
    summary = passing_run()
    page = Page(render_html(summary))
    assert page.text("verdict").startswith("PASS All 2 thresholds held 0 of 40 turns failed.")
    assert page.rows("thresholds") == [
        ["ttft.p95<5s", format_observed(summary["metrics"]["ttft_ms"]["p95"], "ms"), "< 5,000.0 ms", "PASS"],
        ["error_rate<1%", "0.00%", "< 1.00%", "PASS"],
    ]
    run = page.text("run")
    assert "http://127.0.0.1:8089" in run and "dep1" in run and "2026-01-01 00:00:00 UTC" in run
    assert "The load generator kept up" in page.text("client-health")
    assert "No errors" in page.text("errors")
    assert [s["id"] for s in chart_data(page.html)] == [
        "dist-ttft",
        "dist-turn",
        "time-ttft",
        "time-turn",
        "time-throughput",
    ]


def table_metrics(summary: dict[str, Any]) -> list[catalog.Metric]:
    """The metrics of the Latency table: an optional one only with samples."""
    metrics = summary["metrics"]
    return [m for m in catalog.TABLE_METRICS if metrics[m.summary_key]["count"] or not m.optional]


def test_tables_follow_the_catalog_and_its_number_format() -> None:
    summary = passing_run()
    page = Page(render_html(summary))
    assert page.head("latency") == [["metric", "count", *(s.label for s in catalog.STATS)]]
    rows = page.rows("latency")
    # An optional metric without samples has no row: this run had no TLS, no reasoning, no usage.
    shown = table_metrics(summary)
    assert [m.key for m in shown] == ["ttft", "turn", "itl", "conversation", "ttfb"]
    assert [row[0].lower() for row in rows] == [m.heading.lower() for m in shown]
    for metric, row in zip(shown, rows, strict=True):
        stats = summary["metrics"][metric.summary_key]
        assert row[1:] == [f"{stats['count']:,}", *(format_number(stats[s.key]) for s in catalog.STATS)]
    assert f".swatch.m-{catalog.TTFT.key} {{ background: {catalog.TTFT.color}; }}" in page.html

    groups, head = page.head("by-turn")
    turn_metrics = catalog.scoped_metrics(catalog.TURN)
    counts = ["all", "ok", "failed", "cut", "good"]
    assert head == ["turn", *counts, *[s.label for s in catalog.BREAKDOWN_STATS] * 2]
    assert [m.label for m in turn_metrics] == groups[-len(turn_metrics) :]
    assert [row[0] for row in page.rows("by-turn")] == ["1", "2", "3"]
    first = summary["by_turn"]["1"]
    assert page.rows("by-turn")[0][1:6] == [
        str(first["counts"][k]) for k in catalog.scoped_counts(catalog.TURN)
    ]
    assert page.rows("by-turn")[0][6] == format_number(first["ttft_ms"]["p50"])

    _, head = page.head("by-scenario")
    assert len(head) == 1 + len(catalog.scoped_counts(catalog.SCENARIO)) + 3 * len(catalog.BREAKDOWN_STATS)
    assert [row[0] for row in page.rows("by-scenario")] == ["booking", "faq"]


def test_a_failing_run_shows_why() -> None:
    summary = failing_run()
    page = Page(render_html(summary))
    verdict = page.text("verdict")
    assert verdict == (
        "FAIL 3 of 4 thresholds failed "
        f"threshold ttft.p95<50ms (observed {format_observed(summary['thresholds'][0]['observed'], 'ms')}) "
        "threshold error_rate<1% (observed 15.00%) threshold faq (observed no data) "
        "6 of 40 turns failed; stopped early by --threshold-abort: faq."
    )
    assert [row[-1] for row in page.rows("thresholds")] == ["FAIL", "FAIL", "PASS", "FAIL"]
    assert page.rows("thresholds")[-1][1:3] == ["no data", "–"]
    errors = {row[0]: row[1:] for row in page.rows("errors")}
    assert errors["http_500"] == ["3", "42.9%", "http_500 on turn 1"]
    assert errors["idle_timeout"][:2] == ["3", "42.9%"]
    health = page.text("client-health")
    assert "The load generator was the bottleneck: event-loop lag p99" in health
    assert 'class="note bad"' in page.html
    assert 'class="counter quirk"' in page.html  # no_done is not a normal count
    assert page.rows("by-scenario")[1][:4] == ["faq", "20", "17", "3"]


def test_an_empty_run() -> None:
    page = Page(render_html(empty_run()))
    assert page.text("verdict").startswith(
        "EMPTY No turn finished: there is nothing to judge empty no turn finished (0 conversations started"
    )
    assert 'class="verdict empty"' in page.html and "Gate runs" not in page.html
    assert page.text("latency-by-percentile").count("No completed turns: nothing to draw.") == 2
    assert "The run was too short to judge the load generator" in page.text("client-health")
    assert "No timeline in this summary" in page.text("over-time")
    assert "No per-turn breakdown" in page.text("by-turn")
    assert all(set(row[2:]) == {"–"} for row in page.rows("latency"))
    assert chart_data(page.html) == []


def test_an_old_summary_without_optional_parts() -> None:
    page = Page(render_html(old_summary()))
    assert "This summary has no client-health data." in page.text("client-health")
    assert page.rows("latency")[0][:2] == ["TTFT", "0"]
    counters = re.findall(
        r'<div class="counter zero"[^>]*><code>(\w+)</code><span class="n">0</span>', page.html
    )
    assert counters == [c.key for c in PROTOCOL_COUNTS]


def test_everything_from_the_summary_is_escaped() -> None:
    html = render_html(failing_run(NASTY))
    assert "<img" not in html and "<script>alert" not in html and "onerror=alert(2)>" not in html
    assert html.count("<script") == 3
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&gt;&lt;img" in html
    page = Page(html)
    assert page.title.endswith(NASTY)
    for section in (
        "verdict",
        "thresholds",
        "run",
        "by-scenario",
        "errors",
        "stream-protocol",
        "client-health",
    ):
        assert NASTY in page.text(section) or section == "client-health", section
    assert [row[0] for row in page.rows("by-scenario")] == ["booking", NASTY]
    assert any(row[0] == NASTY and row[-1] == NASTY for row in page.rows("errors"))


def test_chart_data_cannot_close_its_script(monkeypatch: pytest.MonkeyPatch) -> None:
    draw = charts.distribution_spec

    def labelled(chart_id: str, unit: str, curves: Any, stats: Any = None) -> dict[str, Any] | None:
        return draw(chart_id, unit, [(NASTY, color, curve) for _, color, curve in curves], stats)

    monkeypatch.setattr(charts, "distribution_spec", labelled)
    html = render_html(passing_run())
    assert html.count("<script") == 3 and "<img" not in html
    specs = chart_data(html)
    assert specs[0]["series"][0]["label"] == NASTY


def test_loadtest_report_renders_the_same_page_again(tmp_path: Path) -> None:
    summary = passing_run()
    (tmp_path / "summary.json").write_bytes(orjson.dumps(summary))
    again = tmp_path / "again.html"
    assert main(["report", str(tmp_path), "-o", str(again)]) == 0
    assert again.read_text(encoding="utf-8") == render_html(summary)


def test_the_comparison_page() -> None:
    baseline, new = passing_run(), failing_run(NASTY)
    new["run"]["id"] = NASTY
    html = render_compare_html(compare(baseline, new, 0.1), baseline, new)
    page = Page(html)
    assert tuple(page.sections) == COMPARE_SECTIONS
    assert loaded_references(html) == [] and html.count("<script") == 3
    assert "<img" not in html and "<script>alert" not in html
    assert page.title == f"Load test comparison · http://127.0.0.1:8089 → {NASTY}"
    assert page.text("verdict").startswith("REGRESSION")
    assert "A regression is the new run worse" in page.text("judged-statistics")
    checks = page.rows("judged-statistics")
    assert [row[0] for row in checks] == [
        *(f"{m.label} {s.label}" for m in catalog.METRICS if m.gated for s in catalog.BREAKDOWN_STATS),
        "error rate",
    ]
    assert checks[-1][1:3] == ["0.00%", "15.00%"] and checks[-1][-1] == "WORSE"
    # A browser keeps the first of two `class` attributes: one each, or the highlight is lost.
    assert page.repeated == []
    body = re.search(r"<tbody>(.*?)</tbody>", page._card("judged-statistics"), re.S)
    assert body is not None
    judged_rows = re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)
    for row, cells in zip(judged_rows, checks, strict=True):
        marked = re.findall(r"<td class=\"(worse|better)\">", row)  # the Δ and Δ % cells
        if cells[-1] == "WORSE":
            assert marked == ["worse", "worse"], row
        else:
            assert marked in ([], ["better", "better"]), row
    runs = {row[0]: row[1:] for row in page.rows("runs")}
    assert runs["run id"] == ["20260101-000000-abc", NASTY]
    assert runs["host"] == ["http://127.0.0.1:8089", NASTY]
    assert re.search(r'<td class="l wrap worse"><code>[^<]*evil', html)  # the host differs
    assert [s["id"] for s in chart_data(html)] == ["dist-ttft", "dist-turn"]
    # A statistic neither run has (no TLS, no usage) has no row; one only the baseline has would.
    statistics = [row[0] for row in page.rows("all-latency-statistics")]
    assert "time to response headers p95" in statistics
    assert not [name for name in statistics if name.startswith(("TLS", "output tokens"))]

    same = render_compare_html(compare(baseline, baseline, 0.1), baseline, baseline)
    assert (
        Page(same)
        .text("verdict")
        .startswith(
            "NO REGRESSION Nothing judged is worse than the baseline by more than 10% "
            "Judged: p50, p95 and p99 of TTFT and turn latency, and the error rate."
        )
    )


# --- in Chromium --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_chromium()
    with chromium() as b:
        yield b


def test_report_draws_every_chart_offline(browser: Browser, tmp_path: Path) -> None:
    from tests.test_report_time_split import split_run

    # The passing run with "Where the time goes" and token usage: every chart of a run.
    summary = with_tokens(split_run())
    report = tmp_path / "report.html"
    report.write_text(render_html(summary), encoding="utf-8")
    specs = chart_data(report.read_text(encoding="utf-8"))
    expected = [s["id"] for s in specs]
    ttft = summary["metrics"]["ttft_ms"]
    dist = specs[0]["data"]
    assert dist[0][0] == 0 and dist[1][-1] == ttft["max"]
    assert dist[1] == sorted(dist[1])

    shown = load(browser, report)
    page = shown.page
    page.wait_for_function(f"document.querySelectorAll('.plot canvas').length >= {len(expected)}")
    assert shown.errors == [] and shown.dialogs == []
    assert shown.foreign_requests == []
    for chart_id in expected:
        box = page.locator(f"#{chart_id}")
        assert box.locator("canvas").count() == 1, chart_id
        size = box.locator("canvas").bounding_box()
        assert size is not None and size["width"] > 300 and size["height"] > 150, (chart_id, size)
    assert page.locator("#verdict.pass").inner_text().startswith("PASS")
    assert page.locator("#thresholds table.thresholds tbody tr").count() == 2
    assert page.locator("#latency tbody tr").count() == len(table_metrics(summary))
    assert page.locator("#by-turn tbody tr").count() == len(summary["by_turn"])
    assert page.locator("#by-scenario tbody tr").count() == len(summary["by_scenario"])
    counters = page.locator("#stream-protocol .counter").all_inner_texts()
    assert [c.split()[0] for c in counters[: len(PROTOCOL_COUNTS)]] == [c.key for c in PROTOCOL_COUNTS]
    # The metric colours of the style sheet reach the swatches.
    swatch = page.locator("#latency .swatch").first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert swatch == "rgb(37, 99, 235)" == _rgb(catalog.TTFT.color)
    # "Where the time goes" is drawn to scale: p95's set-up is 310 of the 1,200 ms of p99's bar.
    assert {"time-connections", "time-output-tokens"} <= set(expected)
    p95 = page.locator("#where-the-time-goes svg.bar").nth(1)
    track, setup = p95.bounding_box(), p95.locator("rect.part-setup").bounding_box()
    assert track is not None and setup is not None and track["width"] > 500
    assert setup["width"] == pytest.approx(track["width"] * 310 / 1200, abs=1.5)
    assert p95.locator("rect.part-setup").evaluate("e => getComputedStyle(e).fill") == "rgb(180, 83, 9)"


def test_an_old_summary_renders_in_the_browser(browser: Browser, tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_html(old_summary()), encoding="utf-8")
    shown = load(browser, path)
    assert shown.errors == [] and shown.foreign_requests == []
    page = shown.page
    # No turn finished: an empty run, in the grey of "nothing to judge".
    banner = page.locator("#verdict.empty")
    assert banner.inner_text().startswith("EMPTY")
    word = banner.locator(".word").evaluate("e => getComputedStyle(e).backgroundColor")
    assert word == _rgb("#3b4654")
    assert "No timeline" in page.locator("#over-time").inner_text()
    assert page.locator(".plot").count() == 0
    counters = page.locator("#stream-protocol .counter").all_inner_texts()
    assert [c.split() for c in counters] == [[c.key, "0"] for c in PROTOCOL_COUNTS]


def test_an_escaped_report_runs_no_script_of_its_data(browser: Browser, tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_html(failing_run(NASTY)), encoding="utf-8")
    shown = load(browser, path)
    shown.page.wait_for_function("document.querySelectorAll('.plot canvas').length >= 5")
    assert shown.errors == [] and shown.dialogs == [] and shown.foreign_requests == []
    page = shown.page
    assert NASTY in page.locator("#run").inner_text()
    assert NASTY in page.locator("#errors").inner_text()
    assert page.locator("#verdict.fail").inner_text().startswith("FAIL")
    assert page.title().endswith(NASTY)
    assert page.locator("img").count() == 0


def test_the_comparison_page_draws_both_runs(browser: Browser, tmp_path: Path) -> None:
    baseline, new = passing_run(), failing_run()
    path = tmp_path / "compare.html"
    path.write_text(render_compare_html(compare(baseline, new, 0.1), baseline, new), encoding="utf-8")
    shown = load(browser, path)
    page = shown.page
    page.wait_for_function("document.querySelectorAll('.plot canvas').length >= 2")
    assert shown.errors == [] and shown.dialogs == [] and shown.foreign_requests == []
    for chart_id in ("dist-ttft", "dist-turn"):
        legend = page.locator(f"#{chart_id} .u-legend").inner_text()
        assert "baseline" in legend and "new" in legend
    assert page.locator("#verdict.fail").inner_text().startswith("REGRESSION")
    # The new run's facts that differ are marked (host, deployment, fingerprints, the early stop);
    # the run id, the times and the duration always differ, and are not.
    worse = page.locator("#runs td.worse").all_inner_texts()
    assert worse == ["faq", "faq", "faq, fp_2", "faq"]


def _rgb(hex_color: str) -> str:
    n = int(hex_color[1:], 16)
    return f"rgb({n >> 16}, {(n >> 8) & 255}, {n & 255})"


# --- chart data ---------------------------------------------------------------------------------


def test_percentile_curve_follows_the_histogram() -> None:
    hist = Histogram()
    for ms in range(1, 1001):
        hist.record_us(ms * 1000)
    stats = hist.stats_ms()
    curve = charts.percentile_curve(stats["hdr"])
    assert curve is not None and curve.count == 1000
    x = curve.x
    assert x[0] == 0 and x[-1] == pytest.approx(3.3, abs=charts.X_STEP)  # log10(2 * 1000)
    assert curve.ms[0] == stats["min"] and curve.ms[-1] == stats["max"]
    assert list(curve.ms) == sorted(curve.ms)
    at_x = dict(zip(x, curve.ms, strict=True))
    assert at_x[1.0] == stats["p90"] and at_x[2.0] == stats["p99"] and at_x[3.0] == stats["p999"]
    assert charts.percentile_curve(Histogram().encode()) is None
    assert charts.percentile_curve("not a histogram") is None


def test_distribution_marks_the_catalog_statistics() -> None:
    hist = Histogram()
    for ms in range(1, 1001):
        hist.record_us(ms * 1000)
    stats = hist.stats_ms()
    spec = charts.distribution_spec(
        "d", "ms", [("TTFT", "#000000", charts.percentile_curve(stats["hdr"]))], stats
    )
    assert spec is not None
    assert [(m["label"], m["y"]) for m in spec["marks"]] == [(s.label, stats[s.key]) for s in charts.MARKS]
    assert [m["x"] for m in spec["marks"]][:2] == [pytest.approx(0.30103), 1.0]  # p50, p90


def test_timeline_rates_count_only_the_part_of_an_interval_the_run_covered() -> None:
    point = {"users": 2, "turns_ok": 10, "turns_failed": 2, "ttft_ms": {"count": 10, "p50": 5.0}}
    summary = {
        "run": {"started": "2026-01-01T00:00:02+00:00", "ended": "2026-01-01T00:00:12+00:00"},
        "timeline": {
            "interval_s": 5,
            "points": [{"t": t, **point} for t in (1767225600, 1767225605, 1767225610)],
        },
    }
    tl = charts.timeline(summary)
    assert tl is not None
    assert tl.ok_per_s == (3.333, 2.0, 5.0)
    assert tl.failed_per_s == (0.667, 0.4, 1.0)
    assert tl.latency["ttft"]["p50"] == (5.0, 5.0, 5.0) and tl.latency["turn"]["p99"] == (None,) * 3
    assert charts.timeline({"timeline": {"interval_s": 5, "points": []}}) is None
    assert charts.timeline({}) is None


def test_latency_over_time_uses_the_metric_shades() -> None:
    tl = charts.timeline(passing_run())
    assert tl is not None
    spec = charts.latency_over_time_spec("t", tl, catalog.TURN_LATENCY)
    assert [s["label"] for s in spec["series"]] == [s.label for s in catalog.TIMELINE_STATS]
    assert [s["color"] for s in spec["series"]] == list(catalog.TURN_LATENCY.shades)
    assert len(spec["data"]) == 1 + len(catalog.TIMELINE_STATS) and len(spec["data"][0]) == len(tl.t)


# Completion tokens per timeline interval of `with_tokens`: 20 s in 5 s intervals, the fifth holding
# only the run's last instant.
TOKENS = (100, 200, 300, 400, 0)


def with_tokens(summary: dict[str, Any]) -> dict[str, Any]:
    """`summary` as a run against a server that sends usage writes it: completion tokens per interval."""
    for point, tokens in zip(summary["timeline"]["points"], TOKENS, strict=True):
        point["completion_tokens"] = tokens
    counts = summary["counts"]
    counts.update(completion_tokens=sum(TOKENS), prompt_tokens=2 * sum(TOKENS))
    counts["turns_with_usage"] = counts["turns_ok"]
    return summary


@pytest.mark.parametrize(("measured_s", "overall"), [(None, "50.0"), (16.0, "62.5")])
def test_output_tokens_over_time_with_the_overall_rate_of_the_console(
    measured_s: float | None, overall: str
) -> None:
    """Rates per interval from the timeline; the overall rate over the time the figures cover (16 s
    after a RESET), the number the console and summary.md give."""
    summary = with_tokens(passing_run())
    if measured_s is not None:
        summary["run"]["measured_s"] = measured_s
    page = Page(render_html(summary))
    ids = [s["id"] for s in chart_data(page.html)]
    assert ids[ids.index("time-throughput") + 1] == "time-output-tokens"
    [spec] = [s for s in chart_data(page.html) if s["id"] == "time-output-tokens"]
    assert spec["kind"] == "time" and spec["unit"] == "tokens/s"
    assert [(s["label"], s["color"]) for s in spec["series"]] == [
        ("output tokens/s", catalog.OUTPUT_TPS.color)
    ]
    assert spec["data"][0] == [T0 + 2.5 + 5 * i for i in range(len(TOKENS))]
    assert spec["data"][1] == [20.0, 40.0, 60.0, 80.0, 0.0]
    assert f"Output tokens per second every 5 s; {overall} tokens/s overall" in page.text("over-time")
    [console] = [line for line in stream_lines(summary) if line.startswith("tokens ")]
    assert console.endswith(f"; {overall} output tokens/s")
    assert 'id="time-output-tokens" data-chart="time"' in page.html


@pytest.mark.parametrize("absent", [False, True], ids=["counted-none", "absent"])
def test_no_output_tokens_chart_without_token_usage(absent: bool) -> None:
    """A server that sends no usage (NLX) counts no completion tokens; an older summary has no count."""
    summary = passing_run()
    for point in summary["timeline"]["points"]:
        if absent:
            del point["completion_tokens"]
        else:
            assert point["completion_tokens"] == 0
    html = render_html(summary)
    assert "time-output-tokens" not in html and "Output tokens per second" not in html
    assert "time-throughput" in [s["id"] for s in chart_data(html)]


def test_the_settings_of_the_run_and_lost_workers_are_shown_and_compared() -> None:
    summary = copy.deepcopy(passing_run())
    summary["run"]["settings"] = {"think_time": "0.5-1", "history": "last", "threshold": ["ttft.p95<1s"]}
    summary["run"]["workers_lost"] = [{"id": "worker-7", "lost_after_s": 9.5}]
    html = render_html(summary)
    assert "<code>--think-time</code>" in html and "0.5-1" in html and "ttft.p95&lt;1s" in html
    assert "worker-7 after" in html and "{" not in _text(html.split('id="run"')[1].split("</section>")[0])
    baseline = copy.deepcopy(summary)
    baseline["run"]["settings"]["think_time"] = "1-3"
    page = render_compare_html(compare(baseline, summary, 0.1), baseline, summary)
    row = next(line for line in page.splitlines() if "--think-time" in line)
    assert "1-3" in page and "0.5-1" in page and row


# --- a capacity search: latency against load -------------------------------------------------------------


def searched_run() -> dict[str, Any]:
    from tests.test_capacity import SEARCHED, users_plan

    summary = passing_run()
    summary["capacity"] = capacity.section(users_plan(40, 400, 0.125), SEARCHED, complete=True)
    return summary


def test_a_search_has_its_section_and_a_plain_report_none() -> None:
    summary = searched_run()
    markdown = render_markdown(summary)
    assert "### Capacity\n\n180 concurrent conversations (ttft.p95 790.0 ms); 200 failed" in markdown
    steps = markdown[: markdown.index("### Thresholds")]
    assert steps.count("| ✅ pass |") == 4 and steps.count("| ❌ fail |") == 3
    page = Page(render_html(summary))
    assert "Capacity: 180 concurrent conversations (ttft.p95 790.0 ms)" in page.text("latency-against-load")
    assert [row[0] for row in page.rows("latency-against-load")] == [
        "40",
        "80",
        "160",
        "320",
        "240",
        "200",
        "180",
    ]
    assert [s["id"] for s in chart_data(page.html) if s["kind"] == "load"] == [
        "load-ttft",
        "load-turn",
        "load-goodput",
    ]
    plain = render_html(passing_run())
    assert "latency-against-load" not in plain and "load-ttft" not in plain


def test_load_charts_sort_the_steps_and_draw_the_slo_across(tmp_path: Path) -> None:
    [ttft] = [s for s in chart_data(render_html(searched_run())) if s["id"] == "load-ttft"]
    assert ttft["data"][0] == [40, 80, 160, 180, 200, 240, 320]
    labels = [series["label"] for series in ttft["series"]]
    assert labels == ["p50", "p95", "p99", "SLO ttft.p95<800ms", "passing step", "failing step"]
    assert ttft["data"][4] == [800.0] * 7
    assert ttft["data"][5] == [300.0, 500.0, 742.0, 790.0, None, None, None]  # marked on p95, its SLO
    assert ttft["data"][6] == [None, None, None, None, 912.0, 1500.0, 2400.0]


def test_the_latency_against_load_section_draws_in_a_browser(browser: Browser, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    report.write_text(render_html(searched_run()), encoding="utf-8")
    shown = load(browser, report)
    page = shown.page
    page.wait_for_function("document.querySelectorAll('#latency-against-load canvas').length >= 3")
    assert shown.errors == [] and shown.foreign_requests == []
    legend = page.locator("#load-ttft .u-legend").inner_text()
    assert "SLO ttft.p95<800ms" in legend and "passing step" in legend and "failing step" in legend
    assert page.locator("#latency-against-load table.data tbody tr").count() == 7
    picture = tmp_path / "latency-against-load.png"
    page.locator("#latency-against-load").screenshot(path=str(picture))
    assert picture.stat().st_size > 20_000  # the charts are drawn, not an empty card
