from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtest import catalog
from loadtest.conversation import Scenario, Turn
from loadtest.errors import ConfigError
from loadtest.metrics import Metrics, interval_of
from loadtest.report import build_summary
from loadtest.report.schema import RATES
from loadtest.thresholds import (
    METRICS,
    OPS,
    RATE_METRICS,
    Outcome,
    Threshold,
    can_still_pass,
    check_scopes,
    evaluate,
    evaluate_live,
    format_observed,
    observe,
    parse,
    parse_all,
    quote_name,
    scope_text,
    scopes,
    split,
    unit_of,
    verdict,
)


@pytest.mark.parametrize(
    ("expr", "metric", "scope", "stat", "op", "limit"),
    [
        ("ttft.p95<800ms", "ttft", None, "p95", "<", 800.0),
        ("turn.p99<=3s", "turn", None, "p99", "<=", 3000.0),
        ("itl.p50<50ms", "itl", None, "p50", "<", 50.0),
        ("ttft{turn=1}.p95<500ms", "ttft", ("turn", "1"), "p95", "<", 500.0),
        ("turn{scenario=booking}.p99 < 2.5s", "turn", ("scenario", "booking"), "p99", "<", 2500.0),
        ("error_rate<1%", "error_rate", None, None, "<", 0.01),
        ("ttfb.p95<500ms", "ttfb", None, "p95", "<", 500.0),
        ("connect.p99<100ms", "connect", None, "p99", "<", 100.0),
        ("tpot.p95<50ms", "tpot", None, "p95", "<", 50.0),
        ("output_tps.p50>20", "output_tps", None, "p50", ">", 20.0),
        ("conversation_success>=99%", "conversation_success", None, None, ">=", 0.99),
        ("error_rate{scenario=booking}<0.5%", "error_rate", ("scenario", "booking"), None, "<", 0.005),
        ("error_rate<0.02", "error_rate", None, None, "<", 0.02),
        (
            "conversation_success{scenario=faq}>0.9",
            "conversation_success",
            ("scenario", "faq"),
            None,
            ">",
            0.9,
        ),
        ("error_rate{turn=3}<=0%", "error_rate", ("turn", "3"), None, "<=", 0.0),
        ("conversation.p90<30s", "conversation", None, "p90", "<", 30_000.0),
        (
            "conversation{scenario=a.b-c_1}.max<=60s",
            "conversation",
            ("scenario", "a.b-c_1"),
            "max",
            "<=",
            60e3,
        ),
        ("ttft.p95<800", "ttft", None, "p95", "<", 800.0),
        ("itl.max<250us", "itl", None, "max", "<", 0.25),
        ("ttft.min>1.5", "ttft", None, "min", ">", 1.5),
        ("ttft.avg<300ms", "ttft", None, "mean", "<", 300.0),
        ("ttft.mean<300ms", "ttft", None, "mean", "<", 300.0),
        ("turn.p99.9<5s", "turn", None, "p999", "<", 5000.0),
        ("turn.p999<5s", "turn", None, "p999", "<", 5000.0),
        ("  ttft { turn = 02 } . p99.9 >= 100 us  ", "ttft", ("turn", "2"), "p999", ">=", 0.1),
        ("turn.p50 > .5s", "turn", None, "p50", ">", 500.0),
        ("error_rate < 1 %", "error_rate", None, None, "<", 0.01),
    ],
)
def test_parse_valid(
    expr: str, metric: str, scope: tuple[str, str] | None, stat: str | None, op: str, limit: float
) -> None:
    th = parse(expr)
    assert (th.expr, th.metric, th.scope, th.stat, th.op) == (expr.strip(), metric, scope, stat, op)
    assert th.limit == pytest.approx(limit)


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("ttft.p97<800ms", "unknown statistic 'p97': use min, mean, p50, p90, p95, p99, p99.9 or max"),
        ("ttft.p95<fast", "'fast' is not a number with a unit (us, ms, s)"),
        (
            "latency.p95<1s",
            "unknown metric 'latency': use ttft, turn, itl, conversation, ttfb, dns, connect, tls, ttfr, "
            "tpot, output_tps, error_rate, conversation_success, goodput or conversation_goodput",
        ),
        ("ttft{run=1}.p95<1s", "unknown scope 'run': use {turn=N} or {scenario=NAME}"),
        ("ttft.p95 800ms", "missing operator: use <, <=, > or >="),
        ("ttft.p95=800ms", "unknown operator '=': use <, <=, > or >="),
        ("ttft.p95==800ms", "unknown operator '=='"),
        ("ttft.p95!=800ms", "unknown operator '!='"),
        ("ttft.p95=<800ms", "unknown operator '=<'"),
        ("100ms<ttft.p95<800ms", "more than one operator"),
        ("ttft.p95<80%", "not %"),
        ("error_rate<5ms", "error_rate is a ratio, not a time ('ms')"),
        ("conversation{turn=1}.p95<1s", "conversation has no per-turn scope"),
        ("conversation_success{turn=2}>=99%", "conversation_success has no per-turn scope"),
        ("error_rate<101%", "101% is over 100%"),
        ("conversation_success>1.5", "1.5 is over 1"),
        ("ttft{turn=0}.p95<1s", "turn '0' is not a turn number: use an integer >= 1"),
        ("ttft{turn=first}.p95<1s", "turn 'first' is not a turn number"),
        ("ttft{scenario=a b}.p95<1s", "scenario 'a b' is not a scenario name: use letters, digits, _, -"),
        ("ttft{scenario=a b}.p95<1s", 'or quote it: {scenario="a b"}'),
        (
            'ttft{scenario="a b}.p95<1s',
            "unclosed '\"' in the scope: end the quoted name with '\"' (a locust.conf list",
        ),
        ('ttft{scenario="a"b}.p95<1s', "'b' after the quoted name: put the whole name in the quotes"),
        ('ttft{scenario=""}.p95<1s', "scope 'scenario' needs a value"),
        ('ttft{scenario=a"b"}.p95<1s', "scenario 'a\"b\"' is not a scenario name"),
        ('ttft{turn="x"}.p95<1s', "turn 'x' is not a turn number"),
        ('"ttft.p95<1s"', "unknown metric '\"ttft.p95'"),
        ("ttft{scenario=}.p95<1s", "scope 'scenario' needs a value"),
        ("ttft{}.p95<1s", "empty scope {}"),
        ("ttft{turn=1.p95<1s", "unclosed '{'"),
        ("ttft}.p95<1s", "'}' without '{'"),
        ("ttft.p95{turn=1}<1s", "misplaced scope"),
        ("ttft<1s", "missing statistic"),
        ("ttft.<1s", "missing statistic after '.'"),
        ("ttft.p95<1min", "unknown unit 'min': use us, ms or s"),
        ("ttft.p95<-5ms", "'-5ms' is not a number with a unit"),
        ("ttft.p95<", "missing limit after the operator"),
        ("error_rate<", "missing limit after the operator"),
        ("error_rate<few", "'few' is not a fraction (0.01) or a percentage (1%)"),
        ("error_rate.p95<1%", "error_rate takes no statistic"),
        ("<1s", "missing metric before the operator"),
        ("", "empty threshold"),
        ("   ", "empty threshold"),
    ],
)
def test_parse_malformed_raises_one_line_naming_the_problem(expr: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(expr)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"--threshold '{expr.strip()}': ")
    assert problem in message


def test_error_message_stays_one_line_when_the_expression_has_a_newline() -> None:
    with pytest.raises(ConfigError) as info:
        parse("ttft.p95<\n800xs")
    assert "\n" not in str(info.value)
    assert "ttft.p95<\\n800xs" in str(info.value)


def test_parse_all_splits_on_semicolons_and_skips_empty_items() -> None:
    ths = parse_all(["ttft.p95<800ms; error_rate<1%;", "", " ; ", "turn.p99<3s"])
    assert [t.expr for t in ths] == ["ttft.p95<800ms", "error_rate<1%", "turn.p99<3s"]
    assert parse_all([]) == []


def test_parse_all_raises_on_the_bad_item() -> None:
    with pytest.raises(ConfigError, match="'ttft.p97<1s'"):
        parse_all(["ttft.p95<1s;ttft.p97<1s"])


def _stats(**values: float | None) -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(("min", "mean", "p50", "p90", "p95", "p99", "p999", "max"))
    out.update(values)
    out["count"] = 0 if all(v is None for v in values.values()) else 10
    return out


SUMMARY: dict[str, Any] = {
    "schema": "loadtest.summary/1",
    "metrics": {
        "ttft_ms": _stats(
            min=120.0, mean=300.0, p50=290.0, p90=420.0, p95=506.4, p99=617.5, p999=681.0, max=681.0
        ),
        "turn_ms": _stats(p50=900.0, p99=2400.0, max=3100.0),
        "itl_ms": _stats(),
        "conversation_ms": _stats(p90=12_000.0),
    },
    "counts": {
        "turns": 110,
        "turns_ok": 97,
        "turns_failed": 3,
        "turns_cut": 10,
        "conversations_started": 30,
        "conversations_completed": 24,
        "conversations_failed": 1,
    },
    "by_turn": {
        "1": {
            "ttft_ms": _stats(p95=450.0),
            "turn_ms": _stats(p95=800.0),
            "counts": {"turns": 50, "turns_ok": 50, "turns_failed": 0, "turns_cut": 0},
        },
        "2": {
            "ttft_ms": _stats(),
            "turn_ms": _stats(),
            "counts": {"turns": 0, "turns_ok": 0, "turns_failed": 0, "turns_cut": 0},
        },
    },
    "by_scenario": {
        "booking": {
            "ttft_ms": _stats(p95=700.0),
            "turn_ms": _stats(p99=2600.0),
            "conversation_ms": _stats(max=20_000.0),
            "counts": {
                "turns": 40,
                "turns_ok": 36,
                "turns_failed": 2,
                "turns_cut": 2,
                "conversations_started": 10,
                "conversations_completed": 7,
                "conversations_failed": 1,
            },
        },
    },
}


@pytest.mark.parametrize(
    ("expr", "observed", "passed"),
    [
        ("ttft.p95<800ms", 506.4, True),
        ("ttft.p95<0.5s", 506.4, False),
        ("ttft.p95<=506.4", 506.4, True),
        ("ttft.p95<506.4", 506.4, False),
        ("ttft.p95>=506.4ms", 506.4, True),
        ("ttft.p95>506.4ms", 506.4, False),
        ("ttft.p95>506400us", 506.4, False),
        ("ttft.p95>506399us", 506.4, True),
        ("ttft.min>100ms", 120.0, True),
        ("ttft.avg<=300", 300.0, True),
        ("ttft.p99.9<681ms", 681.0, False),
        ("turn.p99<=2.4s", 2400.0, True),
        ("turn.max<3s", 3100.0, False),
        ("itl.p50<50ms", None, False),
        ("conversation.p90<15s", 12_000.0, True),
        ("ttft{turn=1}.p95<500ms", 450.0, True),
        ("turn{turn=1}.p95<0.5s", 800.0, False),
        ("ttft{turn=2}.p95<500ms", None, False),
        ("ttft{turn=9}.p95<500ms", None, False),
        ("ttft{scenario=booking}.p95<500ms", 700.0, False),
        ("turn{scenario=booking}.p99 < 2.5s", 2600.0, False),
        ("conversation{scenario=booking}.max<30s", 20_000.0, True),
        ("ttft{scenario=nope}.p95<500ms", None, False),
        ("error_rate<5%", 0.03, True),
        ("error_rate<3%", 0.03, False),
        ("error_rate<=0.03", 0.03, True),
        ("conversation_success>=96%", 0.96, True),
        ("conversation_success>96%", 0.96, False),
        ("error_rate{turn=1}<=0%", 0.0, True),
        ("error_rate{turn=2}<1%", None, False),
        ("error_rate{scenario=booking}<1%", 2 / 38, False),
        ("conversation_success{scenario=booking}>=0.875", 0.875, True),
        ("conversation_success{scenario=nope}>=0.5", None, False),
    ],
)
def test_evaluate_against_a_summary(expr: str, observed: float | None, passed: bool) -> None:
    (outcome,) = evaluate([parse(expr)], SUMMARY)
    assert outcome.expr == expr
    assert outcome.passed is passed
    if observed is None:
        assert outcome.observed is None
    else:
        assert outcome.observed == pytest.approx(observed)
    assert outcome.to_json() == {
        "expr": expr,
        "observed": outcome.observed,
        "passed": passed,
        "unit": "ratio" if expr.startswith(("error_rate", "conversation_success")) else "ms",
    }


def test_rates_without_a_denominator_or_without_counts_have_no_data() -> None:
    empty = {
        "counts": {"turns_ok": 0, "turns_failed": 0, "conversations_completed": 0, "conversations_failed": 0}
    }
    assert observe(parse("error_rate<1%"), empty) is None
    assert observe(parse("conversation_success>90%"), empty) is None
    # Older summaries have no conversations_failed: no data rather than a made-up 100%.
    old = {"counts": {"turns_ok": 5, "turns_failed": 0, "conversations_completed": 3}}
    assert observe(parse("conversation_success>90%"), old) is None
    assert observe(parse("error_rate<1%"), old) == 0.0
    assert observe(parse("error_rate{turn=1}<1%"), {"counts": {}}) is None
    assert observe(parse("ttft.p95<1s"), {}) is None


def test_check_with_no_data_fails_for_every_operator() -> None:
    for op in ("<", "<=", ">", ">="):
        assert parse(f"ttft.p95{op}1s").check(None) is False


def test_threshold_and_outcome_are_frozen() -> None:
    th = parse("ttft.p95<1s")
    with pytest.raises(AttributeError):
        th.limit = 2.0  # type: ignore[misc]
    assert isinstance(th, Threshold)
    with pytest.raises(AttributeError):
        Outcome("x", 1.0, True).passed = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("passed", "expected"),
    [([], "pass"), ([True], "pass"), ([True, True], "pass"), ([True, False], "fail"), ([False], "fail")],
)
def test_verdict(passed: list[bool], expected: str) -> None:
    assert verdict([Outcome(f"t{i}", 1.0, p) for i, p in enumerate(passed)]) == expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("turn.max<3s", False),  # max already exceeded: it only grows
        ("turn.max<=3.1s", True),
        ("ttft.min>150ms", False),  # min already undercut: it only shrinks
        ("ttft.min>=120ms", True),
        ("ttft.p95<800ms", True),
        ("ttft.p95<500ms", False),  # failing now: --threshold-abort stops at the first breach
        ("itl.p50<50ms", True),  # no data yet
        ("error_rate{turn=2}<1%", True),
        ("error_rate<1%", False),
        ("conversation_success>=97%", False),
    ],
)
def test_can_still_pass(expr: str, expected: bool) -> None:
    (outcome,) = evaluate([parse(expr)], SUMMARY)
    assert can_still_pass(outcome) is expected


@pytest.mark.parametrize(
    ("observed", "unit", "text"),
    [
        (912.34, "ms", "912.3 ms"),
        (1500.0, "ms", "1,500.0 ms"),
        (0.0512, "ms", "0.0512 ms"),
        (0.0152, "ratio", "1.52%"),
        (None, "ms", "no data"),
        (42.123, "tokens/s", "42.1 tokens/s"),
    ],
)
def test_format_observed(observed: float | None, unit: str, text: str) -> None:
    assert format_observed(observed, unit) == text


@pytest.mark.parametrize("expr", ["itl{turn=1}.p50<50ms", "itl{scenario=booking}.p99<50ms"])
def test_itl_has_no_scoped_breakdown(expr: str) -> None:
    with pytest.raises(ConfigError, match="itl has no per-turn or per-scenario breakdown"):
        parse(expr)


# --- every metric, statistic and scope of the registry, and only those -------------------------------


def _registry_summary() -> dict[str, Any]:
    """Distinct figures for every statistic of every metric, overall and per turn 1 and scenario s."""

    def stats(base: float) -> dict[str, Any]:
        return {"count": 3, **{st.key: base + i for i, st in enumerate(catalog.STATS)}}

    def entry(scope: str, base: float) -> dict[str, Any]:
        kept = {
            m.summary_key: stats(base + 100 * i) for i, m in enumerate(catalog.METRICS) if scope in m.scopes
        }
        return {**kept, "counts": {c.key: 1 + i for i, c in enumerate(catalog.COUNTERS) if scope in c.scopes}}

    return {
        "metrics": {m.summary_key: stats(1000.0 * (i + 1)) for i, m in enumerate(catalog.METRICS)},
        "counts": {c.key: 1 + i for i, c in enumerate(catalog.COUNTERS)},
        "by_turn": {"1": entry(catalog.TURN, 10_000.0)},
        "by_scenario": {"s": entry(catalog.SCENARIO, 20_000.0)},
    }


@pytest.mark.parametrize("metric", catalog.THRESHOLD_METRICS, ids=lambda m: m.key)
def test_each_threshold_metric_takes_each_statistic_overall_and_in_its_scopes(metric: catalog.Metric) -> None:
    summary = _registry_summary()
    limit = "1ms" if metric.unit == catalog.MS else "1"
    for stat in catalog.STATS:
        for written in {stat.key, stat.label}:
            th = parse(f"{metric.key}.{written}<{limit}")
            assert (th.metric, th.stat, th.scope) == (metric.key, stat.key, None)
            assert observe(th, summary) == summary["metrics"][metric.summary_key][stat.key]
        for scope, value, table in ((catalog.TURN, "1", "by_turn"), (catalog.SCENARIO, "s", "by_scenario")):
            expr = f"{metric.key}{{{scope}={value}}}.{stat.label}<{limit}"
            if scope in metric.scopes:
                assert observe(parse(expr), summary) == summary[table][value][metric.summary_key][stat.key]
            else:
                with pytest.raises(ConfigError, match=f"{metric.key} has no per-"):
                    parse(expr)


@pytest.mark.parametrize(
    ("expr", "stat", "limit"),
    [
        ("output_tps.p50>20", "p50", 20.0),
        ("output_tps.p50 > 20 tokens/s", "p50", 20.0),
        ("output_tps.min>=0.5", "min", 0.5),
    ],
)
def test_a_metric_in_tokens_per_second_takes_a_bare_number(expr: str, stat: str, limit: float) -> None:
    th = parse(expr)
    assert (th.metric, th.stat, th.limit) == ("output_tps", stat, limit)
    summary = {"metrics": {"output_tps": {"p50": 42.5, "min": 0.75}}}
    (outcome,) = evaluate([th], summary)
    assert outcome.passed and outcome.to_json()["unit"] == "tokens/s"
    assert format_observed(outcome.observed, outcome.unit) == (
        "42.5 tokens/s" if th.stat == "p50" else "0.75 tokens/s"
    )


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        (
            "output_tps.p50>20ms",
            "output_tps is in tokens/s, not 'ms': write a bare number, as in output_tps.p50>20",
        ),
        ("output_tps.p50>20%", "output_tps is in tokens/s, not '%'"),
        ("output_tps.p50>", "missing limit after the operator: write a number of tokens/s"),
        ("output_tps.p50>fast", "'fast' is not a number of tokens/s"),
    ],
)
def test_a_metric_in_tokens_per_second_refuses_a_time(expr: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(expr)
    assert problem in str(info.value) and "\n" not in str(info.value)


def test_every_metric_unit_has_an_outcome_unit() -> None:
    for metric in catalog.THRESHOLD_METRICS:
        th = parse(f"{metric.key}.p50<1" + ("ms" if metric.unit == catalog.MS else ""))
        assert unit_of(th) == metric.unit


@pytest.mark.parametrize("rate", RATES, ids=lambda r: r.key)
def test_each_rate_reads_its_counters_overall_and_in_the_scopes_both_are_kept_for(rate: Any) -> None:
    summary = _registry_summary()
    th = parse(f"{rate.key}<50%")
    assert th.is_rate and observe(th, summary) == rate.of(summary["counts"])
    part, whole = summary["counts"][rate.part], sum(summary["counts"][key] for key in rate.whole)
    assert observe(th, summary) == pytest.approx(part / whole)
    for scope, value, table in ((catalog.TURN, "1", "by_turn"), (catalog.SCENARIO, "s", "by_scenario")):
        kept = {c.key for c in catalog.COUNTERS if scope in c.scopes}
        expr = f"{rate.key}{{{scope}={value}}}<50%"
        if set(rate.counters) <= kept:
            assert observe(parse(expr), summary) == rate.of(summary[table][value]["counts"])
        else:
            with pytest.raises(ConfigError, match=f"{rate.key} has no per-{scope} scope"):
                parse(expr)


def test_metrics_without_thresholds_are_refused_and_the_help_lists_every_metric_and_statistic() -> None:
    for metric in (m for m in catalog.METRICS if not m.threshold):
        with pytest.raises(ConfigError, match=f"unknown metric '{metric.key}'"):
            parse(f"{metric.key}.p95<1s")
    with pytest.raises(ConfigError) as metric_error:
        parse("nope.p95<1s")
    for key in [m.key for m in catalog.THRESHOLD_METRICS] + [r.key for r in RATES]:
        assert key in str(metric_error.value)
    with pytest.raises(ConfigError) as stat_error:
        parse("ttft.p42<1s")
    assert all(s.label in str(stat_error.value) for s in catalog.STATS)


# --- quoted scenario names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "name"),
    [
        ('ttft{scenario="order status, v2"}.p95<1s', "order status, v2"),
        ('ttft{scenario="a{b}c"}.p95<1s', "a{b}c"),
        ('ttft{scenario="x<=y>z=w"}.p95<1s', "x<=y>z=w"),
        ('ttft{scenario="one; two"}.p95<1s', "one; two"),
        ('ttft{scenario="v1.2 (beta)"}.p95<1s', "v1.2 (beta)"),
        ('ttft{scenario="say \\"hi\\""}.p95<1s', 'say "hi"'),
        ('ttft{scenario="C:\\\\temp"}.p95<1s', "C:\\temp"),
        ('ttft{scenario="  padded  "}.p95<1s', "  padded  "),
        ('ttft{ scenario = "booking" }.p95<1s', "booking"),
        ('ttft{scenario="café ☕"}.p95<1s', "café ☕"),
    ],
)
def test_a_quoted_scenario_name_holds_any_character(expr: str, name: str) -> None:
    th = parse(expr)
    assert th.scope == ("scenario", name) and th.stat == "p95" and th.limit == 1000.0
    assert th.expr == expr


def test_a_quoted_name_reads_its_scenario_and_rates_take_it_too() -> None:
    entry = SUMMARY["by_scenario"]["booking"]
    summary = {**SUMMARY, "by_scenario": {"order status, v2": entry}}
    assert observe(parse('ttft{scenario="order status, v2"}.p95<1s'), summary) == 700.0
    rate = parse('error_rate{scenario="order status, v2"}<1%')
    assert rate.is_rate and observe(rate, summary) == pytest.approx(2 / 38)


def test_a_quoted_turn_is_still_a_turn_number() -> None:
    assert parse('ttft{turn="2"}.p95<1s').scope == ("turn", "2")


def test_an_unknown_escape_is_one_line_naming_the_two_escapes() -> None:
    with pytest.raises(ConfigError) as info:
        parse('ttft{scenario="a\\n"}.p95<1s')
    assert str(info.value).endswith(
        "unknown escape '\\n' in a quoted name: write \\\" for '\"' and \\\\ for '\\'"
    )


def test_a_locust_conf_list_split_inside_a_quoted_name_names_the_fix() -> None:
    # configargparse splits `threshold = [a, b]` at every comma, quotes or not.
    with pytest.raises(ConfigError, match=r"""unclosed '"'.*write a JSON list \["\.\.\."\]"""):
        parse_all(['ttft{scenario="order status', 'v2"}.p95<1s'])


@pytest.mark.parametrize(
    ("item", "parts"),
    [
        ("ttft.p95<1s;error_rate<1%", ["ttft.p95<1s", "error_rate<1%"]),
        ('ttft{scenario="a; b"}.p95<1s; error_rate<1%', ['ttft{scenario="a; b"}.p95<1s', " error_rate<1%"]),
        ('ttft{scenario="a\\";"}.p95<1s;x', ['ttft{scenario="a\\";"}.p95<1s', "x"]),
        ('"a;b"', ['"a', 'b"']),  # quotes count only inside a scope
        ("  ; ;", []),
        ("", []),
    ],
)
def test_split_keeps_a_semicolon_inside_a_quoted_name(item: str, parts: list[str]) -> None:
    assert split(item) == parts


def test_parse_all_keeps_quoted_names_whole() -> None:
    ths = parse_all(['ttft{scenario="a; b, c"}.p95<1s; error_rate{scenario="x;y"}<1%'])
    assert [t.scope for t in ths] == [("scenario", "a; b, c"), ("scenario", "x;y")]


@pytest.mark.parametrize(
    ("name", "written"),
    [("booking", "booking"), ("a.b-c_1", "a.b-c_1"), ("a b", '"a b"'), ('say "hi"', '"say \\"hi\\""')],
)
def test_quote_name_leaves_plain_names_bare(name: str, written: str) -> None:
    assert quote_name(name) == written
    assert scope_text(("scenario", name)) == f"{{scenario={written}}}"
    assert scope_text(("turn", "3")) == "{turn=3}"


@given(st.text(min_size=1).filter(lambda name: name.strip() != ""))
def test_any_scenario_name_survives_scope_text_and_parse(name: str) -> None:
    for metric in ("ttft{scope}.p95<1s", "error_rate{scope}<1%"):
        th = parse(metric.replace("{scope}", scope_text(("scenario", name))))
        assert th.scope == ("scenario", name)
        # and several of them, `;`-separated in one value
        assert [t.scope for t in parse_all([f"{th.expr};{th.expr}"])] == [("scenario", name)] * 2


# --- scopes checked against the conversations file -----------------------------------------------------


def _scenario(name: str, *lengths: int) -> Scenario:
    """A scenario of one script per length (several: transcripts), each of that many turns."""
    scripts = tuple(tuple(Turn.literal(f"t{i}") for i in range(n)) for n in lengths)
    return Scenario(name, scripts)


SCENARIOS = (_scenario("booking", 3), _scenario("order status, v2", 2), _scenario("replay", 1, 6, 2))


def _scope_error(expr: str, scenarios: tuple[Scenario, ...] = SCENARIOS) -> str:
    with pytest.raises(ConfigError) as info:
        check_scopes([parse(expr)], scenarios, "conv.yaml")
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"--threshold '{expr}': ")
    return message


@pytest.mark.parametrize(
    "expr",
    [
        "ttft.p95<1s",
        "error_rate<1%",
        "ttft{scenario=booking}.p95<1s",
        'turn{scenario="order status, v2"}.p99<1s',
        'error_rate{scenario="booking"}<1%',
        "ttft{turn=1}.p95<1s",
        "ttft{turn=6}.p95<1s",  # the longest transcript of replay
    ],
)
def test_scopes_the_file_can_fill_pass(expr: str) -> None:
    check_scopes([parse(expr)], SCENARIOS, "conv.yaml")


def test_an_unknown_scenario_is_named_with_the_known_ones() -> None:
    message = _scope_error("ttft{scenario=nope}.p95<1s")
    assert message.endswith(": conv.yaml has no scenario 'nope': use booking, \"order status, v2\" or replay")


def test_an_unknown_quoted_scenario_lists_the_closest_first() -> None:
    message = _scope_error('ttft{scenario="order status, v3"}.p95<1s')
    assert message.endswith("has no scenario 'order status, v3': use \"order status, v2\", booking or replay")


def test_many_scenarios_are_shortened() -> None:
    many = tuple(_scenario(f"s{i:02}", 1) for i in range(30))
    message = _scope_error("ttft{scenario=s5}.p95<1s", many)
    # the three closest first, then the file's order up to eight names
    assert message.endswith(": use s25, s15, s05, s00, s01, s02, s03, s04 or one of 22 more")


def test_a_scenario_name_with_a_line_break_stays_on_one_line() -> None:
    message = _scope_error("ttft{scenario=x}.p95<1s", (_scenario("two\nlines", 1),))
    assert message.endswith('use "two\\nlines"')


@pytest.mark.parametrize(
    ("expr", "end"),
    [
        (
            "ttft{turn=7}.p95<1s",
            "no scenario in conv.yaml has a turn 7, the longest has 6: use {turn=1} to {turn=6}",
        ),
        ("error_rate{turn=99}<1%", "has a turn 99, the longest has 6: use {turn=1} to {turn=6}"),
    ],
)
def test_a_turn_beyond_the_longest_scenario_is_refused(expr: str, end: str) -> None:
    assert _scope_error(expr).endswith(end)


def test_one_turn_scenarios_name_the_only_turn() -> None:
    assert _scope_error("ttft{turn=2}.p95<1s", (_scenario("a", 1),)).endswith(
        "the longest has 1: use {turn=1}"
    )


def test_without_scenarios_nothing_is_refused_for_a_turn() -> None:
    # Nothing known about the turns: a turn scope cannot be judged, so it is let through.
    check_scopes([parse("ttft{turn=40}.p95<1s")], (), "conv.yaml")


def test_the_first_bad_scope_is_reported() -> None:
    ths = [parse("ttft{turn=1}.p95<1s"), parse("ttft{turn=9}.p95<1s"), parse("ttft{scenario=x}.p95<1s")]
    with pytest.raises(ConfigError, match=r"ttft\{turn=9\}"):
        check_scopes(ths, SCENARIOS, "conv.yaml")


# --- live evaluation (--threshold-abort) against the summary ------------------------------------------

# Scenarios of 1 to 4 turns; one name only a quoted scope can write.
LIVE_SCENARIOS = {"booking": 4, "order status, v2": 2, "faq": 1}
MS_NS = 1_000_000


def _random_metrics(rng: random.Random) -> Metrics:
    """Turns and conversations as the recorder counts and times them, with random timings; each
    optional metric recorded or not, and a scenario or turn the run never reached."""
    m = Metrics()
    optional = {key: rng.random() < 0.6 for key in ("dns", "connect", "tls", "ttfr", "tpot", "output_tps")}
    interval = interval_of(1_764_547_200)
    played = rng.sample(sorted(LIVE_SCENARIOS), rng.randint(1, len(LIVE_SCENARIOS)))
    for _ in range(rng.randint(20, 150)):
        scenario = rng.choice(played)
        scope_s = (f"scenario={scenario}",)
        m.count_scoped("conversations_started", scope_s)
        all_good = True
        for turn in range(1, rng.randint(1, LIVE_SCENARIOS[scenario]) + 1):
            scopes = (f"turn={turn}", *scope_s)
            m.count_scoped("turns", scopes)
            outcome = rng.choices(("ok", "failed", "cut"), (0.85, 0.1, 0.05))[0]
            m.count_scoped(f"turns_{outcome}", scopes)
            if outcome == "failed":
                m.count_error("http_500", scopes)
            if outcome != "ok":
                all_good = False
                continue
            if rng.random() < 0.7:
                m.count_scoped("turns_good", scopes)
            else:
                all_good = False
            ttft = int(rng.lognormvariate(0, 0.6) * 300 * MS_NS)
            m.record_scoped("ttft", ttft, scopes, interval)
            m.record_scoped("turn", ttft + rng.randint(0, 3000) * MS_NS, scopes, interval)
            m.hist("ttfb").record_ns(ttft // 2)
            for _ in range(rng.randint(0, 5)):
                m.itl.record_ns(rng.randint(1, 80) * MS_NS)
            for key, recorded in optional.items():
                if recorded and rng.random() < 0.5:
                    # output_tps in milli-tokens per second, the others in ns
                    m.hist(key).record_ns(
                        rng.randint(1, 200_000) * 1000 if key == "output_tps" else ttft // 7
                    )
        ended = rng.choice(("completed", "failed", "abandoned"))
        m.count_scoped(f"conversations_{ended}", scope_s)
        if ended == "completed":
            m.record_scoped("conversation", rng.randint(1, 60_000) * MS_NS, scope_s)
            if all_good:
                m.count_scoped("conversations_good", scope_s)
    if rng.random() < 0.5:
        # As on a master: what the workers drained, merged.
        merged = Metrics()
        merged.merge_data(m.to_data())
        return merged
    return m


def _every_threshold() -> list[Threshold]:
    """Every metric with every statistic, and every rate, over the whole run and in every scope it
    takes: each scenario, turns 1 to 4, and a scenario and a turn no run has."""
    values = {
        catalog.TURN: ["1", "2", "3", "4", "7"],
        catalog.SCENARIO: [*LIVE_SCENARIOS, "nowhere"],
    }
    out = []
    for metric in METRICS:
        where_all: list[tuple[str, str] | None] = [None]
        where_all += [(key, value) for key in scopes(metric) for value in values[key]]
        for scope in where_all:
            where = scope_text(scope) if scope else ""
            if metric in RATE_METRICS:
                out.append(parse(f"{metric}{where}<0.5"))
            else:
                out += [parse(f"{metric}{where}.{s.label}<1") for s in catalog.STATS]
    return out


def _against(ths: list[Threshold], summary: dict[str, Any], rng: random.Random) -> list[Threshold]:
    """Each threshold with a random operator and a limit at, just under or just over what the summary
    holds: a value read any differently would give another outcome."""
    out = []
    for th, outcome in zip(ths, evaluate(ths, summary), strict=True):
        observed = outcome.observed if outcome.observed is not None else rng.random()
        limit = rng.choice((observed, observed * (1 - 1e-9), observed * (1 + 1e-9), observed + 0.001))
        out.append(dataclasses.replace(th, op=rng.choice(sorted(OPS)), limit=limit))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_live_outcomes_are_the_summary_outcomes(seed: int) -> None:
    rng = random.Random(seed)
    metrics = _random_metrics(rng)
    kept = set(metrics.histograms)
    rules = _every_threshold()
    live_first = evaluate_live(rules, metrics)
    assert set(metrics.histograms) == kept  # reading added no empty histogram to the run's data
    summary = dict(build_summary(metrics, {}))
    rules = _against(rules, summary, rng)
    live = evaluate_live(rules, metrics)
    assert live == evaluate(rules, summary)
    assert [o.observed for o in live] == [o.observed for o in live_first]
    assert [can_still_pass(o) for o in live] == [can_still_pass(o) for o in evaluate(rules, summary)]
    # Every kind was read: latency and rates with data, a scope with none.
    observed = {(th.is_rate, o.observed is None) for th, o in zip(rules, live, strict=True)}
    assert {(False, False), (True, False), (False, True)} <= observed


def test_live_values_are_read_from_the_named_histogram_and_counters() -> None:
    m = Metrics()
    for ms in (100, 200, 300, 400):
        m.record_scoped("ttft", ms * MS_NS, ("turn=1", "scenario=booking"))
    m.record_scoped("ttft", 900 * MS_NS, ("turn=2", "scenario=booking"))
    m.count_scoped("turns_ok", ("turn=1", "scenario=booking"), 3)
    m.count_scoped("turns_failed", ("turn=2", "scenario=booking"))
    m.count_scoped("turns_good", ("turn=1", "scenario=booking"), 2)
    exprs = [
        "ttft{turn=1}.max<1s",
        "ttft{turn=2}.min<1s",
        "ttft.p50<1s",
        "error_rate{turn=2}<1%",
        "error_rate<1%",
        "goodput{scenario=booking}>90%",
        "turn.p95<1s",
        "error_rate{scenario=faq}<1%",
    ]
    *seen, no_samples, no_scenario = (o.observed for o in evaluate_live(parse_all(exprs), m))
    assert seen == pytest.approx([400.0, 900.0, 300.0, 1.0, 0.25, 0.5], rel=1e-3)
    assert no_samples is None and no_scenario is None
