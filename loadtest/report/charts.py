"""The data behind the report's charts, computed from a summary and embedded in the page as JSON.

A chart is a plain dict, a "spec", that `assets/report.js` turns into a uPlot chart::

    {"id": "dist-ttft", "kind": "percentile" | "time", "unit": "ms", "height": 300,
     "series": [{"label": "TTFT", "color": "#2563eb", "scale": "y", "dash": false, "fill": false,
                 "step": false}],
     "axes": [{"scale": "y", "label": "ms"}, {"scale": "users", "label": "users", "side": "right"}],
     "data": [[x, ...], [y, ...], ...]}

Percentile distributions are drawn as HdrHistogram's plotter draws them: latency against
x = log10(1 / (1 - p)), so that 90%, 99%, 99.9% ... are evenly spaced at x = 1, 2, 3 ...
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hdrh.histogram import HdrHistogram

from loadtest import catalog
from loadtest.catalog import Metric, Stat
from loadtest.metrics import acyclic

# Grid step on the x axis: 50 points per decade of "nines".
X_STEP = 0.02
# 99.9999%: beyond it a load test has no samples worth drawing.
X_MAX = 6.0

# Series that are not metrics; a metric's colours are `Metric.color` and `Metric.shades`.
COLORS = {
    "baseline": "#9ca3af",
    "ok": "#16a34a",
    "failed": "#dc2626",
    "users": "#64748b",
    "connections_opened": "#b45309",
    "connections_reused": "#64748b",
}
# The timeline counts of the connections chart, and their legend.
CONNECTION_COUNTS = {"connections_opened": "opened", "connections_reused": "reused"}
# The timeline count of the output tokens chart: tokens the stream's usage reported, never estimated.
OUTPUT_TOKENS = "completion_tokens"
# Points labelled on a percentile distribution, the end for a statistic without a percentile (max).
# p95 would sit between p90 and p99 where labels collide: the tables give it.
MARKS = tuple(s for s in catalog.TABLE_STATS if s.key != "p95")


@dataclass(frozen=True, slots=True)
class Curve:
    """Latency in ms at the percentile levels x = i * X_STEP, i = 0, 1, ... (x = log10(1/(1-p)))."""

    ms: tuple[float, ...]
    count: int

    @property
    def x(self) -> tuple[float, ...]:
        return grid(len(self.ms))


def grid(n: int) -> tuple[float, ...]:
    return tuple(round(i * X_STEP, 6) for i in range(n))


def percentile_of(x: float) -> float:
    """The percentile (0..100) at `x` on the distribution axis."""
    return 100.0 * (1.0 - math.pow(10.0, -x))


def percentile_curve(encoded: str | None) -> Curve | None:
    """Decode an HdrHistogram (base64 V2, microseconds) and sample it along the distribution axis.

    The curve runs from the minimum (x = 0) to the maximum, reached at x = log10(2N): the middle of the
    last sample's share of the percentile range. None when the histogram is empty or unreadable.
    """
    if not encoded:
        return None
    try:
        hist = acyclic(HdrHistogram.decode(encoded))
    except Exception:  # hdrh raises TypeError, zlib.error and its own exceptions on bad input
        return None
    count = int(hist.get_total_count())
    if count <= 0:
        return None
    end = min(math.log10(2 * count), X_MAX)
    steps = max(int(math.floor(end / X_STEP + 1e-9)), 1)
    levels = [percentile_of(x) for x in grid(steps + 1)]
    values = hist.get_percentile_to_value_dict(levels)
    ms = [round(values.get(p, hist.get_max_value()) / 1000.0, 3) for p in levels]
    ms[-1] = round(hist.get_max_value() / 1000.0, 3)
    return Curve(ms=tuple(ms), count=count)


def distribution_spec(
    chart_id: str,
    unit_label: str,
    curves: Sequence[tuple[str, str, Curve | None]],
    stats: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """One percentile-distribution chart of several curves (label, color, curve) on a shared x grid.

    With `stats` (a summary's statistics of the first curve) the chart labels p50, p90, p99, p99.9
    and max on it, with the summary's exact values, where the curve reaches them.
    """
    present = [(label, color, curve) for label, color, curve in curves if curve is not None]
    if not present:
        return None
    length = max(len(curve.ms) for _, _, curve in present)
    data: list[list[float | None]] = [list(grid(length))]
    series = []
    for label, color, curve in present:
        data.append([*curve.ms, *([None] * (length - len(curve.ms)))])
        series.append(_series(label, color, width=2.25))
    spec: dict[str, Any] = {
        "id": chart_id,
        "kind": "percentile",
        "unit": "ms",
        "height": 300,
        "series": series,
        "axes": [{"scale": "y", "label": unit_label}],
        "data": data,
    }
    if stats is not None:
        spec["marks"] = _marks(present[0][2], stats)
    return spec


def _marks(curve: Curve, stats: Mapping[str, Any]) -> list[dict[str, Any]]:
    end = curve.x[-1]
    marks = []
    for stat in MARKS:
        value = _number(stats.get(stat.key))
        pct = stat.percentile
        x = end if pct is None else math.log10(100.0 / (100.0 - pct))
        if value is not None and x <= end + 1e-9:
            marks.append({"x": round(x, 6), "y": value, "label": stat.label})
    return marks


@dataclass(frozen=True, slots=True)
class Timeline:
    """Per-interval series of `summary["timeline"]`, rates in turns per second."""

    t: tuple[int, ...]
    interval_s: int
    users: tuple[int | None, ...]
    latency: Mapping[str, Mapping[str, tuple[float | None, ...]]]  # metric key -> stat key -> values
    # Every count of the points (turns_ok, connections_opened, ...) per second, by its key.
    per_s: Mapping[str, tuple[float, ...]]

    def rate(self, count: str) -> tuple[float, ...]:
        """`count` per second per interval; zeros when the timeline has no such count."""
        return self.per_s.get(count) or (0.0,) * len(self.t)

    @property
    def ok_per_s(self) -> tuple[float, ...]:
        return self.rate("turns_ok")

    @property
    def failed_per_s(self) -> tuple[float, ...]:
        return self.rate("turns_failed")


def timeline(summary: Mapping[str, Any]) -> Timeline | None:
    """The timeline of a summary; None when it has none (older summaries) or no points.

    Rates divide by the part of each interval the run covered, so a run that starts or stops
    mid-interval shows no false dip at its ends.
    """
    section = summary.get("timeline")
    if not isinstance(section, Mapping):
        return None
    points = [p for p in section.get("points") or [] if isinstance(p, Mapping) and _number(p.get("t"))]
    interval = section.get("interval_s")
    if not points or not isinstance(interval, int | float) or interval <= 0:
        return None
    run = summary.get("run") or {}
    start, end = _epoch(run.get("started")), _epoch(run.get("ended"))
    t, users = [], []
    # A count is any number of a point but its time and users; a point without one counted none.
    count_keys = dict.fromkeys(
        key
        for p in points
        for key, value in p.items()
        if key not in ("t", "users") and _number(value) is not None
    )
    per_s: dict[str, list[float]] = {key: [] for key in count_keys}
    latency: dict[str, dict[str, list[float | None]]] = {
        m.key: {s.key: [] for s in catalog.TIMELINE_STATS} for m in catalog.TIMELINE_METRICS
    }
    for p in points:
        t0 = _number(p["t"]) or 0.0
        covered = _covered(t0, float(interval), start, end)
        t.append(int(t0))
        u = _number(p.get("users"))
        users.append(None if u is None else int(u))
        for key, rates in per_s.items():
            rates.append(round((_number(p.get(key)) or 0) / covered, 3))
        for metric, stats in latency.items():
            section_stats = p.get(catalog.METRIC_BY_KEY[metric].summary_key)
            for stat, values in stats.items():
                value = section_stats.get(stat) if isinstance(section_stats, Mapping) else None
                values.append(_number(value))
    return Timeline(
        t=tuple(t),
        interval_s=int(interval),
        users=tuple(users),
        latency={m: {s: tuple(v) for s, v in stats.items()} for m, stats in latency.items()},
        per_s={key: tuple(rates) for key, rates in per_s.items()},
    )


def latency_over_time_spec(chart_id: str, tl: Timeline, metric: Metric) -> dict[str, Any]:
    """The timeline statistics (p50, p90, p99) of `metric`, one of `catalog.TIMELINE_METRICS`, per
    interval, light to dark; the last, the tail, drawn a little bolder."""
    stats: tuple[Stat, ...] = catalog.TIMELINE_STATS
    series = [
        _series(stat.label, shade, width=2.0 if stat is stats[-1] else 1.75)
        for stat, shade in zip(stats, metric.shades, strict=True)
    ]
    data: list[list[Any]] = [_midpoints(tl), *(list(tl.latency[metric.key][s.key]) for s in stats)]
    return {
        "id": chart_id,
        "kind": "time",
        "unit": metric.unit,
        "height": 240,
        "interval": tl.interval_s,
        "series": series,
        "axes": [{"scale": "y", "label": metric.unit}],
        "data": data,
    }


def throughput_spec(chart_id: str, tl: Timeline) -> dict[str, Any]:
    """Completed and failed turns per second per interval, with the users running (right axis)."""
    series = [
        _series("turns/s ok", COLORS["ok"], width=2.0, fill=True),
        _series("turns/s failed", COLORS["failed"], width=2.0),
    ]
    data: list[list[Any]] = [_midpoints(tl), list(tl.ok_per_s), list(tl.failed_per_s)]
    axes: list[dict[str, Any]] = [{"scale": "y", "label": "turns/s"}]
    if any(u is not None for u in tl.users):
        series.append(_series("users", COLORS["users"], width=1.5, scale="users", dash=True, step=True))
        data.append(list(tl.users))
        axes.append({"scale": "users", "label": "users", "side": "right"})
    return {
        "id": chart_id,
        "kind": "time",
        "unit": "/s",
        "height": 240,
        "interval": tl.interval_s,
        "series": series,
        "axes": axes,
        "data": data,
    }


def connections_spec(chart_id: str, tl: Timeline) -> dict[str, Any] | None:
    """Connections opened and kept-alive ones reused, per second per interval; None when the timeline
    counted none (a summary written before connections were counted)."""
    if not any(any(tl.rate(key)) for key in CONNECTION_COUNTS):
        return None
    series, data = [], [_midpoints(tl)]
    for key, label in CONNECTION_COUNTS.items():
        series.append(_series(label, COLORS[key], width=2.0, fill=key == "connections_opened"))
        data.append(list(tl.rate(key)))
    return {
        "id": chart_id,
        "kind": "time",
        "unit": "/s",
        "height": 200,
        "interval": tl.interval_s,
        "series": series,
        "axes": [{"scale": "y", "label": "per second"}],
        "data": data,
    }


def output_tokens_spec(chart_id: str, tl: Timeline) -> dict[str, Any] | None:
    """Completion tokens per second per interval; None when the timeline counted none (a server that
    sends no usage, such as NLX, or a summary written before tokens were counted)."""
    rates = tl.rate(OUTPUT_TOKENS)
    if not any(rates):
        return None
    return {
        "id": chart_id,
        "kind": "time",
        "unit": catalog.TOKENS_PER_S,
        "height": 200,
        "interval": tl.interval_s,
        "series": [_series("output tokens/s", catalog.OUTPUT_TPS.color, width=2.0, fill=True)],
        "axes": [{"scale": "y", "label": catalog.TOKENS_PER_S}],
        "data": [_midpoints(tl), list(rates)],
    }


def _midpoints(tl: Timeline) -> list[float]:
    # A point stands for its whole interval: draw it in the middle.
    return [t + tl.interval_s / 2 for t in tl.t]


def _series(
    label: str,
    color: str,
    *,
    width: float,
    scale: str = "y",
    dash: bool = False,
    fill: bool = False,
    step: bool = False,
) -> dict[str, Any]:
    return {
        "label": label,
        "color": color,
        "width": width,
        "scale": scale,
        "dash": dash,
        "fill": fill,
        "step": step,
    }


def _covered(t0: float, interval: float, start: float | None, end: float | None) -> float:
    lo = max(t0, start) if start is not None else t0
    hi = min(t0 + interval, end) if end is not None else t0 + interval
    # Run timestamps have whole seconds: never divide by less than one.
    return max(hi - lo, 1.0)


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    """`value` as a float when it is a finite number, else None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


# -- a capacity search: latency against load ------------------------------------------------------------

# The SLO bound drawn across a chart, and the marks of passing and failing steps.
SLO_COLOR = "#b45309"


@dataclass(frozen=True, slots=True)
class Bound:
    """A threshold drawn across a chart of `capacity.steps`: `label` at `limit` (ms, or a fraction)."""

    label: str
    stat: str  # the step statistic it bounds (p95), or "" for a rate
    limit: float


def steps_by_load(steps: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A search's steps in order of load (a bisection visits them out of order), one per load."""
    by_load: dict[float, Mapping[str, Any]] = {}
    for step in steps:
        load = _number(step.get("load"))
        if load is not None:
            by_load[load] = step
    return [by_load[load] for load in sorted(by_load)]


def load_spec(
    chart_id: str, steps: Sequence[Mapping[str, Any]], metric: Metric, x_label: str, bounds: Sequence[Bound]
) -> dict[str, Any] | None:
    """p50, p95 and p99 of `metric` per step against the load, each bound of the SLO on it drawn
    across, and the steps marked passing or failing on the statistic the first bound judges (p95
    without one). None without steps."""
    ordered = steps_by_load(steps)
    if not ordered:
        return None
    x = [float(_number(s.get("load")) or 0.0) for s in ordered]
    stats = catalog.BREAKDOWN_STATS
    series = [
        _series(stat.label, shade, width=2.0 if stat is stats[-1] else 1.75)
        for stat, shade in zip(stats, metric.shades, strict=True)
    ]
    data: list[list[Any]] = [x]
    for stat in stats:
        data.append([_step_stat(s, metric, stat.key) for s in ordered])
    for bound in bounds:
        series.append(_series(bound.label, SLO_COLOR, width=1.5, dash=True))
        data.append([bound.limit] * len(x))
    judged = next((b.stat for b in bounds if b.stat), "p95")
    _marked(series, data, ordered, lambda s: _step_stat(s, metric, judged))
    return {
        "id": chart_id,
        "kind": "load",
        "unit": "ms",
        "height": 280,
        "x_label": x_label,
        "series": series,
        "axes": [{"scale": "y", "label": metric.unit}],
        "data": data,
    }


def goodput_load_spec(
    chart_id: str, steps: Sequence[Mapping[str, Any]], x_label: str
) -> dict[str, Any] | None:
    """Goodput (good turns of the finished ones) and the error rate per step against the load, in %,
    with the steps marked passing or failing on the goodput."""
    ordered = steps_by_load(steps)
    if not ordered:
        return None
    x = [float(_number(s.get("load")) or 0.0) for s in ordered]
    series = [
        _series("goodput", COLORS["ok"], width=2.0),
        _series("error rate", COLORS["failed"], width=1.75),
    ]
    data: list[list[Any]] = [x, [_percent(s.get("goodput")) for s in ordered]]
    data.append([_percent(s.get("error_rate")) for s in ordered])
    _marked(series, data, ordered, lambda s: _percent(s.get("goodput")))
    return {
        "id": chart_id,
        "kind": "load",
        "unit": "%",
        "height": 240,
        "x_label": x_label,
        "series": series,
        "axes": [{"scale": "y", "label": "%"}],
        "data": data,
    }


def _marked(
    series: list[dict[str, Any]],
    data: list[list[Any]],
    steps: Sequence[Mapping[str, Any]],
    value: Any,
) -> None:
    """Two series of points only: the passing steps and the failing ones, at `value(step)`."""
    for label, color, passed in (
        ("passing step", COLORS["ok"], True),
        ("failing step", COLORS["failed"], False),
    ):
        series.append({**_series(label, color, width=2.0), "points_only": True})
        data.append([value(s) if bool(s.get("passed")) is passed else None for s in steps])


def _step_stat(step: Mapping[str, Any], metric: Metric, stat: str) -> float | None:
    stats = step.get(metric.summary_key)
    return _number(stats.get(stat)) if isinstance(stats, Mapping) else None


def _percent(value: Any) -> float | None:
    share = _number(value)
    return None if share is None else round(share * 100, 3)
