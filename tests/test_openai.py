"""--api openai: the same conversations against any OpenAI-compatible streaming chat server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from loadtest.report.turns import read_turns
from tests.conftest import FAST, TEST_KEY
from tests.harness import Run, config_error, turns_at_least
from tests.mockthread import ThreadedMock


def test_a_generic_openai_compatible_server_with_full_history(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run]
) -> None:
    mock = thread_mock(*FAST)
    run = in_process(
        f"--api openai --model test-model --host {mock.url} -u 4 -r 4 --think-time 0 --stop-timeout 30",
        until=turns_at_least(20),
        env={"OPENAI_API_KEY": TEST_KEY},
    )
    assert run.exit_code == 0, run.output[-3000:]
    summary = run.summary()
    served = mock.stats()
    counts = summary["counts"]
    assert counts["turns_ok"] == counts["turns"] == served["turns"] > 10
    assert counts["chunks"] == served["chunks"] and counts["chars"] == served["chars"]
    # Later turns carried the earlier replies, exactly as streamed.
    assert served["history_messages"] > 0 and served["history_mismatches"] == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("--api openai --host http://127.0.0.1:9", "--api openai needs a model name: pass --model NAME"),
        ("--api openai --model m --history last", "--history last needs server-side conversation state"),
        ("--api openai --model m --path v1/chat", "--path 'v1/chat' must start with '/'"),
    ],
)
def test_openai_configuration_errors(args: str, expected: str) -> None:
    message = config_error(args)
    assert expected in message and "\n" not in message


def test_tokens_and_reasoning_against_the_mock(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run]
) -> None:
    mock = thread_mock(*FAST, "--reasoning", "uniform:1:3")
    run = in_process(
        f"--api openai --model test-model --host {mock.url} -u 4 -r 4 --think-time 0 --stop-timeout 30",
        "--turn-log",
        until=turns_at_least(20),
        env={"OPENAI_API_KEY": TEST_KEY},
    )
    assert run.exit_code == 0, run.output[-3000:]
    summary, served = run.summary(), mock.stats()
    counts, metrics = summary["counts"], summary["metrics"]
    assert counts["turns_ok"] == counts["turns"] == served["turns"] == counts["turns_with_usage"] > 10
    for key in ("prompt_tokens", "completion_tokens", "reasoning_tokens"):
        assert counts[key] == served["usage"][key] > 0, key
    # Reasoning is counted apart; the answer alone is content, and alone goes back in the history.
    assert counts["reasoning_chars"] == served["reasoning_chars"] > 0
    assert counts["chars"] == served["chars"] and counts["chunks"] == served["chunks"]
    assert served["history_messages"] > 0 and served["history_mismatches"] == 0
    assert "no turn's stream reported token usage" not in run.output
    turns = read_turns(run.latest("").parent / summary["run"]["id"])
    assert len(turns) == counts["turns"]
    # TTFT is the first answer content, after the reasoning (in the same read, when the client was late).
    assert metrics["ttfr_ms"]["count"] == metrics["ttft_ms"]["count"] == counts["turns_ok"]
    assert all(t["ttfr_us"] == t["first_output_us"] <= t["ttft_us"] for t in turns)
    assert sum(t["ttfr_us"] for t in turns) < sum(t["ttft_us"] for t in turns)
    # tpot and output_tps as the turn log recomputes them (none for a turn that came in one read).
    turns = [t for t in turns if t["latency_us"] > t["first_output_us"]]
    tpot_ms = [(t["latency_us"] - t["first_output_us"]) / (t["completion_tokens"] - 1) / 1000 for t in turns]
    rate = [t["completion_tokens"] / (t["latency_us"] - t["first_output_us"]) * 1e6 for t in turns]
    for key, values in (("tpot_ms", tpot_ms), ("output_tps", rate)):
        stats = metrics[key]
        assert stats["count"] == len(values)
        assert stats["min"] == pytest.approx(min(values), rel=2e-3, abs=0.002), key
        assert stats["max"] == pytest.approx(max(values), rel=2e-3, abs=0.002), key
    assert summary["time_split"]["p50"]["turns"] > 0


def test_without_usage_there_are_no_token_figures_and_one_warning(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run]
) -> None:
    mock = thread_mock(*FAST)
    run = in_process(
        f"--api openai --model test-model --host {mock.url} -u 2 -r 2 --think-time 0 --stop-timeout 30",
        "--no-usage",
        until=turns_at_least(6),
        env={"OPENAI_API_KEY": TEST_KEY},
    )
    summary = run.summary()
    assert mock.stats()["usage"]["chunks"] == 0
    assert summary["counts"]["turns_with_usage"] == summary["counts"]["completion_tokens"] == 0
    assert summary["metrics"]["tpot_ms"]["count"] == summary["metrics"]["output_tps"]["count"] == 0
    # Not asked for: nothing to warn about.
    assert not any("token usage" in w for w in summary.get("warnings", []))


@pytest.mark.parametrize("close", [True, False], ids=["idle_close", "kept_alive"])
def test_connection_phases_over_tls(
    close: bool, thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run]
) -> None:
    mock = thread_mock(*FAST, "--tls", *(("--fault", "idle_close=100%") if close else ()))
    assert mock.url.startswith("https://")
    run = in_process(
        f"--api openai --model test-model --host {mock.url} -u 3 -r 3 --think-time 0 --stop-timeout 30",
        "--insecure",
        until=turns_at_least(12),
        env={"OPENAI_API_KEY": TEST_KEY},
    )
    summary = run.summary()
    counts, metrics = summary["counts"], summary["metrics"]
    turns = counts["turns"]
    assert counts["turns_ok"] == turns >= 12
    opened = turns if close else 3  # every turn a new connection, or one per user
    assert counts["connections_opened"] == opened and counts["connections_reused"] == turns - opened
    assert metrics["connect_ms"]["count"] == metrics["tls_ms"]["count"] == opened
    assert metrics["ttfb_ms"]["count"] == turns
    assert metrics["tls_ms"]["min"] > 0
    split = summary["time_split"]["p50"]
    assert split["setup_ms"] + split["headers_ms"] + split["first_content_ms"] + split["streaming_ms"] == (
        pytest.approx(split["turn_ms"], abs=0.01)
    )
