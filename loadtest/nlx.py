"""The NLX OpenAI Connect contract: URL, request body, channel keys; and the fields of a
chat.completion.chunk both APIs stream (content, reasoning, finish reason, usage)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from loadtest.errors import ConfigError

# A language suffix as NLX documents it (`-en-US`, `-es-MX`), also `-es-419` style regions.
_LANGUAGE_SUFFIX = re.compile(r"-[a-z]{2,3}-(?:[A-Z]{2}|[0-9]{3})$")

MODEL_PREFIX = "nlx"


def has_language_suffix(channel_key: str) -> bool:
    """True when the channel key ends with a language code suffix such as `-en-US`."""
    return bool(_LANGUAGE_SUFFIX.search(channel_key))


def check_channel_key(channel_key: str | None) -> str:
    """Return the channel key, or raise ConfigError naming the fix."""
    if not channel_key:
        raise ConfigError("missing NLX channel key: pass --nlx-channel KEY-en-US (or set NLX_CHANNEL)")
    if not has_language_suffix(channel_key):
        raise ConfigError(
            f"NLX channel key {channel_key!r} has no language suffix: "
            f"use --nlx-channel {channel_key}-en-US (or the language your channel serves)"
        )
    return channel_key


def check_deployment_key(deployment_key: str | None) -> str:
    if not deployment_key:
        raise ConfigError("missing NLX deployment key: pass --nlx-deployment KEY (or set NLX_DEPLOYMENT)")
    if "/" in deployment_key:
        raise ConfigError(f"NLX deployment key {deployment_key!r} contains '/': pass the bare key")
    return deployment_key


def completions_url(host: str, deployment_key: str, channel_key: str) -> str:
    """`{host}/{deploymentKey}/{channelKey}/chat/completions`, keeping any path prefix of host."""
    return f"{host.rstrip('/')}/{deployment_key}/{channel_key}/chat/completions"


def new_conversation_id() -> str:
    return str(uuid.uuid4())


def model_for(conversation_id: str) -> str:
    return f"{MODEL_PREFIX}:{conversation_id}"


def conversation_id_from_model(model: str) -> str | None:
    """The conversation id in `nlx:{id}`; None for plain `nlx`; ValueError for anything else."""
    if model == MODEL_PREFIX:
        return None
    prefix = MODEL_PREFIX + ":"
    if model.startswith(prefix) and len(model) > len(prefix):
        return model[len(prefix) :]
    raise ValueError(f"model must be 'nlx' or 'nlx:{{conversationId}}', got {model!r}")


def request_body(conversation_id: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    return {"model": model_for(conversation_id), "messages": messages, "stream": True}


# Where OpenAI-compatible servers stream reasoning, apart from the answer: `reasoning_content` (vLLM,
# DeepSeek) or `reasoning` (OpenRouter, newer vLLM).
REASONING_FIELDS = ("reasoning_content", "reasoning")


def choice_parts(chunk: dict[str, Any]) -> tuple[str | None, str | None, str | None] | None:
    """The answer (`delta.content`), the reasoning and the finish reason of a chunk's first choice,
    each None when absent or empty (or not a string); None for a chunk without a choice (a usage
    chunk). One walk of `choices`: this runs for every event of every turn."""
    choices = chunk.get("choices")
    if not choices or not isinstance(choices, list):
        return None
    choice = choices[0]
    if not isinstance(choice, dict):
        return None
    reason = choice.get("finish_reason")
    if not isinstance(reason, str):
        reason = None
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return None, None, reason
    content = delta.get("content")
    if not content or not isinstance(content, str):
        content = None
    reasoning = None
    # A delta holding the answer alone, the usual content chunk, has no reasoning to look for.
    if content is None or len(delta) > 1:
        for name in REASONING_FIELDS:
            value = delta.get(name)
            if value and isinstance(value, str):
                reasoning = value
                break
    return content, reasoning, reason


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts a stream reported (`stream_options.include_usage`); None where a count was absent."""

    prompt_tokens: int | None
    completion_tokens: int | None
    reasoning_tokens: int | None  # `completion_tokens_details.reasoning_tokens`, part of completion_tokens


def usage(chunk: dict[str, Any]) -> Usage | None:
    """The `usage` object of a chunk (OpenAI sends it in a last chunk with empty `choices`, and
    `"usage": null` on the others); None when there is none, or it holds no count."""
    found = chunk.get("usage")
    if not isinstance(found, dict):
        return None
    details = found.get("completion_tokens_details")
    reasoning = _count(details.get("reasoning_tokens")) if isinstance(details, dict) else None
    prompt = _count(found.get("prompt_tokens"))
    completion = _count(found.get("completion_tokens"))
    if prompt is None and completion is None:
        return None
    return Usage(prompt, completion, reasoning)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
