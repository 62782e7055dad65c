"""summary.json's types agree with what a run writes; its one reader and the values computed from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_type_hints

import pytest

from loadtest import catalog
from loadtest.errors import ConfigError
from loadtest.metrics import Metrics, interval_of
from loadtest.report import build_summary
from loadtest.report.schema import (
    CONVERSATION_GOODPUT,
    CONVERSATION_SUCCESS,
    ERROR_RATE,
    GOODPUT,
    RATES,
    SCHEMA,
    ErrorEntry,
    ScopeEntry,
    Stats,
    Summary,
    Timeline,
    TimeSplit,
    duration_s,
    error_rate,
    format_observed,
    load_summary,
    throughput,
)

MS = 1_000_000  # ns


def recorded() -> Summary:
    """A summary from a Metrics holding a sample of every metric in every scope, and one failure."""
    metrics = Metrics()
    interval = interval_of(1_795_000_000)
    for metric in catalog.METRICS:
        scopes = tuple(f"{s}={'1' if s == catalog.TURN else 'chat'}" for s in metric.scopes)
        metrics.record_scoped(metric.key, 3 * MS, scopes, interval if metric.timeline else None)
    for counter in catalog.COUNTERS:
        scopes = tuple(f"{s}={'1' if s == catalog.TURN else 'chat'}" for s in counter.scopes)
        metrics.count_scoped(counter.key, scopes)
    metrics.error("http_500", "HTTP 500: boom")
    metrics.split(10 * MS, (MS, 2 * MS, 3 * MS, 4 * MS))
    return build_summary(metrics, {"id": "r1", "duration_s": 2.0}, {interval: 1})


def keys(typed: type) -> set[str]:
    return set(get_type_hints(typed))


def test_the_types_hold_what_a_run_writes() -> None:
    summary = recorded()
    assert summary["schema"] == SCHEMA
    assert set(summary) <= keys(Summary)
    assert set(summary["metrics"]) == {m.summary_key for m in catalog.METRICS}
    for stats in summary["metrics"].values():
        assert set(stats) == keys(Stats) == {"count", *catalog.STAT_KEYS, "hdr"}
    assert set(summary["counts"]) == set(catalog.COUNT_KEYS)
    for table, scope in ((summary["by_turn"], catalog.TURN), (summary["by_scenario"], catalog.SCENARIO)):
        [entry] = table.values()
        stats_keys = {m.summary_key for m in catalog.scoped_metrics(scope)}
        assert set(entry) - stats_keys <= keys(ScopeEntry)
        assert stats_keys <= set(entry)
        assert set(entry["counts"]) == set(catalog.scoped_counts(scope))
    [error] = summary["errors"]
    assert set(error) == keys(ErrorEntry)
    assert set(summary["timeline"]) == keys(Timeline)
    assert set(summary["time_split"]) == {s.key for s in catalog.TIME_SPLIT_STATS}
    for split in summary["time_split"].values():
        assert (
            set(split)
            == keys(TimeSplit)
            == {"turn_ms", "turns", *(f"{p.key}_ms" for p in catalog.TIME_SPLIT_PARTS)}
        )
    [point] = summary["timeline"]["points"]
    assert {m.summary_key for m in catalog.TIMELINE_METRICS} | set(catalog.TIMELINE_COUNTS) <= set(point)


def test_load_summary_reads_a_file_or_a_run_folder(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(f'{{"schema": "{SCHEMA}", "metrics": {{}}}}', encoding="utf-8")
    assert (
        load_summary(tmp_path) == load_summary(tmp_path / "summary.json") == {"schema": SCHEMA, "metrics": {}}
    )


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("missing.json", None, "missing.json does not exist: pass a run's summary.json or its folder"),
        ("empty", None, "no summary.json in "),
        ("bad.json", "{", "bad.json is not JSON: pass the summary.json a loadtest run wrote"),
        (
            "other.json",
            '{"name": "x"}',
            'other.json is not a loadtest summary (no "schema": "loadtest.summary/1")',
        ),
        ("list.json", "[1]", 'list.json is not a loadtest summary (no "schema"'),
        ("nometrics.json", f'{{"schema": "{SCHEMA}"}}', 'nometrics.json has no "metrics"'),
    ],
)
def test_load_summary_refuses_what_is_not_a_summary_in_one_line(
    tmp_path: Path, name: str, text: str | None, says: str
) -> None:
    path = tmp_path / name
    if name == "empty":
        path.mkdir()
    elif text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_summary(path)
    assert says in str(error.value) and "\n" not in str(error.value)


def test_error_rate_reads_a_summary_an_entry_or_counts_alike() -> None:
    counts = {"turns_ok": 90, "turns_failed": 10, "turns_cut": 50}
    assert error_rate({"counts": counts}) == error_rate(counts) == pytest.approx(0.1)
    assert error_rate({"ttft_ms": {}, "counts": counts}) == pytest.approx(0.1)
    assert error_rate({"turns_ok": 0, "turns_failed": 0}) is None
    assert error_rate({"counts": {}}) is None and error_rate({}) is None
    assert error_rate({"turns_ok": True, "turns_failed": 1}) is None  # a bool is not a count
    summary = recorded()
    assert error_rate(summary) == 0.5  # one ok and one failed turn
    assert error_rate(summary["by_turn"]["1"]) == 0.5


def test_rates_are_kept_for_the_scopes_of_their_counters() -> None:
    assert ERROR_RATE.scopes == (catalog.TURN, catalog.SCENARIO)
    assert CONVERSATION_SUCCESS.scopes == (catalog.SCENARIO,)
    counters = {c.key for c in catalog.COUNTERS}
    for rate in RATES:
        assert set(rate.counters) <= counters
    assert CONVERSATION_SUCCESS.of({"conversations_completed": 3, "conversations_failed": 1}) == 0.75
    # Goodput: good turns of all finished ones (a failed turn is never good), per turn and scenario.
    assert GOODPUT.scopes == (catalog.TURN, catalog.SCENARIO)
    assert CONVERSATION_GOODPUT.scopes == (catalog.SCENARIO,)
    assert GOODPUT.of({"turns_good": 3, "turns_ok": 4, "turns_failed": 1}) == 0.6
    assert GOODPUT.of({"turns_good": 0, "turns_ok": 0, "turns_failed": 0}) is None
    counts = {"conversations_good": 1, "conversations_completed": 3, "conversations_failed": 1}
    assert CONVERSATION_GOODPUT.of(counts) == 0.25


@pytest.mark.parametrize(
    ("run", "seconds"),
    [
        (
            {
                "duration_s": 12.5,
                "started": "2026-01-01T00:00:00+00:00",
                "ended": "2026-01-01T00:01:00+00:00",
            },
            12.5,
        ),
        ({"started": "2026-01-01T00:00:00+00:00", "ended": "2026-01-01T00:01:00.5+00:00"}, 60.5),
        ({"duration_s": None, "started": "2026-01-01T00:00:00+00:00"}, None),
        ({"started": "2026-01-01T00:01:00+00:00", "ended": "2026-01-01T00:00:00+00:00"}, None),
        ({"duration_s": True}, None),
        ({}, None),
    ],
)
def test_duration_s(run: dict[str, Any], seconds: float | None) -> None:
    assert duration_s(run) == seconds


def test_throughput_is_completed_turns_per_second() -> None:
    assert throughput({"run": {"duration_s": 4}, "counts": {"turns_ok": 10}}) == 2.5
    assert throughput({"run": {}, "counts": {"turns_ok": 10}}) is None
    assert throughput({"counts": {"turns_ok": 10}}) is None


@pytest.mark.parametrize(
    ("observed", "unit", "text"),
    [
        (912.34, "ms", "912.3 ms"),
        (1912.34, "ms", "1,912.3 ms"),
        (0.0512, "ms", "0.0512 ms"),
        (0.0152, "ratio", "1.52%"),
        (None, "ratio", "no data"),
    ],
)
def test_format_observed_follows_the_one_number_format(observed: float | None, unit: str, text: str) -> None:
    assert format_observed(observed, unit) == text
