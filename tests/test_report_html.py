"""report.html: rendered from a real run, opened in headless Chromium, charts drawn, nothing fetched."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from loadtest.cli import main
from loadtest.metrics import Histogram
from loadtest.report import charts
from loadtest.report.html import PROTOCOL, render_html
from tests.browser import chromium, load, loaded_references, require_chromium
from tests.conftest import NLX, TEST_KEY, LocustRun, Mock, locust_env

FAST = ("--ttft", "uniform:20ms:60ms", "--itl", "uniform:1ms:5ms", "--chunks", "uniform:2:8")
NASTY = "https://evil.example/</script><script>alert(1)</script>\"'><img src=x onerror=alert(2)>"


@pytest.fixture(scope="session")
def chromium_installed() -> None:
    require_chromium()


@pytest.fixture(scope="module")
def browser(chromium_installed: None) -> Iterator[Browser]:
    with chromium() as b:
        yield b


def chart_data(html: str) -> list[dict[str, Any]]:
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    assert found is not None
    specs: list[dict[str, Any]] = json.loads(found.group(1))["charts"]
    return specs


def test_report_of_a_real_run_draws_every_chart_offline(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun], browser: Browser, tmp_path: Path
) -> None:
    mock = mock_server(*FAST)
    run = run_locust(
        f"--host {mock.url} {NLX} -u 4 -r 4 -t 2s --think-time 0 --stop-timeout 30",
        "--threshold",
        "ttft.p95<5s",
        "--threshold",
        "error_rate<1%",
        env=locust_env(NLX_API_KEY=TEST_KEY),
    )
    assert run.returncode == 0, run.output[-3000:]
    summary = run.summary()
    report = run.report_dir / str(summary["run"]["id"]) / "report.html"
    html = report.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>")
    assert loaded_references(html) == []

    specs = chart_data(html)
    has_timeline = bool((summary.get("timeline") or {}).get("points"))
    expected = ["dist-ttft", "dist-turn"] + (
        ["time-ttft", "time-turn", "time-throughput"] if has_timeline else []
    )
    assert [s["id"] for s in specs] == expected
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
    assert "ttft.p95<5s" in page.locator("#thresholds").inner_text()
    facts = page.locator("#run").inner_text()
    assert mock.url in facts and "dep1" in facts
    assert page.locator("#latency tbody tr").count() == 6  # service and response time
    assert page.locator("#by-turn tbody tr").count() == len(summary["by_turn"])
    assert page.locator("#by-scenario tbody tr").count() == len(summary["by_scenario"])
    counters = page.locator("#stream-protocol .counter").all_inner_texts()
    assert [c.split()[0] for c in counters[: len(PROTOCOL)]] == [key for key, _ in PROTOCOL]

    # `loadtest report` renders the same page again from the run folder.
    again = tmp_path / "again.html"
    assert main(["report", str(report.parent), "-o", str(again)]) == 0
    assert chart_data(again.read_text(encoding="utf-8")) == specs


def minimal_summary() -> dict[str, Any]:
    """A summary as the first loadtest versions wrote it: no timeline, breakdowns, protocol or verdict."""
    stats = {"count": 0, "min": None, "mean": None, "p50": None, "p90": None, "p95": None, "p99": None}
    return {
        "schema": "loadtest.summary/1",
        "run": {"id": "old-run", "host": "http://old.example"},
        "metrics": {"ttft_ms": dict(stats), "turn_ms": dict(stats), "itl_ms": dict(stats)},
        "counts": {"turns": 0},
        "errors": [],
    }


def test_an_old_summary_without_optional_parts_renders(browser: Browser, tmp_path: Path) -> None:
    html = render_html(minimal_summary())
    assert chart_data(html) == []
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    shown = load(browser, path)
    assert shown.errors == [] and shown.foreign_requests == []
    page = shown.page
    assert "NO THRESHOLDS" in page.locator("#verdict.none").inner_text()
    assert "No thresholds were set" in page.locator("#thresholds").inner_text()
    assert "No timeline" in page.locator("#over-time").inner_text()
    assert "nothing to draw" in page.locator("#latency-by-percentile").inner_text()
    counters = page.locator("#stream-protocol .counter").all_inner_texts()
    assert [c.split() for c in counters] == [[key, "0"] for key, _ in PROTOCOL]


def test_everything_from_the_summary_is_escaped(browser: Browser, tmp_path: Path) -> None:
    hist = Histogram()
    for ms in (100, 200, 300):
        hist.record_us(ms * 1000)
    stats = hist.stats_ms()
    summary = minimal_summary()
    summary["run"].update(host=NASTY, deployment=NASTY, system_fingerprints=[NASTY])
    summary["metrics"] = {"ttft_ms": stats, "turn_ms": stats, "itl_ms": stats}
    summary["counts"] = {"turns": 4, "turns_ok": 3, "turns_failed": 1}
    summary["errors"] = [{"kind": "http_500</td>", "count": 1, "example": NASTY}]
    summary["by_scenario"] = {NASTY: {"ttft_ms": stats, "counts": {"turns_ok": 3}}}
    summary["protocol"] = {"no_done": 2, NASTY: 1}
    summary["thresholds"] = [{"expr": NASTY, "observed": None, "passed": False, "unit": "ms"}]
    summary["verdict"] = "fail"
    html = render_html(summary)
    assert "<img" not in html and "<script>alert" not in html
    assert html.count("<script") == 3  # the chart data, uPlot, ours
    assert loaded_references(html) == []
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    shown = load(browser, path)
    shown.page.wait_for_function("document.querySelectorAll('.plot canvas').length >= 2")
    assert shown.errors == [] and shown.dialogs == [] and shown.foreign_requests == []
    page = shown.page
    assert NASTY in page.locator("#run").inner_text()
    assert NASTY in page.locator("#errors").inner_text()
    assert page.locator("#verdict.fail").inner_text().startswith("FAIL")
    assert page.title().endswith(NASTY)


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
    at = dict(zip(x, curve.ms, strict=True))
    assert at[1.0] == stats["p90"] and at[2.0] == stats["p99"] and at[3.0] == stats["p999"]
    assert charts.percentile_curve(Histogram().encode()) is None
    assert charts.percentile_curve("not a histogram") is None


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
