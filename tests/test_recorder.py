"""What one turn and one conversation add to the metrics, under the registry's names."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import orjson
import pytest

from loadtest import catalog
from loadtest.catalog import Failure
from loadtest.client import TurnResult
from loadtest.metrics import EXAMPLE_CHARS, Metrics
from loadtest.phases import Connection
from loadtest.recorder import TURN_LOG_REPLY_CHARS, TurnRecorder
from loadtest.report import build_summary

MS = 1_000_000


def ok_turn(start_ns: int = 0, ttft_ms: int = 40, end_ms: int = 100) -> TurnResult:
    return TurnResult(
        ok=True,
        kind=None,
        detail="",
        status=200,
        t_start_ns=start_ns,
        t_end_ns=start_ns + end_ms * MS,
        t_first_content_ns=start_ns + ttft_ms * MS,
        t_last_event_ns=start_ns + end_ms * MS,
        content="héllo",
        chunks=3,
        itl_ns=(20 * MS, 30 * MS),
        protocol={"no_done": 1},
        system_fingerprint="fp-1",
    )


def failed_turn(kind: str, start_ns: int = 0) -> TurnResult:
    return TurnResult(
        ok=False,
        kind=kind,
        detail=f"{kind} happened",
        status=None,
        t_start_ns=start_ns,
        t_end_ns=start_ns + MS,
    )


def test_a_good_turn_is_counted_and_timed_by_turn_and_scenario() -> None:
    recorder = TurnRecorder()
    recorder.turn(ok_turn(), "booking", 2, "c1", intended_ns=0)
    m = recorder.metrics
    assert m.counts["turns"] == m.counts["turns_ok"] == 1
    assert m.counts["turns{turn=2}"] == m.counts["turns_ok{scenario=booking}"] == 1
    assert m.counts["chunks"] == 3 and m.counts["chars"] == 5
    assert m.hist("ttft").value_at_percentile_us(50) == pytest.approx(40_000, rel=1e-3)
    assert m.hist("turn{scenario=booking}").count == 1 and m.hist("ttft{turn=2}").count == 1
    assert m.itl.count == 2
    assert m.protocol["no_done"] == 1 and m.fingerprints == {"fp-1"}


def test_lateness_goes_into_the_response_time_and_the_late_count() -> None:
    recorder = TurnRecorder()
    recorder.turn(ok_turn(start_ns=50 * MS), "s", 1, "c1", intended_ns=0)
    m = recorder.metrics
    assert m.counts["turns_late"] == 1
    assert m.hist("turn").value_at_percentile_us(50) == pytest.approx(100_000, rel=1e-3)
    assert m.hist("turn_response").value_at_percentile_us(50) == pytest.approx(150_000, rel=1e-3)
    assert m.hist("ttft_response").value_at_percentile_us(50) == pytest.approx(90_000, rel=1e-3)


def test_failures_are_counted_by_kind_and_a_cut_turn_is_not_a_failure() -> None:
    recorder = TurnRecorder()
    recorder.turn(failed_turn(Failure.IDLE_TIMEOUT), "faq", 1, "c1", intended_ns=0)
    recorder.turn(failed_turn("http_503"), "faq", 1, "c2", intended_ns=0)
    recorder.turn(failed_turn(Failure.CUT), "faq", 2, "c3", intended_ns=0)
    summary = build_summary(recorder.metrics, {"id": "r"})
    counts = summary["counts"]
    assert (counts["turns"], counts["turns_failed"], counts["turns_cut"], counts["turns_ok"]) == (3, 2, 1, 0)
    assert summary["metrics"]["turn_ms"]["count"] == 0  # failures are not timed
    # A cut turn is not an error of the endpoint: counted as cut (in its scopes too), never listed.
    assert {e["kind"] for e in summary["errors"]} == {"idle_timeout", "http_503"}
    assert summary["by_scenario"]["faq"]["errors"] == {"http_503": 1, "idle_timeout": 1}
    assert summary["by_scenario"]["faq"]["counts"]["turns_cut"] == 1
    assert summary["by_turn"]["2"]["counts"]["turns_cut"] == 1
    assert summary["by_turn"]["2"]["counts"]["turns_failed"] == 0


def test_a_run_whose_only_unfinished_turns_were_cut_lists_no_error() -> None:
    recorder = TurnRecorder()
    recorder.turn(ok_turn(), "faq", 1, "c1", intended_ns=0)
    recorder.turn(failed_turn(Failure.CUT), "faq", 2, "c1", intended_ns=0)
    summary = build_summary(recorder.metrics, {"id": "r"})
    assert summary["errors"] == [] and recorder.metrics.errors == {}
    assert summary["by_scenario"]["faq"]["errors"] == {}
    assert summary["counts"]["turns_cut"] == summary["by_scenario"]["faq"]["counts"]["turns_cut"] == 1


def test_a_long_failure_detail_is_kept_cut_with_an_ellipsis() -> None:
    recorder = TurnRecorder()
    long = dataclasses.replace(failed_turn("http_500"), detail="HTTP 500: " + "z" * 5_000)
    recorder.turn(long, "s", 1, "c", intended_ns=0)
    [error] = build_summary(recorder.metrics, {"id": "r"})["errors"]
    assert error["example"].startswith("HTTP 500: zzz") and error["example"].endswith("z…")
    assert len(error["example"]) == EXAMPLE_CHARS


def test_conversations_are_counted_by_outcome_and_only_completed_ones_timed() -> None:
    recorder = TurnRecorder()
    for outcome in ("completed", "failed", "abandoned"):
        recorder.conversation_started("s")
        recorder.conversation_ended("s", outcome, 2_000 * MS)
    counts = build_summary(recorder.metrics, {"id": "r"})["counts"]
    assert counts["conversations_started"] == 3
    assert counts["conversations_completed"] == counts["conversations_failed"] == 1
    assert counts["conversations_abandoned"] == 1
    assert recorder.metrics.hist("conversation").count == 1


def test_every_counter_the_recorder_writes_is_in_the_summary() -> None:
    recorder = TurnRecorder()
    recorder.conversation_started("s")
    recorder.turn(ok_turn(start_ns=50 * MS), "s", 1, "c", intended_ns=0)
    recorder.turn(failed_turn("bad_json"), "s", 1, "c", intended_ns=0)
    recorder.turn(failed_turn(Failure.CUT), "s", 1, "c", intended_ns=0)
    recorder.conversation_ended("s", "completed", MS)
    for name in ("arrivals", "arrivals_late", "arrivals_dropped", "arrivals_cut"):
        recorder.count(name)
    plain = {k for k in recorder.metrics.counts if "{" not in k and "@" not in k}
    summary_counts = build_summary(recorder.metrics, {"id": "r"})["counts"]
    assert plain <= set(summary_counts)
    assert all(summary_counts[k] == recorder.metrics.counts[k] for k in plain)


def test_a_counter_missing_from_the_registry_is_an_error() -> None:
    metrics = Metrics()
    with pytest.raises(KeyError, match="catalog.COUNTERS"):
        metrics.count("turns_retried")
    with pytest.raises(KeyError):
        metrics.count_scoped("turns_retried", ("turn=1",))
    with pytest.raises(KeyError):
        metrics.count_at("turns_retried", 0)
    assert "turns_retried" not in catalog.COUNTER_KEYS


def test_reset_starts_afresh_and_stop_recording_ignores_later_turns() -> None:
    recorder = TurnRecorder()
    recorder.turn(ok_turn(), "s", 1, "c", intended_ns=0)
    recorder.reset()
    assert recorder.metrics.counts["turns"] == 0
    recorder.stop_recording()
    recorder.turn(ok_turn(), "s", 1, "c", intended_ns=0)
    assert recorder.metrics.counts["turns"] == 0
    recorder.reset()
    recorder.turn(ok_turn(), "s", 1, "c", intended_ns=0)
    assert recorder.metrics.counts["turns"] == 1


def test_the_turn_log_has_one_line_per_turn(tmp_path: Path) -> None:
    recorder = TurnRecorder()
    recorder.open_turn_log(tmp_path / "run")
    recorder.turn(ok_turn(start_ns=20 * MS), "s", 1, "c1", intended_ns=0)
    recorder.turn(failed_turn("http_500"), "s", 2, "c1", intended_ns=0)
    recorder.close_turn_log()
    [path] = (tmp_path / "run").glob("turns-*.jsonl")
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [(x["turn"], x["ok"], x["kind"]) for x in lines] == [(1, True, None), (2, False, "http_500")]
    assert lines[0]["ttft_us"] == 40_000 and lines[0]["late_us"] == 20_000
    assert lines[1]["reason"] == "http_500 happened" and lines[0]["reason"] is None
    assert lines[0]["reply"] == "héllo" and lines[0]["transcript"] is None


def test_the_turn_log_says_when_which_transcript_and_what_came(tmp_path: Path) -> None:
    recorder = TurnRecorder()
    recorder.open_turn_log(tmp_path / "run")
    before = time.time()
    long_reply = dataclasses.replace(ok_turn(start_ns=time.perf_counter_ns()), content="word " * 100)
    recorder.turn(long_reply, "replay", 1, "c1", intended_ns=0, transcript=7)
    recorder.close_turn_log()
    [line] = [
        orjson.loads(x) for x in next((tmp_path / "run").glob("turns-*.jsonl")).read_bytes().splitlines()
    ]
    assert before - 1 <= line["started"] <= time.time()
    assert line["transcript"] == 7
    assert len(line["reply"]) == TURN_LOG_REPLY_CHARS and line["reply"].endswith("…")


def test_a_reply_that_failed_a_check_is_timed_and_its_example_kept_per_scenario_and_turn() -> None:
    recorder = TurnRecorder()
    checked = dataclasses.replace(
        ok_turn(), ok=False, kind=Failure.ASSERTION, detail="reply does not match /^\\d+$/"
    )
    recorder.turn(checked, "order", 2, "c1", intended_ns=0)
    recorder.turn(failed_turn("http_500"), "order", 1, "c2", intended_ns=0)
    m = recorder.metrics
    # The server answered in time: its latency counts; the HTTP failure's does not.
    assert m.hist("ttft").count == m.hist("turn{scenario=order}").count == m.hist("ttft{turn=2}").count == 1
    assert m.counts["turns_failed"] == 2 and m.counts["turns_ok"] == 0
    summary = build_summary(m, {})
    order = summary["by_scenario"]["order"]
    assert order["errors"] == {"assertion": 1, "http_500": 1}
    assert order["examples"]["assertion"] == "reply does not match /^\\d+$/"
    assert summary["by_turn"]["2"]["errors"] == {"assertion": 1}
    assert summary["by_turn"]["1"]["examples"] == {"http_500": "http_500 happened"}


NEW = Connection(new=True, dns_ns=2 * MS, connect_ns=3 * MS, tls_ns=7 * MS)
KEPT = Connection(new=False, dns_ns=None, connect_ns=None, tls_ns=None)


def rich_turn(connection: Connection | None = NEW, **fields: object) -> TurnResult:
    """A succeeded turn with headers at 20 ms, reasoning from 25 ms, the answer from 40 ms to 100 ms,
    and usage: 10 prompt, 11 completion (4 of them reasoning) tokens."""
    values: dict[str, object] = {
        "t_headers_ns": 20 * MS,
        "t_first_reasoning_ns": 25 * MS,
        "reasoning_chars": 17,
        "prompt_tokens": 10,
        "completion_tokens": 11,
        "reasoning_tokens": 4,
        "connection": connection,
        "pool_wait_ns": MS,
        **fields,
    }
    return dataclasses.replace(ok_turn(), **values)  # type: ignore[arg-type]


def p50(metrics: Metrics, key: str) -> int:
    return metrics.hist(key).value_at_percentile_us(50)


def test_connection_phases_tokens_and_reasoning_are_recorded() -> None:
    recorder = TurnRecorder()
    recorder.turn(rich_turn(), "s", 1, "c", intended_ns=0)
    recorder.turn(rich_turn(KEPT), "s", 2, "c", intended_ns=0)
    m = recorder.metrics
    assert m.counts["connections_opened"] == m.counts["connections_reused"] == 1
    assert m.hist("ttfb").count == 2 and p50(m, "ttfb") == pytest.approx(20_000, rel=1e-3)
    # Phases only for the new connection.
    for key, us in (("dns", 2000), ("connect", 3000), ("tls", 7000)):
        assert m.hist(key).count == 1 and m.hist(key).value_at_percentile_us(50) == pytest.approx(
            us, rel=1e-3
        )
    assert m.hist("ttfr").count == 2 and p50(m, "ttfr") == pytest.approx(25_000, rel=1e-3)
    # 75 ms from the first reasoning to the last event over 10 tokens after the first; 11 tokens in 75 ms.
    assert p50(m, "tpot") == pytest.approx(7_500, rel=1e-3)
    assert p50(m, "output_tps") == pytest.approx(11 / 0.075 * 1000, rel=1e-3)
    counts = build_summary(m, {"id": "r"})["counts"]
    assert (counts["turns_with_usage"], counts["prompt_tokens"], counts["completion_tokens"]) == (2, 20, 22)
    assert counts["reasoning_tokens"] == 8 and counts["reasoning_chars"] == 34
    timeline = build_summary(m, {"id": "r"})["timeline"]["points"]
    assert sum(p["completion_tokens"] for p in timeline) == 22
    assert sum(p["connections_opened"] + p["connections_reused"] for p in timeline) == 2


def test_the_time_split_of_succeeded_turns_reaches_the_summary() -> None:
    recorder = TurnRecorder()
    recorder.turn(rich_turn(), "s", 1, "c", intended_ns=0)
    recorder.turn(
        dataclasses.replace(rich_turn(), ok=False, kind=Failure.ASSERTION), "s", 1, "c", intended_ns=0
    )
    summary = build_summary(recorder.metrics, {"id": "r"})
    # Set-up 1 + 2 + 3 + 7 ms, headers at 20 ms, first content at 40 ms, last event at 100 ms.
    expected = {
        "turn_ms": 100.0,
        "turns": 1,
        "setup_ms": 13.0,
        "headers_ms": 7.0,
        "first_content_ms": 20.0,
        "streaming_ms": 60.0,
    }
    assert summary["time_split"] == {"p50": expected, "p95": expected, "p99": expected}
    assert "time_split" not in build_summary(TurnRecorder().metrics, {"id": "r"})


def test_a_turn_without_a_connection_or_usage_adds_no_such_figures() -> None:
    recorder = TurnRecorder()
    recorder.turn(ok_turn(), "s", 1, "c", intended_ns=0)
    recorder.turn(failed_turn("connect"), "s", 1, "c", intended_ns=0)
    m = recorder.metrics
    for key in ("connections_opened", "connections_reused", "turns_with_usage", "completion_tokens"):
        assert m.counts[key] == 0, key
    for metric in ("ttfb", "dns", "connect", "tls", "ttfr", "tpot", "output_tps"):
        assert m.hist(metric).count == 0, metric


def test_the_turn_log_lets_tpot_and_the_output_rate_be_recomputed(tmp_path: Path) -> None:
    recorder = TurnRecorder()
    recorder.open_turn_log(tmp_path / "run")
    recorder.turn(rich_turn(), "s", 1, "c1", intended_ns=0)
    recorder.close_turn_log()
    [line] = [
        orjson.loads(x) for x in next((tmp_path / "run").glob("turns-*.jsonl")).read_bytes().splitlines()
    ]
    assert line["connection"] == "new" and (line["dns_us"], line["connect_us"], line["tls_us"]) == (
        2000,
        3000,
        7000,
    )
    assert line["ttfb_us"] == 20_000 and line["ttfr_us"] == 25_000 and line["first_output_us"] == 25_000
    assert (line["prompt_tokens"], line["completion_tokens"], line["reasoning_tokens"]) == (10, 11, 4)
    generation_us = line["latency_us"] - line["first_output_us"]
    tpot_us = generation_us / (line["completion_tokens"] - 1)
    assert p50(recorder.metrics, "tpot") == pytest.approx(tpot_us, rel=1e-3)
