"""The NLX OpenAI Connect contract: URL, request body, channel keys, chunk fields."""

from __future__ import annotations

import re
import uuid
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


def delta_content(chunk: Any) -> str | None:
    """The `choices[0].delta.content` of a chat.completion.chunk, or None when absent."""
    if not isinstance(chunk, dict):
        return None
    choices = chunk.get("choices")
    if not choices or not isinstance(choices, list):
        return None
    first = choices[0]
    if not isinstance(first, dict):
        return None
    delta = first.get("delta")
    if not isinstance(delta, dict):
        return None
    content = delta.get("content")
    return content if isinstance(content, str) else None


def finish_reason(chunk: Any) -> str | None:
    if not isinstance(chunk, dict):
        return None
    choices = chunk.get("choices")
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        return None
    reason = choices[0].get("finish_reason")
    return reason if isinstance(reason, str) else None
