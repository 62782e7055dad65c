"""The plugin in a Locust run: in this process where a function call shows it (tests/harness.py), a
real `locust` process where only a real run does (signals, timing, exit code 2; a run from the web UI is
in tests/test_webui_browser.py)."""

from __future__ import annotations

import gc
import shlex
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from loadtest.calibrate import Placement, pin
from tests.conftest import (
    FAST,
    KEYED,
    NLX,
    TEST_KEY,
    Finish,
    LocustRun,
    Mock,
    StandardRun,
    background,
    locust_env,
    start_locust,
    start_signalled_locust,
)
from tests.harness import Run, turns_at_least

InProcess = Callable[..., Run]


def conversations_completed(count: int) -> Callable[[object], bool]:
    def reached(environment: object) -> bool:
        return int(environment.loadtest.metrics.counts["conversations_completed"]) >= count  # type: ignore[attr-defined]

    return reached


def test_summary_counts_match_what_the_mock_served(
    mock_server: Callable[..., Mock], in_process: InProcess
) -> None:
    mock = mock_server(*FAST)
    run = in_process(
        f"--host {mock.url} {NLX} -u 8 -r 8 --think-time 0 --stop-timeout 30",
        until=turns_at_least(24),
        env=KEYED,
    )
    assert run.exit_code == 0, run.output[-3000:]
    summary = run.summary()
    served = mock.stats()
    counts = summary["counts"]
    assert summary["schema"] == "loadtest.summary/1"
    assert counts["turns"] >= 24
    assert counts["turns"] == counts["turns_ok"] == served["turns"] == served["turns_completed"]
    assert counts["turns_failed"] == counts["turns_cut"] == 0
    assert counts["chunks"] == served["chunks"]
    assert counts["chars"] == served["chars"]
    assert counts["conversations_started"] == served["conversations"]
    for name in ("ttft_ms", "turn_ms", "itl_ms"):
        stats = summary["metrics"][name]
        assert set(stats) >= {"count", "min", "mean", "p50", "p90", "p95", "p99", "p999", "max", "hdr"}
        assert stats["min"] <= stats["p50"] <= stats["p99"] <= stats["max"]
    assert summary["metrics"]["ttft_ms"]["count"] == counts["turns"]
    assert summary["metrics"]["itl_ms"]["count"] == counts["chunks"] - counts["turns"]
    assert summary["metrics"]["ttft_ms"]["min"] >= 20.0
    assert summary["run"]["host"] == mock.url and summary["run"]["users"] == 8
    assert summary["errors"] == []
    # Full history went back to the server exactly as it was streamed, U+2028 and all.
    assert served["history_mismatches"] == 0
    run_dir = run.latest("summary.json").resolve().parent
    assert (run_dir / "report.html").read_text(encoding="utf-8").startswith("<!doctype html>")
    assert TEST_KEY not in (run_dir / "summary.json").read_text() + run.output


def test_the_standard_run_counts_what_the_mock_served(standard_run: StandardRun) -> None:
    summary, served = standard_run.summary(), standard_run.mock_stats
    counts = summary["counts"]
    assert counts["turns"] == counts["turns_ok"] + counts["turns_failed"] + counts["turns_cut"]
    assert counts["turns_ok"] == served["turns_completed"]
    assert counts["turns_failed"] == served["faults"]["http_401"]
    assert counts["chunks"] == served["chunks"] and served["history_mismatches"] == 0
    assert set(summary["by_scenario"]) == {"greeting", "order"}


def test_history_carries_the_streamed_replies(
    mock_server: Callable[..., Mock], in_process: InProcess, tmp_path: Path
) -> None:
    mock = mock_server(*FAST)
    conversations = tmp_path / "c.jsonl"
    conversations.write_text('{"name": "three", "system": "sys", "turns": ["one", "two", "three"]}\n')
    run = in_process(
        f"--host {mock.url} {NLX} -u 2 -r 2 --think-time 0 --stop-timeout 30 --conversations {conversations}",
        until=conversations_completed(2),
        env=KEYED,
    )
    assert run.exit_code == 0, run.output[-3000:]
    served = mock.stats()
    assert served["history_mismatches"] == 0
    conv = mock.conversation(mock_conversation_ids(mock)[0])
    turns = conv["turns"]
    assert len(turns) == 3
    assert [m["role"] for m in turns[2]["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert turns[2]["messages"][2]["content"] == turns[0]["reply"]
    assert turns[2]["messages"][4]["content"] == turns[1]["reply"]


def test_history_last_sends_only_the_new_user_message(
    mock_server: Callable[..., Mock], in_process: InProcess, tmp_path: Path
) -> None:
    mock = mock_server(*FAST)
    conversations = tmp_path / "c.yaml"
    conversations.write_text("scenarios:\n  - name: two\n    turns: [one, two]\n")
    run = in_process(
        f"--host {mock.url} {NLX} -u 1 -r 1 --think-time 0 --stop-timeout 30 --history last",
        f"--conversations={conversations}",
        until=conversations_completed(1),
        env=KEYED,
    )
    assert run.exit_code == 0, run.output[-3000:]
    conv = mock.conversation(mock_conversation_ids(mock)[0])
    assert [t["messages"] for t in conv["turns"]] == [
        [{"role": "user", "content": "one"}],
        [{"role": "user", "content": "two"}],
    ]


def mock_conversation_ids(mock: Mock) -> list[str]:
    ids: list[str] = httpx.get(mock.url + "/_mock/conversations", timeout=10).json()["ids"]
    assert ids, "the mock lists no conversations"
    return ids


def test_wrong_key_gives_http_401_failed_turns(
    mock_server: Callable[..., Mock], in_process: InProcess
) -> None:
    mock = mock_server(*FAST)
    run = in_process(
        f"--host {mock.url} {NLX} -u 2 -r 2 --think-time 0.05",
        until=turns_at_least(4, failed=4),
        env={"NLX_API_KEY": "wrong-key-4242"},
    )
    assert run.exit_code == 1  # Locust's exit code when requests failed
    summary = run.summary()
    counts = summary["counts"]
    assert counts["turns_ok"] == 0 and counts["turns_failed"] >= 4
    assert counts["turns"] == counts["turns_failed"] + counts["turns_cut"]
    [error] = [e for e in summary["errors"] if e["kind"] != "cut"]
    assert error["kind"] == "http_401" and error["count"] == counts["turns_failed"]


def test_without_host_the_built_in_mock_runs_and_stops(in_process: InProcess) -> None:
    run = in_process("-u 3 -r 3 --think-time 0 --mock-options", " ".join(FAST), until=turns_at_least(6, ok=6))
    assert run.exit_code == 0, run.output[-3000:]
    summary = run.summary()
    assert summary["run"]["mock"] is True and summary["run"]["host"].startswith("http://127.0.0.1:")
    assert summary["counts"]["turns_ok"] >= 6
    assert run.plugin.mock is None  # stopped with the run
    with pytest.raises(httpx.TransportError):
        httpx.get(summary["run"]["host"] + "/_mock/stats", timeout=5)


def test_the_built_in_mock_over_tls_times_each_users_handshake(in_process: InProcess) -> None:
    with pytest.raises(AssertionError, match=r"stopped at start \(2\)") as refused:
        in_process("-u 1 -r 1 --mock-options=--tls", until=turns_at_least(1))
    assert "the built-in mock serves --tls with a certificate of its own: add --insecure" in str(
        refused.value
    )
    args = "-u 2 -r 2 --think-time 0 --insecure --mock-options"
    run = in_process(args, f"--tls {' '.join(FAST)}", until=turns_at_least(6, ok=6))
    assert run.exit_code == 0, run.output[-3000:]
    summary = run.summary()
    assert summary["run"]["host"].startswith("https://127.0.0.1:")
    counts, metrics = summary["counts"], summary["metrics"]
    # Each user opens one connection and keeps it: one TCP connect and one TLS handshake each.
    assert counts["connections_opened"] == metrics["tls_ms"]["count"] == metrics["connect_ms"]["count"] == 2
    assert counts["connections_reused"] == counts["turns"] - 2
    assert metrics["ttfb_ms"]["count"] == counts["turns"]
    assert 0 < metrics["tls_ms"]["p50"] < metrics["ttft_ms"]["max"]


def test_host_with_a_path_prefix(mock_server: Callable[..., Mock], in_process: InProcess) -> None:
    mock = mock_server(*FAST, "--prefix", "/v1")
    assert mock.url.endswith("/v1")
    run = in_process(
        f"--host {mock.url} {NLX} -u 1 -r 1 --think-time 0", until=turns_at_least(2, ok=2), env=KEYED
    )
    assert run.exit_code == 0, run.output[-3000:]
    assert mock.stats()["status"]["200"] > 0


def test_turns_cut_by_the_end_of_the_run_are_counted_with_what_they_received(
    mock_server: Callable[..., Mock], in_process: InProcess
) -> None:
    mock = mock_server("--ttft", "const:50ms", "--itl", "const:200ms", "--chunks", "const:40")

    def four_streams_under_way(environment: object) -> bool:
        return int(mock.stats()["chunks"]) >= 8

    run = in_process(
        f"--host {mock.url} {NLX} -u 4 -r 4 --think-time 0", until=four_streams_under_way, env=KEYED
    )
    summary = run.summary()
    counts = summary["counts"]
    assert counts["turns_cut"] == 4 and counts["turns_ok"] == 0
    assert counts["turns"] == counts["turns_ok"] + counts["turns_failed"] + counts["turns_cut"]
    assert 0 < counts["chunks"] <= mock.stats()["chunks"]
    assert summary["errors"] == []  # a cut turn is counted as cut, not as an error
    assert summary["metrics"]["ttft_ms"]["count"] == 0  # latency figures are of completed turns only


@pytest.mark.parametrize(("mode", "during"), [("auto", {"off"}), ("off", {"off"}), ("on", {"on"})])
def test_the_garbage_collector_rests_during_the_run_unless_gc_on(
    mode: str, during: set[str], mock_server: Callable[..., Mock], in_process: InProcess
) -> None:
    mock = mock_server(*FAST)
    seen: set[str] = set()

    def watching(environment: object) -> bool:
        if turns_at_least(1)(environment):  # the test has started
            seen.add("on" if gc.isenabled() else "off")
        return turns_at_least(4)(environment)

    run = in_process(
        f"--host {mock.url} {NLX} -u 2 -r 2 --think-time 0 --gc {mode}", until=watching, env=KEYED
    )
    assert run.exit_code == 0, run.output[-3000:]
    assert run.summary()["run"]["gc"] == mode
    assert seen == during


@background
def terminated_run(folder: Path) -> Finish:
    """`-t 60s` cut by SIGTERM once 10 turns have finished (as interrupted_run is by Ctrl-C)."""
    args = [*shlex.split("-u 4 -r 4 --think-time 0 --turn-log -t 60s"), "--mock-options", " ".join(FAST)]
    return start_signalled_locust(args, folder, env=locust_env(), signal_name="TERM", turns=10)


def test_a_signal_still_writes_the_summary(terminated_run: LocustRun, interrupted_run: LocustRun) -> None:
    for name, run in (("SIGTERM", terminated_run), ("Ctrl-C", interrupted_run)):
        summary = run.summary()
        counts = summary["counts"]
        assert counts["turns_ok"] >= 10, name
        assert counts["turns"] == counts["turns_ok"] + counts["turns_failed"] + counts["turns_cut"], name
        assert summary["run"]["ended"] >= summary["run"]["started"], name
        assert "Traceback" not in run.stderr, (name, run.stderr[-3000:])


@pytest.mark.timing
def test_ttft_matches_the_mock_truth_within_2ms_at_p50_with_50_users(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun]
) -> None:
    # As `loadtest calibrate` measures: the mock and the generator on a CPU each, so neither waits for
    # the other's time slice (unpinned on two busy CPUs, that alone adds about half a millisecond).
    placement = Placement.choose(pin=True)
    mock = mock_server("--ttft", "const:100ms", "--itl", "const:20ms", "--chunks", "const:5")
    pin(mock.process.process.pid, placement.mock_cpu)
    run = run_locust(
        f"--host {mock.url} {NLX} -u 50 -r 50 -t 5s --think-time 0.2-0.6 --stop-timeout 30",
        env=KEYED,
        cpu=placement.generator_cpu,
    )
    assert run.returncode == 0, run.output[-3000:]
    summary = run.summary()
    served = mock.stats()
    assert summary["metrics"]["ttft_ms"]["count"] == served["turns"] >= 200, (
        summary["counts"],
        summary["errors"],
        served["turns"],
        served["turns_completed"],
    )
    measured, truth = summary["metrics"]["ttft_ms"]["p50"], served["ttft_ms"]["p50"]
    assert abs(measured - truth) <= 2.0, (measured, truth)
    assert abs(truth - 100.0) <= 2.0


def test_a_400_from_the_server_is_a_failed_turn_with_its_message(mock_server: Callable[..., Mock]) -> None:
    from loadtest.client import make_client, stream_turn
    from loadtest.nlx import completions_url, request_body

    mock = mock_server(*FAST)
    with make_client() as client:
        url = completions_url(mock.url, "dep1", "web")  # no language suffix: the server says 400
        result = stream_turn(
            client, url, request_body("c1", [{"role": "user", "content": "hi"}]), api_key=TEST_KEY
        )
    assert not result.ok and result.kind == "http_400" and result.status == 400
    assert "language" in result.detail


@background
def channel_without_language_run(folder: Path) -> Finish:
    args = ["-t", "5s", "--host", "https://apps.nlx.ai/v1", "--nlx-deployment", "d", "--nlx-channel", "web"]
    return start_locust(args, folder, env=KEYED)


def test_bad_input_stops_a_real_run_with_one_line_and_exit_2(channel_without_language_run: LocustRun) -> None:
    # What only a real process shows: the one `loadtest: error:` line, exit code 2, no traceback, no
    # report. Every other bad input is checked in-process (tests/test_settings.py).
    run = channel_without_language_run
    assert run.returncode == 2, run.output[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("loadtest: error:")]
    assert len(errors) == 1 and "--nlx-channel web-en-US" in errors[0], run.stderr[-2000:]
    assert "Traceback" not in run.output and not run.report_dir.joinpath("latest").exists()
