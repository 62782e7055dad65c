"""What the mock checks in a chat request's body, for the NLX route and the generic OpenAI route."""

from __future__ import annotations

from typing import Any

import orjson

from loadtest import nlx

_ROLES = frozenset({"system", "user", "assistant"})


class BadRequest(Exception):
    """The request breaks the contract: answered 400 with this message and the parameter at fault."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def check_channel_key(channel_key: str) -> None:
    if not nlx.has_language_suffix(channel_key):
        raise BadRequest(
            f"channel key {channel_key!r} must end with a language suffix such as -en-US", param="channelKey"
        )


def parse_nlx_body(raw: bytes) -> tuple[str | None, list[dict[str, Any]]]:
    """The conversation id (None for a new one) and the messages, or BadRequest."""
    body = _json_object(raw)
    model = body.get("model")
    if not isinstance(model, str):
        raise BadRequest("model is required: 'nlx' or 'nlx:{conversationId}'", param="model")
    try:
        conversation_id = nlx.conversation_id_from_model(model)
    except ValueError as exc:
        raise BadRequest(str(exc), param="model") from None
    return conversation_id, _messages_to_stream(body)


def parse_openai_body(raw: bytes) -> tuple[str, list[dict[str, Any]], bool]:
    """The model name (any), the messages and whether the usage chunk is asked for, or BadRequest."""
    body = _json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required", param="model")
    return model, _messages_to_stream(body), _include_usage(body)


def _include_usage(body: dict[str, Any]) -> bool:
    """`stream_options.include_usage`, checked as OpenAI checks it."""
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise BadRequest("stream_options must be an object", param="stream_options")
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        raise BadRequest("stream_options.include_usage must be a boolean", param="stream_options")
    return include


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def _messages_to_stream(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty array", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise BadRequest(f"messages[{i}].role must be one of system, user, assistant", param="messages")
        if not isinstance(message.get("content"), str):
            raise BadRequest(f"messages[{i}].content must be a string", param="messages")
    stream = body.get("stream", True)
    if not isinstance(stream, bool):
        raise BadRequest("stream must be a boolean", param="stream")
    if not stream:
        raise BadRequest("only stream=true is supported by the mock", param="stream")
    return messages
