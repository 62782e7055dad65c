from __future__ import annotations

from typing import Any

import pytest

from loadtest import nlx
from loadtest.errors import ConfigError


@pytest.mark.parametrize("key", ["web-en-US", "chan-es-MX", "x-fil-PH", "latam-es-419"])
def test_channel_keys_with_language_suffix_pass(key: str) -> None:
    assert nlx.check_channel_key(key) == key


@pytest.mark.parametrize("key", ["web", "web-en", "web-EN-us", "web-en-US-", "en-US"])
def test_channel_key_without_suffix_is_a_one_line_error_naming_the_fix(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        nlx.check_channel_key(key)
    message = str(info.value)
    assert "\n" not in message
    assert "--nlx-channel" in message and "-en-US" in message


def test_missing_channel_key_names_the_option_and_env_var() -> None:
    with pytest.raises(ConfigError, match="NLX_CHANNEL"):
        nlx.check_channel_key(None)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("https://apps.nlx.ai/v1", "https://apps.nlx.ai/v1/dep/web-en-US/chat/completions"),
        ("https://apps.nlx.ai/v1/", "https://apps.nlx.ai/v1/dep/web-en-US/chat/completions"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/dep/web-en-US/chat/completions"),
    ],
)
def test_url_keeps_the_path_prefix_of_the_host(host: str, url: str) -> None:
    assert nlx.completions_url(host, "dep", "web-en-US") == url


def test_model_carries_the_conversation_id_and_round_trips() -> None:
    cid = nlx.new_conversation_id()
    body = nlx.request_body(cid, [{"role": "user", "content": "hi"}])
    assert body == {"model": f"nlx:{cid}", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    assert nlx.conversation_id_from_model(body["model"]) == cid
    assert nlx.conversation_id_from_model("nlx") is None
    with pytest.raises(ValueError):
        nlx.conversation_id_from_model("gpt-4o")


def parts(chunk: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """Answer, reasoning and finish reason of a chunk, as the client reads them."""
    return nlx.choice_parts(chunk) or (None, None, None)


def test_content_reasoning_and_finish_reason_tolerate_odd_chunks() -> None:
    assert parts({"choices": [{"delta": {"content": "hé"}, "finish_reason": None}]}) == ("hé", None, None)
    assert parts({"choices": [{"delta": {}, "finish_reason": "stop"}]}) == (None, None, "stop")
    odd_deltas = ({"delta": "x"}, {"delta": {"content": 3, "reasoning": ["x"]}}, {"delta": {"content": ""}})
    odd_chunks: list[Any] = [{}, {"choices": []}, {"choices": [1]}, {"choices": {"0": {}}}]
    for odd in [*odd_chunks, *({"choices": [d]} for d in odd_deltas)]:
        assert parts(odd) == (None, None, None), odd


@pytest.mark.parametrize("field", nlx.REASONING_FIELDS)
def test_reasoning_is_read_apart_from_the_answer(field: str) -> None:
    assert parts({"choices": [{"delta": {field: "hmm", "content": None}}]}) == (None, "hmm", None)
    assert parts({"choices": [{"delta": {field: "", "content": "Hi"}}]}) == ("Hi", None, None)


def test_usage_reads_the_counts_and_the_reasoning_tokens_when_given() -> None:
    chunk = {
        "choices": [],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 30,
            "total_tokens": 42,
            "completion_tokens_details": {"reasoning_tokens": 18},
        },
    }
    assert nlx.usage(chunk) == nlx.Usage(12, 30, 18)
    assert nlx.usage({"usage": {"prompt_tokens": 5, "completion_tokens": 7}}) == nlx.Usage(5, 7, None)
    no_usage: list[dict[str, Any]] = [
        {},
        {"usage": None},
        {"usage": {}},
        {"usage": {"prompt_tokens": -1, "completion_tokens": True}},
    ]
    for odd in no_usage:
        assert nlx.usage(odd) is None, odd
