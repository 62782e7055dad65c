"""What the mock remembers: conversations, counters and server-side latency histograms."""

from __future__ import annotations

import time
import weakref
from collections import Counter
from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson

from loadtest.metrics import Histogram

# The percentiles /_mock/stats reports of each histogram, beside its count and maximum.
_PERCENTILES = (50.0, 90.0, 99.0)


def summary_ms(histogram: Histogram) -> dict[str, float | int]:
    """Count, p50, p90, p99 and max of a microsecond histogram, in milliseconds (0 when empty)."""
    count = histogram.count
    if count == 0:
        return {"count": 0, **{f"p{p:g}": 0.0 for p in _PERCENTILES}, "max": 0.0}
    values = histogram.values_at_percentiles_us(list(_PERCENTILES))
    return {
        "count": count,
        **{f"p{p:g}": _ms(values[p]) for p in _PERCENTILES},
        "max": _ms(histogram.hdr.get_max_value()),
    }


def _ms(value_us: int) -> float:
    return round(value_us / 1000, 3)


class Turn(NamedTuple):
    """One streamed request of a conversation; `delivered` once all of the reply's content was sent.

    Only strings and bytes, in tuples: the garbage collector stops tracking such objects, so a mock
    that has served millions of turns does not pause for seconds to look through them all.
    """

    messages: bytes  # the request's messages, as JSON
    reply: str
    fault: str | None = None
    delivered: bool = False


def conversation_json(conversation_id: str, turns: list[Turn]) -> dict[str, Any]:
    return {
        "id": conversation_id,
        "turns": [
            {
                "messages": orjson.loads(turn.messages),
                "reply": turn.reply,
                "fault": turn.fault,
                "delivered": turn.delivered,
            }
            for turn in turns
        ],
    }


class MockState:
    """Counters, conversations and histograms of one mock process; `reset()` clears all of it.

    `fault_kinds` are the configured faults, listed in the stats even before one is injected.
    """

    def __init__(self, fault_kinds: Iterable[str] = ()) -> None:
        self.fault_kinds = tuple(fault_kinds)
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.connections = 0
        self._transports: weakref.WeakSet[object] = weakref.WeakSet()
        self.faults: Counter[str] = Counter()
        self.turns = 0
        self.turns_completed = 0
        self.chunks = 0
        self.chars = 0
        self.history_mismatches = 0
        self.history_messages = 0
        self.status: Counter[int] = Counter()
        # Each conversation is one list of Turn tuples: one object for the GC to track.
        self.conversations: dict[str, list[Turn]] = {}
        self.replies_sent: set[str] = set()
        # metrics.Histogram counts values until read: a chunk costs a dict update, not an HDR record
        # (the bulk of the mock's per-chunk bookkeeping at 50,000 chunks a second). Each clamps what
        # it records to its range: an early wake-up gives a tiny negative schedule error.
        self.ttft_us = Histogram()
        self.turn_us = Histogram()
        # How late chunks went out (µs), every chunk written so far recorded.
        self.schedule_error_us = Histogram()

    def saw_connection(self, transport: object | None) -> None:
        """Count the connection a chat request came on, once per connection."""
        if transport is not None and transport not in self._transports:
            self._transports.add(transport)
            self.connections += 1

    def begin_turn(self, conversation_id: str, messages: list[dict[str, Any]]) -> list[Turn]:
        """The conversation's turns so far, after checking the request's assistant messages against
        the replies it was sent; mismatches are counted.

        A request may carry no assistant message at all (only the newest user message); when it
        carries k of them they must equal the first k replies the conversation was delivered, in order.
        """
        turns = self.conversations.get(conversation_id)
        if turns is None:
            turns = self.conversations[conversation_id] = []
        sent = [m["content"] for m in messages if m["role"] == "assistant"]
        self.history_messages += len(sent)
        # A reply that was never delivered (a fault, a client gone) cannot be in the client's history.
        delivered = [turn.reply for turn in turns if turn.delivered]
        if sent and sent != delivered[: len(sent)]:
            self.history_mismatches += 1
        return turns

    def begin_stateless_turn(self, messages: list[dict[str, Any]]) -> list[Turn]:
        """For the OpenAI route, which keeps no conversation: every assistant message in the
        history must be a reply this server sent, character for character."""
        sent = [m["content"] for m in messages if m["role"] == "assistant"]
        self.history_messages += len(sent)
        if any(content not in self.replies_sent for content in sent):
            self.history_mismatches += 1
        return []

    def chunk_written(self, piece: str, late_s: float, started_ns: int | None) -> None:
        """Count a content chunk just written `late_s` after its deadline; the first of a turn
        (`started_ns`: when its request came in) also gives the server-side TTFT."""
        self.chunks += 1
        self.chars += len(piece)
        self.schedule_error_us.record_us(round(late_s * 1e6))
        if started_ns is not None:
            self.ttft_us.record_us((time.perf_counter_ns() - started_ns) // 1000)

    def delivered(self, turns: list[Turn], index: int) -> None:
        """Mark turn `index` as delivered: its whole reply was sent."""
        turn = turns[index] = turns[index]._replace(delivered=True)
        self.replies_sent.add(turn.reply)

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "connections": self.connections,
            "turns": self.turns,
            "turns_completed": self.turns_completed,
            "chunks": self.chunks,
            "chars": self.chars,
            "conversations": len(self.conversations),
            "history_mismatches": self.history_mismatches,
            "history_messages": self.history_messages,
            "faults": {kind: self.faults[kind] for kind in sorted({*self.fault_kinds, *self.faults})},
            "status": {str(code): self.status[code] for code in sorted({200, 400, 401, *self.status})},
            "ttft_ms": summary_ms(self.ttft_us),
            "turn_ms": summary_ms(self.turn_us),
            "schedule_error_ms": summary_ms(self.schedule_error_us),
            "hdr": {"ttft": self.ttft_us.encode(), "turn": self.turn_us.encode()},
        }
