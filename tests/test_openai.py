"""--api openai: the same conversations against any OpenAI-compatible streaming chat server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

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
