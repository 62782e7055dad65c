"""Every output tells the one verdict of a run: the console, summary.md, junit.xml and report.html show
the verdict, its reasons, how the run ended and the warnings the summary holds; a summary without
`reasons` (an older one) is judged by `loadtest.verdict.judge`, as a run judges itself."""

from __future__ import annotations

import html
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from loadtest import thresholds, verdict
from loadtest.report import console_lines
from loadtest.report.html import HEADLINES, render_html
from loadtest.report.junit import render_junit
from loadtest.report.markdown import ICONS, prose, render_markdown
from loadtest.report.summary import run_verdict

NASTY = "<img src=x onerror=alert(1)> a | b"
WARNING = "--think-time had no effect: every conversation has one turn"


def stats(p50: float | None, count: int) -> dict[str, Any]:
    keys = ("min", "mean", "p50", "p90", "p95", "p99", "p999", "max")
    return {"count": count, **{k: None if p50 is None else p50 * (1 + i / 10) for i, k in enumerate(keys)}}


def summary_of(
    *,
    ok: int = 40,
    failed: int = 0,
    checks: tuple[str, ...] = (),
    strict_client: bool = False,
    warnings: tuple[str, ...] = (),
    capacity: dict[str, Any] | None = None,
    **run: Any,
) -> dict[str, Any]:
    """A summary as a run writes it: counts, `checks` (thresholds) evaluated, then judged by
    `verdict.judge` and stored as output.py stores it. `run` changes the run facts."""
    summary: dict[str, Any] = {
        "schema": "loadtest.summary/1",
        "run": {
            "id": "20260101-000000-abc",
            "host": "http://127.0.0.1:8089",
            "users": 4,
            "started": "2026-01-01T00:00:00+00:00",
            "ended": "2026-01-01T00:01:00+00:00",
            "duration_s": 60.0,
            "planned_duration_s": 60.0,
            "stopped_by": "time",
            **run,
        },
        "metrics": {"ttft_ms": stats(200.0 if ok else None, ok), "turn_ms": stats(900.0 if ok else None, ok)},
        "counts": {
            "turns": ok + failed + 2,
            "turns_ok": ok,
            "turns_failed": failed,
            "turns_cut": 2,
            "conversations_started": 10,
            "conversations_completed": 8,
            "conversations_failed": 1 if failed else 0,
            "chunks": ok * 5,
            "chars": ok * 50,
        },
        "errors": [{"kind": "http_500", "count": failed, "example": "HTTP 500"}] if failed else [],
        "client_health": {
            "judged": True,
            "bottleneck": strict_client,
            "reasons": ["event-loop lag p99 30 ms"],
        },
    }
    if capacity is not None:
        summary["capacity"] = capacity
    outcomes = thresholds.evaluate(thresholds.parse_all(checks), summary)
    summary["thresholds"] = [o.to_json() for o in outcomes]
    judged = verdict.judge(summary, strict_client=strict_client)
    summary["verdict"] = judged.verdict.value
    summary["reasons"] = judged.reasons
    summary["exit_code"] = judged.exit_code
    summary["warnings"] = list(warnings)
    return summary


# name: (summary, verdict, reason kinds)
CASES: dict[str, tuple[dict[str, Any], str, list[str]]] = {
    "pass": (summary_of(checks=("ttft.p95<5s",)), "pass", []),
    "pass without thresholds": (summary_of(), "pass", []),
    "threshold": (summary_of(checks=("ttft.p95<100ms", "error_rate<1%")), "fail", ["threshold"]),
    "failed turns": (summary_of(failed=4), "fail", ["failed_turns"]),
    "strict client": (summary_of(strict_client=True), "fail", ["strict_client"]),
    "refused": (
        summary_of(ok=0, failed=5, stopped_by="refused", refused="HTTP 401 on every first turn"),
        "fail",
        ["refused"],
    ),
    "threshold and interrupted": (
        summary_of(checks=("ttft.p95<100ms",), stopped_by="signal", signal="SIGINT", duration_s=5.1),
        "fail",
        ["threshold", "interrupted"],
    ),
    "interrupted": (
        summary_of(stopped_by="signal", signal="SIGTERM", duration_s=12.0, warnings=(WARNING,)),
        "incomplete",
        ["interrupted"],
    ),
    "workers lost": (summary_of(workers_without_final_report=["w2"]), "incomplete", ["workers_lost"]),
    "min capacity": (
        summary_of(
            checks=("ttft.p95<5s",),
            stopped_by="capacity_search",
            capacity={
                "unit": "concurrent conversations",
                "max_passing": 180,
                "min_capacity": 200,
                "steps": [],
            },
        ),
        "fail",
        ["min_capacity"],
    ),
    "empty": (summary_of(ok=0, checks=("ttft.p95<5s",)), "empty", ["empty", "threshold"]),
}


def test_the_cases_cover_every_verdict_and_reason() -> None:
    assert {expected for _, expected, _ in CASES.values()} == set(verdict.VERDICTS)
    assert {kind for _, _, kinds in CASES.values() for kind in kinds} == set(verdict.ReasonKind)


def reasons_of(summary: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["kind"], r["text"]) for r in summary["reasons"]]


# --- what each output says: its verdict and its reasons -------------------------------------------


def told_by_console(summary: dict[str, Any], tmp_path: Path) -> tuple[str, list[tuple[str, str]]]:
    lines = console_lines(summary, tmp_path)
    [at] = [i for i, line in enumerate(lines) if line.startswith("verdict: ")]
    reasons = []
    for line in lines[at + 1 :]:
        if not line.startswith("  - "):
            break
        kind, _, text = line[4:].partition(": ")
        reasons.append((kind, text))
    return lines[at].removeprefix("verdict: ").lower(), reasons


def told_by_markdown(summary: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    md = render_markdown(summary)
    heading = md.splitlines()[0]
    [said] = [v for v, icon in ICONS.items() if heading == f"## {icon} Load test: {v}"]
    top = md.split("### Thresholds")[0]
    found = re.findall(r"^- \*\*(\w+)\*\*: (.*)$", top, re.M)
    return said, [(kind, html.unescape(text)) for kind, text in found]


def told_by_junit(summary: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """A failing threshold case is named by its expression, which begins its reason's text."""
    suite = ET.fromstring(render_junit(summary))
    said = {p.get("name"): p.get("value") for p in suite.iter("property")}["verdict"]
    reasons = []
    for case in suite.findall("testcase"):
        failure = case.find("failure")
        if failure is not None:
            reasons.append((str(failure.get("type")), f"{case.get('name')}|{failure.get('message')}"))
    return str(said), reasons


def told_by_html(summary: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    page = render_html(summary)
    [(kind, word)] = re.findall(r'<section class="verdict (\w+)" id="verdict"><div class="word">(\w+)<', page)
    assert word == kind.upper()
    items = re.findall(r'<li><span class="tag">([^<]*)</span> ([^<]*)</li>', page)
    return kind, [(html.unescape(k), html.unescape(t)) for k, t in items]


@pytest.mark.parametrize("case", CASES)
def test_every_output_tells_the_same_verdict_and_reasons(case: str, tmp_path: Path) -> None:
    summary, expected, kinds = CASES[case]
    assert summary["verdict"] == expected
    reasons = reasons_of(summary)
    assert [kind for kind, _ in reasons] == kinds
    assert told_by_console(summary, tmp_path) == (expected, reasons)
    assert told_by_markdown(summary) == (expected, reasons)
    assert told_by_html(summary) == (expected, reasons)
    # junit.xml keeps its threshold cases first, in threshold order, then a case per other reason.
    said, failures = told_by_junit(summary)
    in_junit_order = sorted(reasons, key=lambda r: r[0] != "threshold")
    assert said == expected and [kind for kind, _ in failures] == [kind for kind, _ in in_junit_order]
    for (kind, text), (_, case_and_message) in zip(in_junit_order, failures, strict=True):
        name, _, message = case_and_message.partition("|")
        if kind == "threshold":
            assert text.startswith(f"{name} (observed ")
        else:
            assert (name, message) == (kind, text)


# --- how the run ended, and the warnings --------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_console_says_how_the_run_ended_then_warns_then_names_the_files(case: str, tmp_path: Path) -> None:
    summary, expected, _ = CASES[case]
    lines = console_lines(summary, tmp_path)
    reasons = [f"  - {kind}: {text}" for kind, text in reasons_of(summary)]
    at = lines.index(f"verdict: {expected.upper()}") + 1 + len(reasons)
    ended = verdict.stopped_text(summary["run"])
    # An interrupted run says so in its reason: not a second time.
    said = ended in {text for _, text in reasons_of(summary)}
    # A capacity search's answer is the last line of all.
    searched = 1 if "capacity" in summary else 0
    assert lines[at : -2 - searched] == ([] if said else [ended]) + [
        f"warning: {w}" for w in summary["warnings"]
    ]
    files = [f"summary: {tmp_path / 'summary.json'}", f"report:  {tmp_path / 'report.html'}"]
    assert lines[-2 - searched : len(lines) - searched] == files
    assert lines[-1].startswith("capacity: ") == bool(searched)


def test_console_of_an_interrupted_run(tmp_path: Path) -> None:
    summary, _, _ = CASES["interrupted"]
    assert console_lines(summary, tmp_path)[-5:-2] == [
        "verdict: INCOMPLETE",
        "  - interrupted: stopped by SIGTERM after 12 s of 60 s planned",
        f"warning: {WARNING}",
    ]
    passed, _, _ = CASES["pass"]
    assert console_lines(passed, tmp_path)[-4:-2] == ["verdict: PASS", "ran 60 s as planned"]


def test_markdown_says_how_the_run_ended_and_warns() -> None:
    summary, _, _ = CASES["interrupted"]
    summary = {**summary, "warnings": [WARNING, NASTY]}
    md = render_markdown(summary)
    top = md.split("### Thresholds")[0]
    assert top.endswith(f"**Warnings**\n\n- ⚠️ {WARNING}\n- ⚠️ &lt;img src=x onerror=alert(1)> a | b\n\n")
    assert "**How it ended**" not in top  # the interrupted reason says it
    run_line = [line for line in md.splitlines() if line.startswith("**Run**: ")][-1]
    assert "duration 12 s · planned 60 s · stopped by signal · signal SIGTERM" in run_line
    passed = render_markdown(CASES["pass"][0])
    assert "\n**How it ended**: ran 60 s as planned\n" in passed and "**Warnings**" not in passed


def test_report_says_how_the_run_ended_and_has_a_warnings_card_only_with_warnings() -> None:
    summary, _, _ = CASES["interrupted"]
    page = render_html({**summary, "warnings": [WARNING, NASTY]})
    assert '<section class="card" id="warnings">' in page
    assert re.findall(r'<ul class="warnings">(.*?)</ul>', page, re.S) == [
        f"\n<li>{html.escape(WARNING)}</li>\n<li>{html.escape(NASTY)}</li>\n"
    ]
    assert "<img" not in page
    passed = render_html(CASES["pass"][0])
    assert 'id="warnings"' not in passed
    assert "<p>0 of 42 turns failed; ran 60 s as planned.</p>" in passed
    cut = render_html(CASES["threshold and interrupted"][0])
    assert "stopped by SIGINT after 5.1 s of 60 s planned</li>" in cut  # as a reason, once
    assert cut.count("stopped by SIGINT after 5.1 s") == 1


HEADLINE_OF = {
    "pass": "The threshold held",
    "pass without thresholds": "No thresholds were set, and no turn failed",
    "threshold": "1 of 2 thresholds failed",
    "failed turns": "Turns failed, and no threshold says how many may",
    "strict client": "The load generator was the bottleneck (--strict-client)",
    "refused": "Every first turn was refused",
    "threshold and interrupted": "The threshold failed",
    "interrupted": "The run was cut before its planned end",
    "workers lost": "The data of a worker was lost",
    "min capacity": "The capacity found is below --min-capacity",
    "empty": "No turn finished: there is nothing to judge",  # though its threshold failed too
}


@pytest.mark.parametrize("case", CASES)
def test_report_banner_heads_with_what_decided_the_verdict(case: str) -> None:
    page = render_html(CASES[case][0])
    assert re.findall(r'<div class="what">([^<]*)</div>', page) == [HEADLINE_OF[case]]


def test_report_banner_of_a_pass_without_thresholds_says_how_to_gate() -> None:
    page = render_html(CASES["pass without thresholds"][0])
    banner = re.search(r'<section class="verdict pass" id="verdict">(.*?)</section>', page, re.S)
    assert banner is not None
    text = re.sub(r"<[^>]+>", "", banner.group(1))
    assert text.startswith("PASSNo thresholds were set, and no turn failed")
    assert "gate runs with --threshold, as in ttft.p95&lt;800ms" in text
    gated = render_html(CASES["pass"][0])
    assert "The threshold held" in gated and "gate runs with" not in gated


def test_each_verdict_has_its_own_colour_and_icon() -> None:
    css = (Path(render_html.__code__.co_filename).parent / "assets" / "report.css").read_text(
        encoding="utf-8"
    )
    for v in verdict.VERDICTS:
        assert f".verdict.{v} .word {{ background:" in css, v
    assert set(ICONS) == {v.value for v in verdict.VERDICTS}
    assert len(set(ICONS.values())) == len(ICONS)
    # Every reason has a headline for the banner of a run that failed without a failed threshold.
    assert set(HEADLINES) == set(verdict.ReasonKind)


def test_reasons_are_shown_as_text_not_markup(tmp_path: Path) -> None:
    summary, _, _ = CASES["failed turns"]
    summary = {**summary, "reasons": [{"kind": "failed_turns", "text": NASTY}]}
    md = render_markdown(summary)
    assert "<img" not in md and "- **failed_turns**: &lt;img src=x onerror=alert(1)> a | b" in md
    page = render_html(summary)
    assert (
        "<img" not in page and f'<li><span class="tag">failed_turns</span> {html.escape(NASTY)}</li>' in page
    )
    suite = ET.fromstring(render_junit(summary))
    assert suite.find("testcase/failure").get("message") == NASTY  # type: ignore[union-attr]
    assert f"  - failed_turns: {NASTY}" in console_lines(summary, tmp_path)


# --- older summaries: judged as a run judges itself ------------------------------------------------


def without_verdict(summary: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in keys}


@pytest.mark.parametrize("case", CASES)
def test_a_summary_without_reasons_is_judged_by_the_verdict_rules(case: str, tmp_path: Path) -> None:
    summary, expected, _ = CASES[case]
    old = without_verdict(summary, "reasons", "exit_code", "warnings")
    judged = verdict.judge(old, strict_client=case == "strict client")
    assert run_verdict(old).verdict == judged.verdict.value
    assert run_verdict(old).reasons == judged.reasons
    assert told_by_console(old, tmp_path) == (judged.verdict.value, reasons_of({"reasons": judged.reasons}))
    assert told_by_html(old)[0] == told_by_markdown(old)[0] == told_by_junit(old)[0] == judged.verdict.value


def test_an_old_fail_with_every_threshold_held_was_the_strict_client_check() -> None:
    bottleneck, _, _ = CASES["strict client"]
    old = without_verdict(bottleneck, "reasons", "exit_code", "warnings")
    assert [r["kind"] for r in run_verdict(old).reasons] == ["strict_client"]
    # Without a stored fail, a bottleneck alone was only reported: the run passed.
    assert run_verdict(without_verdict(old, "verdict")).verdict == "pass"
    # A stored fail with a failed threshold is that threshold's.
    slow = summary_of(checks=("ttft.p95<100ms",), strict_client=True)
    slow = without_verdict({**slow, "verdict": "fail"}, "reasons")
    assert [r["kind"] for r in run_verdict(slow).reasons] == ["threshold"]


def test_an_old_summary_tells_of_a_threshold_abort() -> None:
    summary = summary_of(checks=("ttft.p95<100ms",))
    del summary["run"]["stopped_by"]
    summary["run"]["aborted_by_threshold"] = "ttft.p95<100ms"
    assert run_verdict(summary).ended == "stopped early by --threshold-abort: ttft.p95<100ms"
    summary["run"].pop("aborted_by_threshold")
    assert run_verdict(summary).ended is None


@pytest.mark.parametrize(
    "first", ["import loadtest.verdict", "import loadtest.report.markdown", "import loadtest.report.html"]
)
def test_the_verdict_and_the_reports_import_in_either_order(first: str) -> None:
    code = (
        f"{first}; from loadtest.report.markdown import render_markdown; "
        "print(render_markdown({'schema': 'loadtest.summary/1', 'metrics': {}}).splitlines()[0])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "## ⚪ Load test: empty\n"


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("add --threshold 'error_rate<1%'", "add --threshold 'error_rate<1%'"),  # as written
        ("ttft.p95<=800ms & turn.p99 > 2s", "ttft.p95<=800ms & turn.p99 > 2s"),
        ("<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)>"),
        (
            "</details> <!-- x --> <?php <http://x.example>",
            "&lt;/details> &lt;!-- x --> &lt;?php &lt;http://x.example>",
        ),
        ("&lt; &#60; &amp;", "&amp;lt; &amp;#60; &amp;amp;"),  # shown as typed, not as < < &
        ("two\nlines", "two lines"),
    ],
)
def test_markdown_prose_keeps_text_as_written_and_escapes_what_could_be_markup(
    text: str, written: str
) -> None:
    assert prose(text) == written
    assert html.unescape(prose(text)) == " ".join(text.split())
