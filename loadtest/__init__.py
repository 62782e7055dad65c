"""loadtest: conversation load testing for streaming chat endpoints (NLX OpenAI Connect, OpenAI).

The Locust glue lives in `loadtest.plugin` (import it from a locustfile: it imports Locust, which
monkey-patches the process); the pieces below are plain Python.
"""

from __future__ import annotations

from loadtest.client import TurnResult, make_client, stream_turn
from loadtest.errors import ConfigError, EventTooLarge, LoadtestError, StreamProtocolError
from loadtest.metrics import Histogram, Metrics
from loadtest.sse import Event, SSEDecoder
from loadtest.transport import GeventTransport

__all__ = [
    "ConfigError",
    "Event",
    "EventTooLarge",
    "GeventTransport",
    "Histogram",
    "LoadtestError",
    "Metrics",
    "SSEDecoder",
    "StreamProtocolError",
    "TurnResult",
    "make_client",
    "stream_turn",
]
