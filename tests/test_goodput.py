"""Goodput: `--goodput` bounds, what makes a turn and a conversation good, the counts (exact across
workers), summary.json's `goodput`, its thresholds, and every output that shows it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import gevent
import pytest

from loadtest import catalog, goodput, thresholds, webui
from loadtest.catalog import Failure
from loadtest.client import TurnResult
from loadtest.errors import ConfigError
from loadtest.goodput import Goodput, parse
from loadtest.metrics import Metrics
from loadtest.recorder import TurnRecorder
from loadtest.report import build_summary, console_lines
from loadtest.report.compare import compare
from loadtest.report.compare import render_markdown as compare_markdown
from loadtest.report.html import render_compare_html, render_html
from loadtest.report.markdown import render_markdown
from tests.conftest import FAST, NLX, TEST_KEY
from tests.harness import Run, config_error, turns_at_least
from tests.mockthread import ThreadedMock

MS = 1_000_000


def turn(
    ttft_ms: int = 40, end_ms: int = 100, gaps_ms: tuple[int, ...] = (20, 30), ok: bool = True
) -> TurnResult:
    return TurnResult(
        ok=ok,
        kind=None if ok else "http_500",
        detail="" if ok else "HTTP 500",
        status=200 if ok else 500,
        t_start_ns=0,
        t_end_ns=end_ms * MS,
        t_first_content_ns=ttft_ms * MS if ok else None,
        t_last_event_ns=end_ms * MS if ok else None,
        content="hello" if ok else "",
        chunks=3 if ok else 0,
        itl_ns=tuple(g * MS for g in gaps_ms),
    )


def recorder(*bounds: str) -> TurnRecorder:
    rec = TurnRecorder()
    rec.goodput = parse(bounds)
    return rec


def conversation(
    rec: TurnRecorder, scenario: str, turns: list[TurnResult], outcome: str = "completed"
) -> None:
    rec.conversation_started(scenario)
    for index, result in enumerate(turns, start=1):
        rec.turn(result, scenario, index, "c1", 0)
    rec.conversation_ended(scenario, outcome, 2_000 * MS)


# --- the bounds -------------------------------------------------------------------------------------


def test_bounds_take_the_latency_metrics_with_units_separated_by_commas_or_semicolons() -> None:
    got = parse(["ttft<800ms, turn<=3s", "itl<0.1s;conversation<2m"])
    assert [(b.metric, b.op, b.limit_ns) for b in got.bounds] == [
        ("ttft", "<", 800 * MS),
        ("turn", "<=", 3_000 * MS),
        ("itl", "<", 100 * MS),
        ("conversation", "<", 120_000 * MS),
    ]
    assert got.exprs == ["ttft<800ms", "turn<=3s", "itl<0.1s", "conversation<2m"]
    assert parse(["ttft<250"]).bounds[0].limit_ns == 250 * MS  # a bare number is ms, as in thresholds
    assert parse(["ttft<1500us"]).bounds[0].limit_ns == 1_500_000
    assert parse([]) == Goodput() and parse(["", " , "]) == Goodput()


def test_every_threshold_latency_metric_is_a_bound_of_a_turn_or_of_a_conversation() -> None:
    # The lists agree: a new latency metric needs a reading here before --goodput can take it.
    assert {*goodput.METRICS, *goodput.NOT_BOUNDS} == {m.key for m in catalog.THRESHOLD_METRICS}
    assert not set(goodput.METRICS) & set(goodput.NOT_BOUNDS)
    assert not set(goodput.TURN_METRICS) & set(goodput.CONVERSATION_METRICS)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("ttft>800ms", "--goodput 'ttft>800ms': a bound is a most: use < or <=, as in ttft<800ms"),
        (
            "latency<1s",
            "--goodput 'latency<1s': unknown metric 'latency': "
            "use ttft or turn or itl or ttfb or tpot or conversation",
        ),
        ("ttft<1h", "--goodput 'ttft<1h': unknown unit 'h': use us, ms, s or m (a bare number is ms)"),
        ("ttft<0", "--goodput 'ttft<0': the limit must be above 0"),
        ("ttft.p95<1s", "--goodput 'ttft.p95<1s': write METRIC<LIMIT with METRIC ttft or turn or itl or"),
        ("ttft<1s,ttft<2s", "--goodput 'ttft<2s': ttft<1s bounds ttft already: keep one of the two"),
    ],
)
def test_a_bad_bound_is_one_line_naming_the_fix(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse([value])
    assert str(caught.value).startswith(problem)
    assert "\n" not in str(caught.value)


def test_the_option_and_its_environment_variable_reach_the_settings() -> None:
    assert config_error(f"{NLX} --goodput ttft>1s").startswith("--goodput 'ttft>1s': a bound is a most")
    assert config_error(f"{NLX} --goodput ttft<1s", env={"LOADTEST_GOODPUT": "turn<=3s,itl<50ms"}) == ""


# --- good turns and conversations -------------------------------------------------------------------


@dataclasses.dataclass
class Values:
    """What a turn bound reads of a turn."""

    ttft_ns: int | None = 40 * MS
    latency_ns: int = 90 * MS
    itl_ns: tuple[int, ...] = ()
    ttfb_ns: int | None = 5 * MS
    tpot_ns: int | None = 10 * MS


def test_a_turn_is_good_when_it_succeeded_within_every_bound() -> None:
    bounds = parse(["ttft<50ms,turn<=100ms,itl<31ms"])
    assert bounds.turn_good(Values(latency_ns=100 * MS, itl_ns=(20 * MS, 30 * MS)))
    assert not bounds.turn_good(Values(ttft_ns=50 * MS))  # < is strict
    assert not bounds.turn_good(Values(latency_ns=101 * MS))
    assert not bounds.turn_good(Values(itl_ns=(20 * MS, 31 * MS)))  # every gap, not their mean
    assert not bounds.turn_good(Values(ttft_ns=None))  # no first token: no TTFT within the bound
    assert Goodput().turn_good(
        Values(ttft_ns=None, latency_ns=10**12)
    )  # without bounds every success is good


def test_time_to_headers_and_time_per_output_token_bound_a_turn() -> None:
    bounds = parse(["ttfb<10ms,tpot<=20ms"])
    assert bounds.turn_good(Values(tpot_ns=20 * MS))
    assert not bounds.turn_good(Values(ttfb_ns=10 * MS))
    assert not bounds.turn_good(Values(tpot_ns=21 * MS))
    # A turn without token usage has no time per output token: it cannot be shown within the bound.
    assert not bounds.turn_good(Values(tpot_ns=None))
    assert parse(["ttft<1s"]).turn_good(Values(tpot_ns=None, ttfb_ns=None))


def test_the_recorder_counts_good_turns_by_turn_and_scenario() -> None:
    rec = recorder("ttft<50ms")
    conversation(rec, "booking", [turn(ttft_ms=40), turn(ttft_ms=60)])
    conversation(rec, "faq", [turn(ttft_ms=10), turn(ok=False)], outcome="failed")
    counts = rec.metrics.counts
    assert counts["turns_good"] == 2
    assert counts["turns_good{turn=1}"] == 2 and counts["turns_good{turn=2}"] == 0
    assert counts["turns_good{scenario=booking}"] == 1 and counts["turns_good{scenario=faq}"] == 1


def test_a_reply_that_failed_a_check_is_never_good() -> None:
    rec = recorder()
    failed_check = dataclasses.replace(turn(), ok=False, kind=Failure.ASSERTION, detail="no order")
    conversation(rec, "s", [turn(), failed_check], outcome="failed")
    assert rec.metrics.counts["turns_good"] == 1


def test_a_conversation_is_good_when_it_completed_every_turn_was_good_and_it_met_its_bound() -> None:
    rec = recorder("turn<200ms", "conversation<3s")
    conversation(rec, "s", [turn(), turn()])  # good
    conversation(rec, "s", [turn(), turn(end_ms=300)])  # completed, one slow turn
    conversation(rec, "s", [turn()], outcome="abandoned")  # left early
    rec.conversation_started("s")
    rec.turn(turn(), "s", 1, "c9", 0)
    rec.conversation_ended("s", "completed", 4_000 * MS)  # over the conversation bound
    counts = rec.metrics.counts
    assert counts["conversations_completed"] == 3
    assert counts["conversations_good"] == 1 and counts["conversations_good{scenario=s}"] == 1


def test_conversations_in_different_greenlets_are_judged_apart() -> None:
    """Users interleave their turns: one user's slow turn spoils its own conversation only."""
    rec = recorder("ttft<50ms")
    fast_started, slow_done = gevent.event.Event(), gevent.event.Event()

    def fast_user() -> None:
        rec.conversation_started("s")
        rec.turn(turn(ttft_ms=10), "s", 1, "fast", 0)
        fast_started.set()
        slow_done.wait()  # the other user's slow turn lands in between
        rec.turn(turn(ttft_ms=10), "s", 2, "fast", 0)
        rec.conversation_ended("s", "completed", MS)

    def slow_user() -> None:
        fast_started.wait()
        conversation(rec, "s", [turn(ttft_ms=90)])
        slow_done.set()

    gevent.joinall([gevent.spawn(fast_user), gevent.spawn(slow_user)], raise_error=True)
    assert rec.metrics.counts["conversations_completed"] == 2
    assert rec.metrics.counts["conversations_good"] == 1


def test_two_conversations_open_in_one_greenlet_are_judged_apart_by_their_ids() -> None:
    rec = recorder("ttft<50ms")
    rec.conversation_started("s", "a")
    rec.conversation_started("s", "b")
    rec.turn(turn(ttft_ms=10), "s", 1, "a", 0)
    rec.turn(turn(ttft_ms=90), "s", 1, "b", 0)
    rec.conversation_ended("s", "completed", MS, "b")
    rec.conversation_ended("s", "completed", MS, "a")
    assert rec.metrics.counts["conversations_good"] == 1


def test_good_counts_add_up_exactly_across_workers() -> None:
    workers = [recorder("ttft<50ms"), recorder("ttft<50ms")]
    conversation(workers[0], "s", [turn(ttft_ms=10), turn(ttft_ms=20)])
    conversation(workers[1], "s", [turn(ttft_ms=10), turn(ttft_ms=80)])
    master = Metrics()
    for worker in workers:
        master.merge_data(worker.drain())
    assert master.counts["turns_good"] == 3 and master.counts["conversations_good"] == 1
    assert master.counts["turns_good{scenario=s}"] == 3


# --- summary.json and thresholds ----------------------------------------------------------------------


def summary_with_goodput(*bounds: str) -> dict[str, Any]:
    rec = recorder(*bounds)
    for _ in range(3):
        conversation(rec, "booking", [turn(ttft_ms=10), turn(ttft_ms=20)])
    conversation(rec, "faq", [turn(ttft_ms=90)])
    conversation(rec, "faq", [turn(ok=False)], outcome="failed")
    summary: dict[str, Any] = dict(build_summary(rec.metrics, {"id": "r1", "duration_s": 10.0}))
    summary["goodput"] = goodput.section(summary, parse(bounds).exprs)
    return summary


def test_the_summary_has_goodput_overall_per_turn_and_per_scenario() -> None:
    section = summary_with_goodput("ttft<50ms")["goodput"]
    assert section["bounds"] == ["ttft<50ms"]
    assert section["turns_good"] == 6 and section["good_turn_rate"] == pytest.approx(6 / 8)
    assert section["conversations_good"] == 3 and section["good_conversation_rate"] == pytest.approx(3 / 5)
    assert section["good_conversations_per_s"] == pytest.approx(0.3)
    assert section["by_turn"]["1"] == {"turns_good": 3, "good_turn_rate": pytest.approx(3 / 5)}
    assert section["by_turn"]["2"]["good_turn_rate"] == 1.0
    faq = section["by_scenario"]["faq"]
    assert faq["good_turn_rate"] == 0.0 and faq["good_conversation_rate"] == 0.0
    assert section["by_scenario"]["booking"]["good_conversation_rate"] == 1.0


def test_goodput_thresholds_read_the_good_counts_overall_and_in_scopes() -> None:
    summary = summary_with_goodput("ttft<50ms")
    rules = thresholds.parse_all(["goodput>=95%; conversation_goodput>=50%", "goodput{turn=2}>=99%"])
    outcomes = thresholds.evaluate(rules, summary)
    assert [(o.observed, o.passed) for o in outcomes] == [
        (pytest.approx(0.75), False),
        (pytest.approx(0.6), True),
        (1.0, True),
    ]
    with pytest.raises(ConfigError, match="conversation_goodput has no per-turn scope"):
        thresholds.parse("conversation_goodput{turn=1}>=90%")


def test_console_markdown_report_and_comparison_show_the_goodput(tmp_path: Any) -> None:
    summary = summary_with_goodput("ttft<50ms", "turn<3s")
    line = "goodput 75.00% of turns, 60.00% of conversations, 0.30 good conversations/s"
    line += " within ttft<50ms, turn<3s"
    assert line in console_lines(summary, tmp_path)
    assert f"**Goodput**: {line.removeprefix('goodput ')}" in render_markdown(summary)
    page = render_html(summary)
    assert (
        ">Goodput<" in page and "75.00" in page and "of turns · 60.0% of conversations · ttft&lt;50ms" in page
    )
    baseline = summary_with_goodput("ttft<15ms")
    comparison = compare(baseline, summary, 0.1)
    assert comparison.goodput.baseline == pytest.approx(3 / 8) and comparison.goodput.new == pytest.approx(
        0.75
    )
    assert not comparison.regressed  # shown, not judged
    assert "| goodput (turns) | 37.50% | 75.00% | +37.50 pp |" in compare_markdown(
        comparison, baseline, summary
    )
    assert "goodput (conversations)" in render_compare_html(comparison, baseline, summary)


def test_a_summary_without_goodput_still_renders() -> None:
    summary = summary_with_goodput()
    del summary["goodput"]
    assert "Goodput" in render_html(summary) and "not in this summary" in render_html(summary)
    assert "**Goodput**" not in render_markdown(summary)


def test_the_web_ui_says_the_goodput_so_far() -> None:
    rec = recorder("ttft<50ms")
    conversation(rec, "s", [turn(ttft_ms=10), turn(ttft_ms=80)])
    assert webui.goodput_line(rec.metrics, rec.goodput) == (
        "goodput 50.00% of turns, 0.00% of conversations within ttft<50ms"
    )


# --- a run -----------------------------------------------------------------------------------------


@pytest.mark.timing  # TTFT against a 35 ms bound: beside the other shard's load no turn made it (CI)
def test_a_run_counts_goodput_and_its_threshold_gates_the_exit_code(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run]
) -> None:
    """The mock's TTFT is 20-40 ms: a 35 ms bound makes most turns good, not all, so 95% fails."""
    mock = thread_mock(*FAST)
    run = in_process(
        f"--host {mock.url} {NLX} -u 2 -r 2 --think-time 0",
        "--goodput", "ttft<35ms", "--threshold", "goodput>=95%", "--threshold", "error_rate<1%",
        until=turns_at_least(ok=40),
        env={"NLX_API_KEY": TEST_KEY},
    )  # fmt: skip
    summary = run.summary()
    section = summary["goodput"]
    counts = summary["counts"]
    assert section["bounds"] == ["ttft<35ms"]
    assert 0 < counts["turns_good"] < counts["turns_ok"]
    # The summary keeps six decimals.
    assert section["good_turn_rate"] == pytest.approx(counts["turns_good"] / counts["turns_ok"], abs=5e-7)
    [gate, _] = summary["thresholds"]
    assert gate["expr"] == "goodput>=95%" and not gate["passed"]
    assert run.exit_code == 3 and summary["verdict"] == "fail"
