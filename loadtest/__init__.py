"""loadtest: conversation load testing for streaming chat endpoints (NLX OpenAI Connect, OpenAI).

The Locust glue lives in `loadtest.plugin` (import it from a locustfile: it imports Locust, which
monkey-patches the process). Importing `loadtest` itself loads nothing heavy, so `loadtest mock` and
`loadtest compare` start without gevent or httpx: each name below is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loadtest.errors import ConfigError, EventTooLarge, LoadtestError, StreamProtocolError
from loadtest.lazy import lazy_exports

if TYPE_CHECKING:
    from loadtest.client import TurnResult, make_client, stream_turn
    from loadtest.metrics import Histogram, Metrics
    from loadtest.sse import Event, SSEDecoder
    from loadtest.transport import GeventTransport

# Public name -> the module that defines it.
_LAZY = {
    "TurnResult": "loadtest.client",
    "make_client": "loadtest.client",
    "stream_turn": "loadtest.client",
    "Histogram": "loadtest.metrics",
    "Metrics": "loadtest.metrics",
    "Event": "loadtest.sse",
    "SSEDecoder": "loadtest.sse",
    "GeventTransport": "loadtest.transport",
}

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


__getattr__ = lazy_exports(__name__, _LAZY)
