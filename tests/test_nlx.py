from __future__ import annotations

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


def test_delta_content_and_finish_reason_tolerate_odd_chunks() -> None:
    chunk = {"choices": [{"delta": {"content": "hé"}, "finish_reason": None}]}
    assert nlx.delta_content(chunk) == "hé"
    assert nlx.finish_reason(chunk) is None
    assert nlx.finish_reason({"choices": [{"delta": {}, "finish_reason": "stop"}]}) == "stop"
    for odd in (None, [], {}, {"choices": []}, {"choices": [1]}, {"choices": [{"delta": "x"}]}):
        assert nlx.delta_content(odd) is None
        assert nlx.finish_reason(odd) is None
