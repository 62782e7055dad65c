"""The mock's kept conversations: what a stored turn holds in memory."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson

from loadtest.mock.state import Turn

MESSAGES = [{"role": "user", "content": "x" * 5000}]


def held_bytes(make: Callable[[], Any], n: int = 50) -> float:
    """Memory each of `n` objects from `make` keeps allocated, as tracemalloc counts it."""
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        kept = [make() for _ in range(n)]
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(kept) == n
    return (after - before) / n


def test_a_stored_turn_holds_its_messages_not_the_buffer_they_were_written_to() -> None:
    size = len(orjson.dumps(MESSAGES))
    # orjson hands back its write buffer: for 5 KB of JSON, 64 KB on CPython 3.11.
    assert held_bytes(lambda: orjson.dumps(MESSAGES)) > 4 * size
    assert held_bytes(lambda: Turn(orjson.dumps(MESSAGES), "reply")) < size + 1000
    assert Turn(orjson.dumps(MESSAGES), "reply").messages == orjson.dumps(MESSAGES)
