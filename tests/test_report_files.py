from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from loadtest import catalog
from loadtest.metrics import Metrics
from loadtest.report import build_summary, console_lines, write_run
from loadtest.report.html import render_html
from loadtest.report.junit import render_junit
from loadtest.report.markdown import append_step_summary, render_markdown
from loadtest.thresholds import evaluate, parse_all


def _stats(p50: float | None = None, count: int = 0) -> dict[str, Any]:
    scale = {
        "min": 0.5,
        "mean": 1.05,
        "p50": 1.0,
        "p90": 1.1,
        "p95": 1.2,
        "p99": 1.5,
        "p999": 1.9,
        "max": 2.0,
    }
    return {"count": count, **{k: None if p50 is None else p50 * f for k, f in scale.items()}}


def _summary(thresholds: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "schema": "loadtest.summary/1",
        "run": {
            "id": "20261125-213515-f003",
            "started": "2026-11-25T21:35:15+00:00",
            "ended": "2026-11-25T21:40:15.5+00:00",
            "host": "https://apps.nlx.ai/v1",
            "users": 50,
            "workers": 2,
        },
        "metrics": {
            "ttft_ms": _stats(290.0, 812),
            "turn_ms": _stats(1200.0, 812),
            "itl_ms": _stats(0.0512, 9000),
            "conversation_ms": _stats(),
            "ttft_response_ms": _stats(300.0, 812),
            "turn_response_ms": _stats(1210.0, 812),
        },
        "counts": {
            "turns": 820,
            "turns_ok": 812,
            "turns_failed": 5,
            "turns_cut": 3,
            "conversations_started": 210,
            "conversations_completed": 200,
            "conversations_failed": 5,
            "conversations_abandoned": 0,
            "chunks": 9812,
            "chars": 123456,
        },
        "errors": [{"kind": "http_429", "count": 5, "example": 'HTTP 429: {"error": "a | b `slow down`"}'}],
        "protocol": {},
    }
    if thresholds is not None:
        summary["thresholds"] = thresholds
    summary.update(extra)
    return summary


THRESHOLDS = [
    {"expr": "ttft.p95<800ms", "observed": 912.34, "passed": False, "unit": "ms"},
    {"expr": "turn.p99<3s", "observed": 1500.0, "passed": True, "unit": "ms"},
    {"expr": "error_rate<0.1%", "observed": 0.0061, "passed": False, "unit": "ratio"},
    {"expr": "itl{scenario=x}.p50<50ms", "observed": None, "passed": False, "unit": "ms"},
]


def test_junit_has_one_case_per_threshold_and_counts_failures() -> None:
    suite = ET.fromstring(render_junit(_summary(THRESHOLDS)))
    assert suite.tag == "testsuite"
    assert suite.get("name") == "loadtest thresholds"
    assert (suite.get("tests"), suite.get("failures")) == ("4", "3")
    assert suite.get("time") == "300.500"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [t["expr"] for t in THRESHOLDS]
    assert {c.get("classname") for c in cases} == {"loadtest.thresholds"}
    messages = [None if (f := c.find("failure")) is None else f.get("message") for c in cases]
    assert messages == [
        "observed 912.3 ms, limit: ttft.p95<800ms",
        None,
        "observed 0.61%, limit: error_rate<0.1%",
        "no data",
    ]
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props == {
        "run.id": "20261125-213515-f003",
        "host": "https://apps.nlx.ai/v1",
        "users": "50",
        "verdict": "fail",
    }


def test_junit_escapes_markup_in_expressions_and_properties() -> None:
    summary = _summary([{"expr": 'turn.p99<3s & "x"', "observed": 1.0, "passed": True, "unit": "ms"}])
    summary["run"]["host"] = "http://h/?a=1&b=<2>"
    text = render_junit(summary)
    suite = ET.fromstring(text)
    assert suite.find("testcase") is not None
    assert suite.find("testcase").get("name") == 'turn.p99<3s & "x"'  # type: ignore[union-attr]
    assert {p.get("value") for p in suite.iter("property")} >= {"http://h/?a=1&b=<2>"}


@pytest.mark.parametrize("thresholds", [None, []])
def test_junit_without_thresholds_has_one_passing_case(thresholds: list[dict[str, Any]] | None) -> None:
    summary = _summary(thresholds)
    summary["counts"].update(turns_failed=0, turns=815)
    suite = ET.fromstring(render_junit(summary))
    assert (suite.get("tests"), suite.get("failures")) == ("1", "0")
    (case,) = suite.findall("testcase")
    assert case.get("name") == "run completed" and case.find("failure") is None


def test_junit_without_thresholds_fails_a_case_for_failed_turns() -> None:
    suite = ET.fromstring(render_junit(_summary()))  # 5 failed turns, no threshold
    assert (suite.get("tests"), suite.get("failures")) == ("1", "1")
    (case,) = suite.findall("testcase")
    assert (case.get("classname"), case.get("name")) == ("loadtest.verdict", "failed_turns")
    failure = case.find("failure")
    assert failure is not None and failure.get("type") == "failed_turns"
    assert failure.get("message", "").startswith("5 of 817 turns failed (http_429 5)")


def test_junit_renders_evaluated_outcomes() -> None:
    summary = _summary()
    outcomes = evaluate(parse_all(["ttft.p50<=290ms;error_rate<0.5%"]), summary)
    summary["thresholds"] = [o.to_json() for o in outcomes]
    suite = ET.fromstring(render_junit(summary))
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    failure = suite.find("testcase/failure")
    assert failure is not None and failure.get("message") == "observed 0.61%, limit: error_rate<0.5%"


def test_markdown_shows_the_verdict_thresholds_latency_counts_errors_and_run() -> None:
    md = render_markdown(_summary(THRESHOLDS))
    assert md.startswith("## ❌ Load test: fail\n")
    assert "| `ttft.p95<800ms` | 912.3 ms | ❌ fail |" in md
    assert "| `turn.p99<3s` | 1,500.0 ms | ✅ pass |" in md
    assert "| `error_rate<0.1%` | 0.61% | ❌ fail |" in md
    assert "| `itl{scenario=x}.p50<50ms` | no data | ❌ fail |" in md
    assert "| metric | count | p50 | p90 | p95 | p99 | p99.9 | max |" in md
    assert "| TTFT | 812 | 290.0 | 319.0 |" in md
    assert "| inter-chunk gap | 9000 | 0.0512 |" in md
    assert "| conversation | 0 | - | - | - | - | - | - |" in md
    assert "820 (812 ok, 5 failed, 3 cut)" in md
    assert "200 completed of 210 started, 5 failed" in md
    assert "https://apps.nlx.ai/v1" in md and "users 50" in md and "workers 2" in md
    assert "started 2026-11-25T21:35:15+00:00" in md
    for line in md.splitlines():
        if line.startswith("|"):
            assert line.endswith("|")


def test_markdown_passes_and_tolerates_an_old_summary() -> None:
    summary = _summary([{"expr": "ttft.p95<800ms", "observed": 500.0, "passed": True, "unit": "ms"}])
    del summary["metrics"]["conversation_ms"]
    del summary["counts"]["conversations_failed"]
    md = render_markdown(summary)
    assert md.startswith("## ✅ Load test: pass\n")
    assert "| conversation |" not in md and "failed," not in md.split("Conversations")[1]
    old = render_markdown({"schema": "loadtest.summary/1", "metrics": {}, "counts": {"turns_ok": 3}})
    assert old.startswith("## ✅ Load test: pass\n\n### Thresholds") and "No thresholds were set." in old
    nothing = render_markdown({"schema": "loadtest.summary/1", "metrics": {}, "counts": {}, "run": {}})
    assert nothing.startswith("## ⚪ Load test: empty\n\n- **empty**: no turn finished")


def test_markdown_escapes_pipes_and_backticks_in_error_examples() -> None:
    md = render_markdown(_summary())
    (row,) = [line for line in md.splitlines() if line.startswith("| http_429 ")]
    assert row == '| http_429 | 5 | ``HTTP 429: {"error": "a \\| b `slow down`"}`` |'
    # Once the escaped pipe is taken out, the row still has exactly three cells.
    assert row.replace("\\|", "").count("|") == 4


def test_markdown_and_console_cut_long_examples_to_one_line_with_an_ellipsis(tmp_path: Path) -> None:
    example = "x" * 100 + "\n" + "y" * 100
    summary = _summary(errors=[{"kind": "stream_error", "count": 1, "example": example}])
    md = render_markdown(summary)
    (row,) = [line for line in md.splitlines() if line.startswith("| stream_error ")]
    assert "x" * 100 + " " + "y" * 18 + "…`" in row and "y" * 19 not in row  # 120 characters in all
    (line,) = [line for line in console_lines(summary, tmp_path) if line.startswith("error stream_error")]
    assert line == "error stream_error: 1 (e.g. " + "x" * 100 + " " + "y" * 18 + "…)"
    short = _summary(errors=[{"kind": "stream_error", "count": 1, "example": "x" * 120}])
    assert f"error stream_error: 1 (e.g. {'x' * 120})" in console_lines(short, tmp_path)  # no cut, no …


def test_markdown_breakdowns_when_present() -> None:
    by_turn = {
        "1": {"ttft_ms": _stats(100.0, 5), "turn_ms": _stats(), "counts": {"turns_ok": 5, "turns_failed": 1}}
    }
    md = render_markdown(_summary(by_turn=by_turn, by_scenario={}))
    assert "### By turn (ms)" in md and "| 1 | 5 | 1 | 100.0 |" in md
    assert "### By scenario" not in md


def test_append_step_summary_appends_and_is_a_no_op_without_the_variable(tmp_path: Path) -> None:
    target = tmp_path / "step_summary.md"
    env = {"GITHUB_STEP_SUMMARY": str(target)}
    assert append_step_summary("## first", env) is True
    assert append_step_summary("## second\n", env) is True
    # Two runs in one job: a blank line apart, so the second starts a block of its own.
    assert target.read_text(encoding="utf-8") == "## first\n\n## second\n"
    assert append_step_summary("## third", {}) is False
    assert append_step_summary("## third", {"GITHUB_STEP_SUMMARY": ""}) is False
    assert "third" not in target.read_text(encoding="utf-8")


def test_append_step_summary_reads_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    assert append_step_summary("✅ ok") is True
    assert target.read_text(encoding="utf-8") == "✅ ok\n"
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    assert append_step_summary("again") is False


# --- every metric and statistic of the registry reaches the Markdown and the console ------------------


def _registry_summary() -> dict[str, Any]:
    """Every metric of the registry with distinct figures, overall and in each scope it is kept for."""
    metrics = {m.summary_key: _stats(10.0 * (i + 1), 5 + i) for i, m in enumerate(catalog.METRICS)}

    def entry(scope: str) -> dict[str, Any]:
        stats = {m.summary_key: metrics[m.summary_key] for m in catalog.METRICS if scope in m.scopes}
        return {**stats, "counts": {"turns_ok": 5, "turns_failed": 1}}

    return _summary(
        metrics=metrics,
        by_turn={"1": entry(catalog.TURN)},
        by_scenario={"booking": entry(catalog.SCENARIO)},
        errors=[],
    )


def test_markdown_has_a_row_for_each_table_metric_and_a_column_for_each_statistic() -> None:
    summary = _registry_summary()
    md = render_markdown(summary)
    stats = catalog.TABLE_STATS
    assert "| metric | count | " + " | ".join(s.label for s in stats) + " |" in md
    for m in catalog.TABLE_METRICS:
        values = summary["metrics"][m.summary_key]
        cells = " | ".join(catalog.format_number(values[s.key]) for s in stats)
        assert f"| {m.heading} | {values['count']} | {cells} |" in md
    for title, scope, name in (("By turn", catalog.TURN, "1"), ("By scenario", catalog.SCENARIO, "booking")):
        section = md.split(f"### {title} (ms)")[1].split("###")[0]
        scoped = [m for m in catalog.TABLE_METRICS if scope in m.scopes]
        head = " | ".join(f"{m.short} {s.label}" for m in scoped for s in catalog.BREAKDOWN_STATS)
        assert f"| {scope} | turns ok | turns failed | {head} |" in section
        cells = [
            catalog.format_number(summary["metrics"][m.summary_key][s.key])
            for m in scoped
            for s in catalog.BREAKDOWN_STATS
        ]
        assert f"| {name} | 5 | 1 | " + " | ".join(cells) + " |" in section


def test_console_has_a_row_for_each_table_metric(tmp_path: Path) -> None:
    summary = _registry_summary()
    lines = console_lines(summary, tmp_path)
    assert lines[0].split() == ["metric", "count", *(s.label for s in catalog.TABLE_STATS), "(ms)"]
    for m in catalog.TABLE_METRICS:
        values = summary["metrics"][m.summary_key]
        [row] = [line for line in lines[1:] if line.startswith(m.heading + "  ")]
        cells = [catalog.format_number(values[s.key]) for s in catalog.TABLE_STATS]
        assert row.split()[-len(cells) - 1 :] == [str(values["count"]), *cells]
    assert lines[-2:] == [f"summary: {tmp_path / 'summary.json'}", f"report:  {tmp_path / 'report.html'}"]


def test_an_optional_metric_without_samples_has_no_row_and_another_unit_is_named(tmp_path: Path) -> None:
    summary = _registry_summary()
    for m in (catalog.TLS, catalog.TPOT, catalog.TTFB):
        summary["metrics"][m.summary_key] = _stats()  # no samples: a run without TLS or usage
    lines, md = console_lines(summary, tmp_path), render_markdown(summary)
    for m in (catalog.TLS, catalog.TPOT):
        assert m.optional
        assert not any(line.startswith(m.heading) for line in lines)
        assert f"| {m.heading} |" not in md
    # A metric every run has shows its empty row: no turn got that far.
    assert [line.split()[-7:] for line in lines if line.startswith(catalog.TTFB.heading + "  ")] == [
        ["0"] + ["-"] * 6
    ]
    assert f"| {catalog.TTFB.heading} | 0 | - | - | - | - | - | - |" in md
    tps = catalog.OUTPUT_TPS
    assert tps.heading == "output tokens per second (tokens/s)"
    assert any(line.startswith(tps.heading) for line in lines) and f"| {tps.heading} |" in md


def test_connections_reasoning_and_tokens_are_said_when_the_run_has_them(tmp_path: Path) -> None:
    counts = {
        "connections_opened": 4,
        "connections_reused": 808,
        "reasoning_chars": 10234,
        "turns_with_usage": 812,
        "prompt_tokens": 9120,
        "completion_tokens": 40311,
        "reasoning_tokens": 1200,
    }
    summary = _summary()
    summary["counts"].update(counts)
    summary["run"]["duration_s"] = 30.0
    lines = console_lines(summary, tmp_path)
    assert "connections 4 opened, 808 reused" in lines
    assert "reasoning 10,234 chars" in lines
    assert (
        "tokens 9,120 prompt, 40,311 completion (1,200 reasoning) on 812 turns; 1,343.7 output tokens/s"
        in lines
    )
    md = render_markdown(summary)
    assert (
        "**Connections**: 4 opened, 808 reused · **Reasoning**: 10,234 chars · **Tokens**: 9,120 prompt, "
        "40,311 completion (1,200 reasoning) on 812 turns; 1,343.7 output tokens/s"
    ) in md
    # NLX, or a server that sent no usage: no token line, never an estimate.
    summary["counts"].update(turns_with_usage=0, prompt_tokens=0, completion_tokens=0, reasoning_tokens=0)
    assert not any(line.startswith("tokens ") for line in console_lines(summary, tmp_path))
    assert "**Tokens**" not in render_markdown(summary)
    plain = _summary()
    assert not any(line.startswith(("connections ", "reasoning ")) for line in console_lines(plain, tmp_path))
    assert "**Connections**" not in render_markdown(plain)


def test_console_shows_counts_errors_thresholds_and_the_verdict(tmp_path: Path) -> None:
    lines = console_lines(_summary(THRESHOLDS, verdict="fail"), tmp_path)
    [counts] = [line for line in lines if line.startswith("turns ")]
    assert counts.startswith("turns 820 (ok 812, failed 5, cut 3); conversations 200/210 completed")
    assert "(5 failed, 0 abandoned); 9812 chunks, 123456 chars" in counts
    assert 'error http_429: 5 (e.g. HTTP 429: {"error": "a | b `slow down`"})' in lines
    assert "threshold FAIL: ttft.p95<800ms (observed 912.3 ms)" in lines
    assert "threshold pass: turn.p99<3s (observed 1,500.0 ms)" in lines
    assert "threshold FAIL: error_rate<0.1% (observed 0.61%)" in lines
    assert "threshold FAIL: itl{scenario=x}.p50<50ms (observed no data)" in lines
    assert "verdict: FAIL" in lines


def _written_run(report_dir: Path, run_id: str) -> Path:
    metrics = Metrics()
    metrics.record_scoped("ttft", 40_000_000, ("turn=1",))
    return write_run(report_dir, run_id, build_summary(metrics, {"id": run_id}))


def test_a_latest_that_is_not_a_link_is_left_alone_and_the_run_still_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "latest").mkdir()  # a CI cache restored without the symlink
    with caplog.at_level(logging.WARNING, logger="loadtest"):
        run_dir = _written_run(tmp_path, "run-1")
    assert {p.name for p in run_dir.iterdir()} >= {"summary.json", "report.html", "junit.xml", "summary.md"}
    assert (tmp_path / "latest").is_dir() and not (tmp_path / "latest").is_symlink()
    assert "is not a link, left as it is: this run is in" in caplog.text
    assert not list(tmp_path.glob(".latest.*"))  # no stray link left behind


def test_latest_points_at_the_newest_run(tmp_path: Path) -> None:
    _written_run(tmp_path, "run-1")
    _written_run(tmp_path, "run-2")
    assert (tmp_path / "latest").resolve() == (tmp_path / "run-2").resolve()
    assert not list(tmp_path.glob(".latest.*"))


def test_an_unwritable_step_summary_is_a_warning_not_a_lost_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(not_a_folder / "summary.md"))
    with caplog.at_level(logging.WARNING, logger="loadtest"):
        run_dir = _written_run(tmp_path / "reports", "run-1")
    assert (run_dir / "summary.json").exists() and (tmp_path / "reports" / "latest").is_symlink()
    assert "cannot append to GITHUB_STEP_SUMMARY" in caplog.text


def test_markdown_shows_names_from_conversation_files_as_text_not_html() -> None:
    summary = _summary([])
    summary["by_scenario"] = {
        "<img src=x onerror=alert(1)>": {
            "counts": {"turns_ok": 1, "turns_failed": 0},
            "ttft_ms": {},
            "turn_ms": {},
        }
    }
    summary["errors"] = [{"kind": "assertion", "count": 1, "example": "reply does not contain '<b>'"}]
    md = render_markdown(summary)
    assert "<img" not in md and "&lt;img src=x onerror=alert(1)&gt;" in md
    assert "`reply does not contain '<b>'`" in md  # in a code span, shown as written


def test_where_turns_failed_with_the_first_example_in_each_scenario_and_turn() -> None:
    summary = _summary()
    summary["by_scenario"] = {
        "order": {
            "counts": {},
            "errors": {"assertion": 3},
            "examples": {"assertion": 'no digits; the reply: "Sorry"'},
        }
    }
    summary["by_turn"] = {
        "2": {"counts": {}, "errors": {"assertion": 3}, "examples": {"assertion": "no digits"}}
    }
    md = render_markdown(summary)
    assert "### Where turns failed" in md
    assert '| scenario order | assertion | 3 | `no digits; the reply: "Sorry"` |' in md
    assert "| turn 2 | assertion | 3 | `no digits` |" in md
    html = render_html(summary)
    assert (
        "Where turns failed" in html
        and "scenario order" in html
        and "no digits; the reply: &#34;Sorry&#34;" in html
    )
