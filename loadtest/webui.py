"""An "Exact latency (HDR)" tab in Locust's web UI, `GET /loadtest/stats` with the same rows, and the
latest run's report.html.

Locust's own tables show percentiles of its rounded response-time buckets; this tab shows TTFT, turn
latency and inter-chunk gaps from our HDR histograms, as the summary does, and the goodput so far. It
refreshes with Locust's stats poll while a test runs. On a master the provider reads the merged worker
data, so the tab moves with each worker report (every 3 s).

Locust's extension points, as used here: `extended_tabs` and `extended_tables` in `web_ui.template_args`
declare the tab and its columns, and an `after_request` hook adds `extended_stats` (the rows, under the
tab's key) to the JSON of `/stats/requests`, which the UI polls every 2 s while a test runs. Locust
renders those cells as given, so the tab's rows carry display text (`tab_rows`); a small script and
style sheet added to the page (`assets/webui.js`, `webui.css` of loadtest.report) right-align them and
put the link to the latest report.html, served at `/loadtest/report.html`, above the table.

The web UI starts load with the API key this process holds: `exposure_warning` says so when it listens
beyond loopback without Locust's login. The key itself is never in any page or answer: it is not an
option, and none of these rows or routes reads it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Response, jsonify, request, send_file
from markupsafe import Markup

from loadtest import catalog, goodput
from loadtest.metrics import Histogram, Metrics, scoped
from loadtest.options import REPORT_DIR
from loadtest.report import charts
from loadtest.report.html import HEADLINE_METRICS
from loadtest.report.schema import CONVERSATION_GOODPUT, GOODPUT
from loadtest.report.summary import LATEST

logger = logging.getLogger("loadtest")

TAB_KEY = "loadtest-latency"
TAB_TITLE = "Exact latency (HDR)"
STATS_PATH = "/loadtest/stats"
CHARTS_PATH = "/loadtest/charts"
REPORT_PATH = "/loadtest/report.html"
ASSETS_PATH = "/loadtest/assets/"
# What the page loads from loadtest, and nothing else of the disk: name -> file. The charts are the
# report's own: its spec (report/charts.py), drawn by its script with uPlot.
_REPORT_PACKAGE = Path(__file__).parent / "report"
ASSETS = {
    "webui.js": _REPORT_PACKAGE / "assets" / "webui.js",
    "webui.css": _REPORT_PACKAGE / "assets" / "webui.css",
    "report.js": _REPORT_PACKAGE / "assets" / "report.js",
    "uPlot.iife.min.js": _REPORT_PACKAGE / "vendor" / "uPlot.iife.min.js",
    "uPlot.min.css": _REPORT_PACKAGE / "vendor" / "uPlot.min.css",
}
# Locust polls every 2 s per open browser tab; percentiles of a few dozen histograms are not free.
CACHE_SECONDS = 1.0
# The plots (a few ms each) are fetched every 5 s by each browser tab showing them.
CHARTS_SECONDS = 4.0

# The summary tables' metrics and statistics; each metric also per turn index and per scenario when
# it is kept for that scope (`catalog.Metric.scopes`).
ROW_METRICS = catalog.TABLE_METRICS
# Read from the histogram in one pass: max is its 100th percentile.
ROW_PERCENTILES: tuple[tuple[str, float], ...] = tuple(
    (s.key, 100.0 if s.percentile is None else s.percentile) for s in catalog.TABLE_STATS
)
EMPTY = "-"

# Row keys stay free of underscores: the UI camel-cases every key it receives, rows included.
# The unit is in each row's metric cell: conversations are shown in seconds, output_tps in tokens/s.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("metric", "Metric"),
    ("scope", "Scope"),
    ("count", "Samples"),
    *((s.key, s.label) for s in catalog.TABLE_STATS),
)
# Metrics the tab shows in seconds: a conversation lasts seconds to minutes.
SECONDS = frozenset({catalog.CONVERSATION.key})


def metric_label(metric: catalog.Metric) -> str:
    """A metric's label as a row heading: `TTFT`, `Turn latency`."""
    return metric.label[:1].upper() + metric.label[1:]


# Locust's endpoint names (blueprint "locust"): the stats the UI polls, and its page.
LOCUST_STATS_ENDPOINT = "locust.request_stats"
LOCUST_INDEX_ENDPOINT = "locust.index"
_INSTALLED_ATTR = "_loadtest_webui_tab"

Provider = Callable[[], list[dict[str, Any]]]
ChartsProvider = Callable[[], list[dict[str, Any]]]


def rows_from_metrics(metrics: Metrics) -> list[dict[str, Any]]:
    """One row per metric and scope: all turns, then each turn index and scenario the metric is kept for;
    an optional metric (`catalog.Metric.optional`) only once it has samples.

    Values are in the metric's unit (milliseconds, tokens/s) rounded to 0.1, or "-" without samples.
    Reading adds nothing to `metrics`.
    """
    values = {scope: metrics.scope_values(scope) for scope in catalog.SCOPES}
    rows: list[dict[str, Any]] = []
    for metric in ROW_METRICS:
        label = metric_label(metric)
        hist = metrics.histograms.get(metric.key)
        if metric.optional and (hist is None or not hist.count):
            continue  # no TLS on this run, no usage from this server: no row of dashes
        rows.append(_row(label, "all", hist))
        for scope in (s for s in catalog.SCOPES if s in metric.scopes):
            for value in values[scope]:
                hist = metrics.histograms.get(scoped(metric.key, scope, value))
                rows.append(_row(label, f"{scope} {value}", hist))
    return rows


def _row(label: str, scope: str, hist: Histogram | None) -> dict[str, Any]:
    count = 0 if hist is None else hist.count
    row: dict[str, Any] = {"metric": label, "scope": scope, "count": count}
    values = _values_us(hist) if hist is not None and count else {}
    for key, percentile in ROW_PERCENTILES:
        value = values.get(percentile)
        row[key] = EMPTY if value is None else round(value / 1000.0, 1)
    return row


def _values_us(hist: Histogram) -> dict[float, int]:
    # One pass for all six values; stats_ms would also encode the histogram on every UI poll.
    return hist.values_at_percentiles_us([p for _, p in ROW_PERCENTILES])


def charts_from_metrics(metrics: Metrics) -> list[dict[str, Any]]:
    """The report's percentile distributions, from the data so far: one chart of each headline metric
    that has samples (title, sample count, and the spec `report.js` draws)."""
    figures = []
    for metric in HEADLINE_METRICS:
        hist = metrics.histograms.get(metric.key)
        if hist is None or not hist.count:
            continue
        # The statistics the chart labels, in one pass: stats_ms would also walk every bucket for the mean.
        values = _values_us(hist)
        stats = {key: values[percentile] / 1000.0 for key, percentile in ROW_PERCENTILES}
        curve = charts.percentile_curve(hist.encode())
        spec = charts.distribution_spec(
            f"loadtest-dist-{metric.key}", metric.unit, [(metric.label, metric.color, curve)], stats
        )
        if spec is not None:
            figures.append({"title": metric_label(metric), "detail": f"n = {hist.count:,}", "spec": spec})
    return figures


_UNITS = {metric_label(m): ("s" if m.key in SECONDS else m.unit) for m in ROW_METRICS}


def tab_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as the tab shows them: the unit beside the metric, values with one decimal and thousands
    separators (conversations in seconds), sample counts with separators, "-" without samples."""
    return [_tab_row(row) for row in rows]


def _tab_row(row: dict[str, Any]) -> dict[str, Any]:
    unit = _UNITS.get(row["metric"], "ms")
    scale = 1000.0 if unit == "s" else 1.0
    shown: dict[str, Any] = {
        "metric": f"{row['metric']} ({unit})",
        "scope": row["scope"],
        "count": f"{row['count']:,}",
    }
    for key, _ in ROW_PERCENTILES:
        value = row[key]
        shown[key] = value if value == EMPTY else f"{value / scale:,.1f}"
    return shown


def goodput_line(metrics: Metrics, bounds: goodput.Goodput) -> str:
    """The goodput so far, as the console says it at the end: `goodput 97.10% of turns, 90.00% of
    conversations within ttft<800ms, turn<3s`."""
    counts = metrics.summary_counts()
    section = {
        "bounds": bounds.exprs,
        "good_turn_rate": GOODPUT.of(counts),
        "good_conversation_rate": CONVERSATION_GOODPUT.of(counts),
    }
    return goodput.describe(section) or ""


def exposure_warning(options: Any) -> str | None:
    """One line when the web UI listens beyond loopback without Locust's --web-login: anyone who reaches
    the port can start load with this process's API key. None otherwise."""
    if getattr(options, "web_login", False):
        return None
    host = str(getattr(options, "web_host", "") or "")
    if _is_loopback(host):
        return None
    where = "every interface" if host in ("", "*") else host
    port = getattr(options, "web_port", None)
    return (
        f"the web UI listens on {where} (port {port}) without --web-login: anyone who can reach that port "
        "can start load with this process's API key; pass --web-host 127.0.0.1, or --web-login"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def latest_report(options: Any) -> Path | None:
    """`{report-dir}/latest/report.html`, once a run has written it."""
    path = Path(str(REPORT_DIR.raw(options))) / LATEST / "report.html"
    return path if path.is_file() else None


class _Tab:
    """The tab's state on one web UI: where rows come from, the last rows computed, and the last run
    folder announced in the log."""

    def __init__(
        self, web_ui: Any, provider: Provider, cache_seconds: float, charts: ChartsProvider | None
    ) -> None:
        self.web_ui = web_ui
        self.provider = provider
        self.cache_seconds = cache_seconds
        self.charts = charts
        self._rows: list[dict[str, Any]] | None = None
        self._computed_at = 0.0
        self._charts: list[dict[str, Any]] = []
        self._charts_at = -CHARTS_SECONDS
        self._announced: Path | None = None
        self.base_path = ""  # Locust's --web-base-path, without its trailing slash

    def reset(self, provider: Provider, cache_seconds: float, charts: ChartsProvider | None) -> None:
        self.provider = provider
        self.cache_seconds = cache_seconds
        self.charts = charts or self.charts
        self._rows = None

    def rows(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        if self._rows is None or now - self._computed_at >= self.cache_seconds:
            self._rows = self.provider()
            self._computed_at = now
        return self._rows

    @property
    def options(self) -> Any:
        return self.web_ui.environment.parsed_options

    def stats_view(self) -> Response:
        return jsonify(rows=self.rows(), report=self.latest(), goodput=self.goodput())

    def goodput(self) -> str | None:
        """The goodput so far, from the figures of the loadtest of this web UI's environment."""
        lt = getattr(self.web_ui.environment, "loadtest", None)
        if lt is None:
            return None
        return goodput_line(lt.metrics, lt.recorder.goodput)

    def charts_view(self) -> Response:
        now = time.monotonic()
        if self.charts is not None and now - self._charts_at >= CHARTS_SECONDS:
            self._charts = self.charts()
            self._charts_at = now
        return jsonify(charts=self._charts)

    def latest(self) -> dict[str, str] | None:
        """The latest run's report: its URL here, its run id and the folder of its outputs."""
        report = latest_report(self.options)
        if report is None:
            return None
        run_dir = report.parent.resolve()
        return {"url": self.base_path + REPORT_PATH, "run": run_dir.name, "folder": str(run_dir)}

    def report_view(self) -> Response:
        report = latest_report(self.options)
        if report is None:
            return Response(
                "no report yet: a run writes one when it stops", status=404, mimetype="text/plain"
            )
        return send_file(report.resolve(), mimetype="text/html", max_age=0)

    def asset_view(self, name: str) -> Response:
        path = ASSETS.get(name)
        if path is None:
            return Response("not found", status=404, mimetype="text/plain")
        return send_file(path, max_age=0)

    def add_assets(self, response: Response) -> Response:
        """Load the tab's script and style sheet with Locust's page."""
        if request.endpoint != LOCUST_INDEX_ENDPOINT or response.status_code != 200:
            return response
        base = self.base_path
        tags = Markup('<link rel="stylesheet" href="{}"><script src="{}" defer></script>').format(
            base + ASSETS_PATH + "webui.css", base + ASSETS_PATH + "webui.js"
        )
        page = response.get_data(as_text=True)
        response.set_data(page.replace("</head>", f"{tags}</head>", 1))
        return response

    def announce_latest(self, **_: Any) -> None:
        """After a test stops: say in the log (the web UI's LOGS tab) where its outputs went."""
        report = latest_report(self.options)
        if report is None:
            return
        run_dir = report.parent.resolve()
        if run_dir != self._announced:
            self._announced = run_dir
            logger.info("loadtest: run output in %s (report.html, summary.json, junit.xml)", run_dir)

    def extend_stats_response(self, response: Response) -> Response:
        if request.endpoint != LOCUST_STATS_ENDPOINT or response.status_code != 200 or not response.is_json:
            return response
        try:
            rows = tab_rows(self.rows())
        except Exception:
            # Locust's whole UI lives on this poll: a failure here must not take its tables down.
            logger.exception("loadtest: the exact latency tab could not compute its rows")
            return response
        # Locust memoizes this response for 2 s and hands out the same object: replace our entry, and
        # keep entries other extensions added.
        data = json.loads(response.get_data())
        extended = [e for e in data.get("extended_stats") or [] if e.get("key") != TAB_KEY]
        data["extended_stats"] = [*extended, {"key": TAB_KEY, "data": rows}]
        response.set_data(json.dumps(data))
        return response


def install(
    web_ui: Any,
    provider: Provider,
    *,
    cache_seconds: float = CACHE_SECONDS,
    charts: ChartsProvider | None = None,
) -> None:
    """Add the tab, `GET /loadtest/stats` and the latest report to a Locust web UI; call it from the
    `init` event.

    `provider()` returns the table's rows (see `rows_from_metrics`); they are reused for
    `cache_seconds`. `charts()`, when given, the plots above the table (see `charts_from_metrics`).
    Installing again on the same web UI only replaces the providers.
    """
    tab: _Tab | None = getattr(web_ui, _INSTALLED_ATTR, None)
    if tab is not None:
        tab.reset(provider, cache_seconds, charts)
        return
    tab = _Tab(web_ui, provider, cache_seconds, charts)
    setattr(web_ui, _INSTALLED_ATTR, tab)

    args = web_ui.template_args
    args["extended_tabs"] = [
        *(t for t in args.get("extended_tabs") or [] if t.get("key") != TAB_KEY),
        {"key": TAB_KEY, "title": TAB_TITLE},
    ]
    args["extended_tables"] = [
        *(t for t in args.get("extended_tables") or [] if t.get("key") != TAB_KEY),
        {"key": TAB_KEY, "structure": [{"key": key, "title": title} for key, title in COLUMNS]},
    ]

    app = web_ui.app
    # Beside Locust's own routes, under --web-base-path if one is set.
    locust_blueprint = app.blueprints.get("locust")
    base_path = (getattr(locust_blueprint, "url_prefix", None) or "").rstrip("/")
    tab.base_path = base_path
    for path, endpoint, view in (
        (STATS_PATH, "loadtest_stats", tab.stats_view),
        (CHARTS_PATH, "loadtest_charts", tab.charts_view),
        (REPORT_PATH, "loadtest_report", tab.report_view),
        (ASSETS_PATH + "<name>", "loadtest_asset", tab.asset_view),
    ):
        app.add_url_rule(base_path + path, endpoint=endpoint, view_func=web_ui.auth_required_if_enabled(view))
    app.after_request(tab.extend_stats_response)
    app.after_request(tab.add_assets)
    web_ui.environment.events.test_stop.add_listener(tab.announce_latest)
