"""Exceptions raised by loadtest.

    LoadtestError
    ├── ConfigError          bad option, dataset, channel key, threshold: one line naming the fix
    └── StreamProtocolError  the byte stream cannot be parsed as the server promised
        └── EventTooLarge    one SSE event grew past the configured cap

Failures of the endpoint under test (4xx/5xx, `{"error": ...}` inside the stream, cut streams,
timeouts) are not raised to callers: they become failed turns with a kind (see `client.TurnResult`).
"""

from __future__ import annotations


class LoadtestError(Exception):
    """Base class of every error loadtest raises on purpose."""


class ConfigError(LoadtestError):
    """User input is wrong; the message is one line that names the option and the fix."""


class StreamProtocolError(LoadtestError):
    """The response stream broke a rule of the event-stream format we cannot recover from."""


class EventTooLarge(StreamProtocolError):
    """One event exceeded the configured size cap."""

    def __init__(self, *, limit: int) -> None:
        super().__init__(f"an SSE event exceeded {limit} bytes")
        self.limit = limit


def redact(text: str, secrets: list[str] | tuple[str, ...]) -> str:
    """Return `text` with every non-empty secret replaced by `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
