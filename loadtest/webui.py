"""An "Exact latency (HDR)" tab in Locust's web UI, and `GET /loadtest/stats` with the same rows.

Locust's own tables show percentiles of its rounded response-time buckets; this tab shows TTFT, turn
latency and inter-chunk gaps from our HDR histograms, as the summary does. It refreshes with Locust's
stats poll while a test runs. On a master the provider reads the merged worker data, so the tab moves
with each worker report (every 3 s).

Locust's extension points, as used here: `extended_tabs` and `extended_tables` in `web_ui.template_args`
declare the tab and its columns, and an `after_request` hook adds `extended_stats` (the rows, under the
tab's key) to the JSON of `/stats/requests`, which the UI polls every 2 s while a test runs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Response, jsonify, request

from loadtest import catalog
from loadtest.metrics import Histogram, Metrics, scoped

logger = logging.getLogger("loadtest")

TAB_KEY = "loadtest-latency"
TAB_TITLE = "Exact latency (HDR)"
STATS_PATH = "/loadtest/stats"
# Locust polls every 2 s per open browser tab; percentiles of a few dozen histograms are not free.
CACHE_SECONDS = 1.0

# The summary tables' metrics and statistics; each metric also per turn index and per scenario when
# it is kept for that scope (`catalog.Metric.scopes`).
ROW_METRICS = catalog.TABLE_METRICS
# Read from the histogram in one pass: max is its 100th percentile.
ROW_PERCENTILES: tuple[tuple[str, float], ...] = tuple(
    (s.key, 100.0 if s.percentile is None else s.percentile) for s in catalog.TABLE_STATS
)
EMPTY = "-"

# Row keys stay free of underscores: the UI camel-cases every key it receives, rows included.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("metric", "Metric"),
    ("scope", "Scope"),
    ("count", "Samples"),
    *((s.key, f"{s.label} (ms)") for s in catalog.TABLE_STATS),
)


def metric_label(metric: catalog.Metric) -> str:
    """A metric's label as a row heading: `TTFT`, `Turn latency`."""
    return metric.label[:1].upper() + metric.label[1:]


# Locust's endpoint name for the stats the UI polls (blueprint "locust", view `request_stats`).
LOCUST_STATS_ENDPOINT = "locust.request_stats"
_INSTALLED_ATTR = "_loadtest_webui_tab"

Provider = Callable[[], list[dict[str, Any]]]


def rows_from_metrics(metrics: Metrics) -> list[dict[str, Any]]:
    """One row per metric and scope: all turns, then each turn index and scenario the metric is kept for.

    Values are milliseconds rounded to 0.1, or "-" without samples. Reading adds nothing to `metrics`.
    """
    values = {scope: metrics.scope_values(scope) for scope in catalog.SCOPES}
    rows: list[dict[str, Any]] = []
    for metric in ROW_METRICS:
        label = metric_label(metric)
        rows.append(_row(label, "all", metrics.histograms.get(metric.key)))
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


class _Tab:
    """The tab's state on one web UI: where rows come from, and the last rows computed."""

    def __init__(self, provider: Provider, cache_seconds: float) -> None:
        self.provider = provider
        self.cache_seconds = cache_seconds
        self._rows: list[dict[str, Any]] | None = None
        self._computed_at = 0.0

    def reset(self, provider: Provider, cache_seconds: float) -> None:
        self.provider = provider
        self.cache_seconds = cache_seconds
        self._rows = None

    def rows(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        if self._rows is None or now - self._computed_at >= self.cache_seconds:
            self._rows = self.provider()
            self._computed_at = now
        return self._rows

    def stats_view(self) -> Response:
        return jsonify(rows=self.rows())

    def extend_stats_response(self, response: Response) -> Response:
        if request.endpoint != LOCUST_STATS_ENDPOINT or response.status_code != 200 or not response.is_json:
            return response
        try:
            rows = self.rows()
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


def install(web_ui: Any, provider: Provider, *, cache_seconds: float = CACHE_SECONDS) -> None:
    """Add the tab and `GET /loadtest/stats` to a Locust web UI; call it from the `init` event.

    `provider()` returns the table's rows (see `rows_from_metrics`); they are reused for
    `cache_seconds`. Installing again on the same web UI only replaces the provider.
    """
    tab: _Tab | None = getattr(web_ui, _INSTALLED_ATTR, None)
    if tab is not None:
        tab.reset(provider, cache_seconds)
        return
    tab = _Tab(provider, cache_seconds)
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
    app.add_url_rule(
        base_path + STATS_PATH,
        endpoint="loadtest_stats",
        view_func=web_ui.auth_required_if_enabled(tab.stats_view),
    )
    app.after_request(tab.extend_stats_response)
