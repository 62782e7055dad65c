"""report.html's "Where the time goes": a bar per percentile of turn latency split into its parts, the
connections opened and reused over time, and the connection phases; no section for a summary without
`time_split`. Drawn in Chromium by tests/test_report_html.py's test of every chart."""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import orjson
import pytest

from loadtest import catalog
from loadtest.catalog import format_number
from loadtest.cli import main
from loadtest.metrics import Histogram
from loadtest.report import charts
from loadtest.report.html import render_html
from tests.browser import loaded_references
from tests.test_report_html import SECTIONS, Page, chart_data, old_summary, passing_run

SECTION = "where-the-time-goes"
# The mean split of the turns near each percentile, as a run writes it; p95 is the brief's example.
SPLIT = {
    "p50": {
        "turn_ms": 412.0,
        "turns": 20,
        "setup_ms": 1.25,
        "headers_ms": 180.0,
        "first_content_ms": 60.5,
        "streaming_ms": 170.25,
    },
    "p95": {
        "turn_ms": 912.0,
        "turns": 4,
        "setup_ms": 310.0,
        "headers_ms": 200.0,
        "first_content_ms": 150.0,
        "streaming_ms": 252.0,
    },
    "p99": {
        "turn_ms": 1200.0,
        "turns": 2,
        "setup_ms": 400.0,
        "headers_ms": 300.0,
        "first_content_ms": 200.0,
        "streaming_ms": 300.0,
    },
}


def stats_ms(*values_ms: float) -> dict[str, Any]:
    hist = Histogram()
    for ms in values_ms:
        hist.record_us(round(ms * 1000))
    return hist.stats_ms()


def split_run() -> dict[str, Any]:
    """The passing run of the report tests, with what a run over plain http with kept-alive
    connections adds: a split, phases (no TLS: no sample), connection counts per interval."""
    summary = passing_run()
    summary["time_split"] = {stat: dict(entry) for stat, entry in SPLIT.items()}
    summary["metrics"]["ttfb_ms"] = stats_ms(*range(150, 350, 5))
    summary["metrics"]["connect_ms"] = stats_ms(2.0, 3.0, 4.0, 5.0)
    summary["metrics"]["tls_ms"] = stats_ms()  # over http: no handshake
    summary["metrics"]["dns_ms"] = stats_ms(0.5, 0.6, 0.7, 0.8)
    summary["counts"]["connections_opened"] = 4
    summary["counts"]["connections_reused"] = 36
    points = summary["timeline"]["points"]
    for i, point in enumerate(points):
        point["connections_opened"] = 4 if i == 0 else 0
        point["connections_reused"] = point.get("turns_ok", 0) - point["connections_opened"]
    return summary


def test_the_section_splits_each_percentile_of_turn_latency() -> None:
    page = Page(render_html(split_run()))
    sections = list(page.sections)
    assert sections == [*SECTIONS[:5], SECTION, *SECTIONS[5:]]
    text = page.text(SECTION)
    assert (
        "p95 turn 912.0 ms: 310.0 ms connection set-up, 200.0 ms waiting for the response headers, "
        "150.0 ms headers to first content, 252.0 ms streaming (the mean of 4 turns near p95)"
    ) in text
    assert "p50 turn 412.0 ms: 1.25 ms connection set-up, 180.0 ms waiting for the response headers" in text
    assert "p99 turn 1,200.0 ms: 400.0 ms connection set-up" in text
    assert "Connections: 4 opened, 36 kept-alive ones reused; 10.0% of turns opened one." in text
    assert [part.label for part in catalog.TIME_SPLIT_PARTS] == [
        "connection set-up",
        "waiting for the response headers",
        "headers to first content",
        "streaming",
    ]

    bars = bars_of(page.html)
    assert [stat for stat, _ in bars] == ["p50", "p95", "p99"]
    # One scale, the slowest turn's: p99 fills the track, p95 is 912 / 1200 of it, set-up first.
    p95 = dict(bars)["p95"]
    assert [part for part, _, _ in p95] == ["setup", "headers", "first-content", "streaming"]
    assert [x for _, x, _ in p95] == pytest.approx([0.0, 310 / 12, 510 / 12, 660 / 12], abs=1e-3)
    assert [width for _, _, width in p95] == pytest.approx([310 / 12, 200 / 12, 150 / 12, 252 / 12], abs=1e-3)
    p99 = dict(bars)["p99"]
    assert p99[-1][1] + p99[-1][2] == pytest.approx(100.0)
    # p50's set-up (1.25 ms) and first content (60.5 ms, 5 % of the scale) are too narrow for their
    # figures, which the sentence gives.
    labels = re.findall(r"<text [^>]*>([^<]*)</text>", section_html(page.html))
    assert labels[:6] == ["180.0", "170.2", "310.0", "200.0", "150.0", "252.0"]


def test_the_connection_phases_and_counts_over_time() -> None:
    summary = split_run()
    page = Page(render_html(summary))
    rows = page.rows(SECTION)
    # No TLS row: the run was over plain http.
    assert [row[0] for row in rows] == [
        "Time to response headers",
        "DNS lookup (new connections)",
        "TCP connect (new connections)",
    ]
    ttfb, connect = summary["metrics"]["ttfb_ms"], summary["metrics"]["connect_ms"]
    assert rows[0][1:] == ["40", *(format_number(ttfb[s.key]) for s in catalog.BREAKDOWN_STATS)]
    assert rows[2][1:] == ["4", *(format_number(connect[s.key]) for s in catalog.BREAKDOWN_STATS)]

    [spec] = [s for s in chart_data(page.html) if s["id"] == "time-connections"]
    assert [s["label"] for s in spec["series"]] == ["opened", "reused"]
    tl = charts.timeline(summary)
    assert tl is not None
    assert spec["data"][1] == list(tl.rate("connections_opened"))
    assert spec["data"][1][0] > 0 and set(spec["data"][1][1:]) == {0}
    assert spec["data"][2] == list(tl.rate("connections_reused")) and sum(spec["data"][2]) > 0
    assert 'id="time-connections" data-chart="time"' in page.html


def test_the_page_stays_valid_and_self_contained() -> None:
    html = render_html(split_run())
    page = Page(html)
    assert [a for a in page.attributes if a[1] == "style"] == [] and page.repeated == []
    assert loaded_references(html) == [] and html.count("<script") == 3
    for svg in re.findall(r"<svg .*?</svg>", section_html(html), re.S):
        bar = ElementTree.fromstring(svg)  # well-formed: every element closed, attributes quoted
        assert bar.get("aria-label", "").startswith(("p50 turn", "p95 turn", "p99 turn"))
        assert all(float(r.get("width", "0").rstrip("%")) > 0 for r in bar.iter("rect"))


@pytest.mark.parametrize(
    "split",
    [None, {}, {"p50": {"turn_ms": None}}, {"p95": "not a split"}, "not a split"],
    ids=["absent", "empty", "no-latency", "bad-entry", "bad-section"],
)
def test_no_section_without_a_split(split: Any) -> None:
    summary = split_run()
    if split is None:
        del summary["time_split"]
    else:
        summary["time_split"] = split
    page = Page(render_html(summary))
    assert tuple(page.sections) == SECTIONS
    assert "time-connections" not in page.html and "Where the time goes" not in page.html


@pytest.mark.parametrize("absent", [False, True], ids=["counted-none", "absent"])
def test_a_split_without_connection_figures_has_the_bars_only(absent: bool) -> None:
    """Parts missing from an entry are left out; no connection counted (or none in the summary), no
    phase with a sample: no line, chart or table for them."""
    summary = split_run()
    summary["time_split"] = {"p95": {"turn_ms": 80.0, "turns": 1, "headers_ms": 50.0, "streaming_ms": 30.0}}
    for key in ("ttfb_ms", "connect_ms", "tls_ms", "dns_ms"):
        summary["metrics"][key] = stats_ms()
    for counts in (summary["counts"], *summary["timeline"]["points"]):
        for key in ("connections_opened", "connections_reused"):
            if absent:
                del counts[key]
            else:
                counts[key] = 0
    page = Page(render_html(summary))
    assert [stat for stat, _ in bars_of(page.html)] == ["p95"]
    text = page.text(SECTION)
    assert (
        "p95 turn 80.0 ms: 50.0 ms waiting for the response headers, 30.0 ms streaming (the one turn" in text
    )
    assert "Connections:" not in text and "<tbody>" not in section_html(page.html)
    assert "time-connections" not in page.html


def test_loadtest_report_of_an_old_summary_has_no_section(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_bytes(orjson.dumps(old_summary()))
    out = tmp_path / "report.html"
    assert main(["report", str(tmp_path), "-o", str(out)]) == 0
    assert SECTION not in Page(out.read_text(encoding="utf-8")).sections


def test_the_timeline_rates_every_count_of_its_points() -> None:
    summary = split_run()
    tl = charts.timeline(summary)
    assert tl is not None
    assert set(tl.per_s) >= {"turns_ok", "turns_failed", "chunks", "connections_opened"}
    assert tl.ok_per_s == tl.rate("turns_ok") and tl.rate("no_such_count") == (0.0,) * len(tl.t)
    old = copy.deepcopy(summary)
    for point in old["timeline"]["points"]:
        del point["connections_opened"], point["connections_reused"]
    tl_old = charts.timeline(old)
    assert tl_old is not None and "connections_opened" not in tl_old.per_s
    assert charts.connections_spec("c", tl_old) is None


def bars_of(html: str) -> list[tuple[str, list[tuple[str, float, float]]]]:
    """Each bar's percentile, then its parts: slug, x and width in % of the track."""
    found = re.findall(r'<div class="stat">(\w+)</div>\s*<svg .*?</svg>', section_html(html), re.S)
    svgs = re.findall(r"<svg .*?</svg>", section_html(html), re.S)
    return [
        (stat, [(p, float(x), float(w)) for p, x, w in re.findall(PART, svg)])
        for stat, svg in zip(found, svgs, strict=True)
    ]


PART = r'<rect class="part-([\w-]+)" x="([\d.]+)%" y="0" width="([\d.]+)%"'


def section_html(html: str) -> str:
    found = re.search(rf'<section class="card" id="{SECTION}">(.*?)</section>', html, re.S)
    assert found is not None
    return found.group(1)
