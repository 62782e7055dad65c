"""Realistic workload end to end (in-process): answer checks, fallback replies, variables, transcripts."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import NLX, TEST_KEY
from tests.harness import Run, turns_at_least
from tests.mockthread import ThreadedMock

KEYED = {"NLX_API_KEY": TEST_KEY}

FAST = ("--ttft", "uniform:5ms:10ms", "--itl", "uniform:1ms:2ms", "--chunks", "uniform:2:4")


def conversations_of(mock: ThreadedMock) -> list[dict[str, Any]]:
    ids = httpx.get(mock.url + "/_mock/conversations", timeout=10).json()["ids"]
    return [mock.conversation(cid) for cid in ids]


def test_answer_checks_fail_turns_as_assertion_per_scenario(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run], tmp_path: Path
) -> None:
    mock = thread_mock(*FAST)
    path = tmp_path / "checks.yaml"
    path.write_text(
        "scenarios:\n"
        "  - name: passes\n"
        "    turns:\n"
        "      - user: hello\n"
        "        expect: {not_contains: [zzz-never], max_length: 100000, regex: '\\w'}\n"
        "  - name: fails\n"
        "    turns:\n"
        "      - user: hello\n"
        "        expect: {contains: no-such-word-xyz}\n"
        "      - never sent, the first turn failed\n",
        encoding="utf-8",
    )
    run = in_process(
        f"--host {mock.url} {NLX} -u 2 -r 2 --think-time 0 --stop-timeout 30 --conversations {path}",
        until=turns_at_least(ok=5, failed=5),
        env=KEYED,
    )
    assert run.exit_code == 1, run.output[-3000:]  # Locust's any-failure rule: no thresholds given
    summary = run.summary()
    passes, fails = summary["by_scenario"]["passes"], summary["by_scenario"]["fails"]
    assert passes["counts"]["turns_ok"] == passes["counts"]["turns"] > 0 and passes["errors"] == {}
    assert fails["counts"]["turns"] == fails["counts"]["conversations_started"] > 0  # stopped after turn 1
    assert (
        fails["errors"]
        == {"assertion": fails["counts"]["turns_failed"]}
        == {"assertion": fails["counts"]["turns"]}
    )
    [error] = summary["errors"]
    assert error["kind"] == "assertion" and "does not contain 'no-such-word-xyz'" in error["example"]
    assert '; the reply: "' in error["example"]  # what came, beside what was expected
    assert "does not contain" in fails["examples"]["assertion"]
    # A wrong answer is a failed turn, but the server answered it in its time: its latency counts.
    assert (
        summary["metrics"]["ttft_ms"]["count"]
        == passes["counts"]["turns_ok"] + fails["counts"]["turns_failed"]
    )
    assert fails["ttft_ms"]["count"] == fails["counts"]["turns_failed"]


def test_fallback_pattern_marks_fallback_replies(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run]
) -> None:
    mock = thread_mock(*FAST)  # every reply of the mock says "Grüße"
    run = in_process(
        f"--host {mock.url} {NLX} -u 1 -r 1 --think-time 0 --stop-timeout 30",
        "--fallback-pattern", "grüsse|grüße",
        until=turns_at_least(3), env=KEYED,
    )  # fmt: skip
    summary = run.summary()
    assert summary["counts"]["turns_ok"] == 0 and summary["counts"]["turns_failed"] > 0
    assert summary["errors"][0]["kind"] == "assertion" and "fallback" in summary["errors"][0]["example"]


def test_variables_make_every_request_different(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run], tmp_path: Path
) -> None:
    mock = thread_mock(*FAST)
    path = tmp_path / "vars.yaml"
    path.write_text(
        "variables:\n  city: [Paris, Lyon]\n"
        "scenarios:\n  - name: v\n"
        "    turns: ['order {{number: 10000-99999}} to {{city}} on {{date: +1..+5}}']\n",
        encoding="utf-8",
    )
    run = in_process(
        f"--host {mock.url} {NLX} -u 2 -r 2 --think-time 0 --stop-timeout 30 --conversations {path}",
        until=turns_at_least(20),
        env=KEYED,
    )
    assert run.exit_code == 0, run.output[-3000:]
    sent = [c["turns"][0]["messages"][-1]["content"] for c in conversations_of(mock)]
    assert len(sent) > 10
    pattern = re.compile(r"order \d{5} to (Paris|Lyon) on \d{4}-\d{2}-\d{2}")
    assert all(pattern.fullmatch(text) for text in sent), sent[:3]
    assert len(set(sent)) > len(sent) // 2


def test_a_transcript_replays_turn_by_turn(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run], tmp_path: Path
) -> None:
    mock = thread_mock(*FAST)
    path = tmp_path / "past.jsonl"
    path.write_text(
        '{"id": "t1", "scenario": "refunds", "messages": ['
        '{"role": "user", "content": "I want a refund"}, {"role": "assistant", "content": "old reply"},'
        '{"role": "user", "content": "Order 58213"}, {"role": "assistant", "content": "old reply 2"},'
        '{"role": "user", "content": "Thanks"}]}\n',
        encoding="utf-8",
    )
    run = in_process(
        f"--host {mock.url} {NLX} -u 1 -r 1 --think-time 0 --stop-timeout 30 --conversations {path}",
        until=turns_at_least(4),  # into the second conversation, which the stop lets finish
        env=KEYED,
    )
    assert run.exit_code == 0, run.output[-3000:]
    summary = run.summary()
    assert summary["by_scenario"]["refunds"]["counts"]["conversations_completed"] >= 2
    assert list(summary["by_scenario"]) == ["refunds"]
    for conv in conversations_of(mock):
        turns = conv["turns"]
        users = [t["messages"][-1]["content"] for t in turns]
        assert users == ["I want a refund", "Order 58213", "Thanks"][: len(users)]
        # the history carries the live replies, never the transcript's old ones
        history = [m["content"] for m in turns[-1]["messages"] if m["role"] == "assistant"]
        assert "old reply" not in history and history == [t["reply"] for t in turns[:-1]]
