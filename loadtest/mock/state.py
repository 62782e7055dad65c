"""What the mock remembers: conversations, counters and server-side latency histograms.

Memory is bounded: the mock keeps the `max_conversations` conversations used last (and as many of the
OpenAI route's replies, each one a conversation to that route) and forgets the least recently used,
so a run of hours against it stays flat. A request that continues a forgotten conversation is taken
up afresh: the replies in its history are believed, not checked, and it is counted as resumed. Until
the mock has forgotten one, a history it does not know is a mismatch.
"""

from __future__ import annotations

import time
import weakref
from collections import Counter, OrderedDict
from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson

from loadtest.metrics import Histogram
from loadtest.mock.config import DEFAULT_MAX_CONVERSATIONS

# The percentiles /_mock/stats reports of each histogram, beside its count and maximum.
_PERCENTILES = (50.0, 90.0, 99.0)
# The stored request of a turn from before the mock forgot its conversation: unknown.
UNKNOWN_MESSAGES = b"null"
# What /_mock/stats sums over the usage chunks sent.
USAGE_KEYS = ("chunks", "prompt_tokens", "completion_tokens", "reasoning_tokens")


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


class _TurnFields(NamedTuple):
    messages: bytes  # the request's messages, as JSON
    reply: str
    fault: str | None = None
    delivered: bool = False


class Turn(_TurnFields):
    """One streamed request of a conversation; `delivered` once all of the reply's content was sent.

    Only strings and bytes, in a tuple, so a mock that has served millions of turns holds no object
    the garbage collector would look through. The messages are copied to bytes of their own size:
    orjson.dumps returns its output in the buffer it wrote it to, at least 4 KB and up to 13 times
    the JSON (64 KB for 5 KB), which a conversation kept would otherwise hold until forgotten.
    """

    __slots__ = ()

    def __new__(cls, messages: bytes, reply: str, fault: str | None = None, delivered: bool = False) -> Turn:
        return super().__new__(cls, memoryview(messages).tobytes(), reply, fault, delivered)


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


class OneTurn(list[Turn]):
    """The turns of an OpenAI-route request: that route keeps no conversation, only the replies it
    delivered (by content), to check the histories of later requests against."""


def _earlier_turn(reply: str) -> Turn:
    """A turn of a resumed conversation from before the mock forgot it: only its reply is known."""
    return Turn(UNKNOWN_MESSAGES, reply, delivered=True)


class MockState:
    """Counters, conversations and histograms of one mock process; `reset()` clears all of it.

    `fault_kinds` are the configured faults, listed in the stats even before one is injected.
    `max_conversations` bounds the conversations kept, and apart from them the OpenAI route's replies.
    """

    def __init__(
        self, fault_kinds: Iterable[str] = (), max_conversations: int = DEFAULT_MAX_CONVERSATIONS
    ) -> None:
        self.fault_kinds = tuple(fault_kinds)
        self.max_conversations = max_conversations
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.connections = 0
        self._transports: weakref.WeakSet[object] = weakref.WeakSet()
        self.faults: Counter[str] = Counter()
        self.turns = 0
        self.turns_completed = 0
        # --max-concurrent: streams that waited in the queue for a free slot, and the most that waited.
        self.queued = 0
        self.queue_peak = 0
        self.chunks = 0
        self.chars = 0
        # --reasoning: its chunks and characters, apart from the answer's (`chunks`, `chars`).
        self.reasoning_chunks = 0
        self.reasoning_chars = 0
        # The usage chunks sent (OpenAI route, when asked) and the tokens they gave, summed.
        self.usage: Counter[str] = Counter()
        self.history_mismatches = 0
        self.history_messages = 0
        self.status: Counter[int] = Counter()
        # Each conversation is one list of Turn tuples: one object for the GC to track. In the order
        # first seen (as /_mock/conversations lists them); `_last_used` orders them for eviction.
        self.conversations: dict[str, list[Turn]] = {}
        self._last_used: OrderedDict[str, None] = OrderedDict()
        # The OpenAI route's delivered replies, least recently sent or seen in a history first.
        self.replies_sent: OrderedDict[str, None] = OrderedDict()
        # Conversations (and OpenAI-route replies) forgotten to stay within max_conversations; and
        # requests whose history went back past what was forgotten (taken up afresh, not mismatches).
        self.evicted = 0
        self.resumed = 0
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
        A conversation the mock does not hold is new; once the mock has forgotten some, one that comes
        with replies is taken up as resumed (see the module's docstring).
        """
        sent = [m["content"] for m in messages if m["role"] == "assistant"]
        self.history_messages += len(sent)
        turns = self.conversations.get(conversation_id)
        if turns is not None:
            self._last_used.move_to_end(conversation_id)
        elif sent and self.evicted:
            # Most likely one the mock forgot (a new conversation has no replies yet): the replies
            # the request holds are taken as sent, and the turns that follow are checked against them.
            self.resumed += 1
            turns = self._remember(conversation_id, [_earlier_turn(reply) for reply in sent])
        else:
            turns = self._remember(conversation_id, [])
        # A reply that was never delivered (a fault, a client gone) cannot be in the client's history.
        delivered = [turn.reply for turn in turns if turn.delivered]
        if sent and sent != delivered[: len(sent)]:
            self.history_mismatches += 1
        return turns

    def _remember(self, conversation_id: str, turns: list[Turn]) -> list[Turn]:
        """Keep a new conversation, forgetting the least recently used beyond max_conversations."""
        self.conversations[conversation_id] = turns
        self._last_used[conversation_id] = None
        while len(self._last_used) > self.max_conversations:
            oldest, _ = self._last_used.popitem(last=False)
            del self.conversations[oldest]
            self.evicted += 1
        return turns

    def begin_stateless_turn(self, messages: list[dict[str, Any]]) -> list[Turn]:
        """For the OpenAI route, which keeps no conversation: every assistant message in the
        history must be a reply this server sent, character for character (one it no longer
        remembers, once it has forgotten some, counts as resumed)."""
        sent = [m["content"] for m in messages if m["role"] == "assistant"]
        self.history_messages += len(sent)
        replies = self.replies_sent
        unknown = False
        for content in sent:
            if content in replies:
                replies.move_to_end(content)
            else:
                unknown = True
        if unknown:
            # Once the mock has forgotten anything, an unknown reply may be one of those.
            if self.evicted:
                self.resumed += 1
            else:
                self.history_mismatches += 1
        return OneTurn()

    def chunk_written(self, piece: str, late_s: float, started_ns: int | None) -> None:
        """Count a content chunk just written `late_s` after its deadline; the first of a turn
        (`started_ns`: when its request came in) also gives the server-side TTFT."""
        self.chunks += 1
        self.chars += len(piece)
        # To 10 µs: at 1 µs nearly every value is a new one, and 512 distinct values fold into the HDR
        # histogram in Python at once (a 1.5 ms stall inside a ticker wake-up); the limit is 1 ms.
        self.schedule_error_us.record_us(round(late_s * 1e5) * 10)
        if started_ns is not None:
            self.ttft_us.record_us((time.perf_counter_ns() - started_ns) // 1000)

    def reasoning_written(self, piece: str, late_s: float) -> None:
        """Count a reasoning chunk just written `late_s` after its deadline; TTFT waits for the answer."""
        self.reasoning_chunks += 1
        self.reasoning_chars += len(piece)
        self.schedule_error_us.record_us(round(late_s * 1e5) * 10)

    def usage_sent(self, prompt_tokens: int, completion_tokens: int, reasoning_tokens: int) -> None:
        self.usage.update(
            chunks=1,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            reasoning_tokens=reasoning_tokens,
        )

    def delivered(self, turns: list[Turn], index: int) -> None:
        """Mark turn `index` as delivered: its whole reply was sent."""
        turn = turns[index] = turns[index]._replace(delivered=True)
        if isinstance(turns, OneTurn):
            self._remember_reply(turn.reply)

    def _remember_reply(self, reply: str) -> None:
        """Keep an OpenAI-route reply, forgetting the least recently used beyond max_conversations."""
        replies = self.replies_sent
        replies[reply] = None
        replies.move_to_end(reply)
        while len(replies) > self.max_conversations:
            replies.popitem(last=False)
            self.evicted += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "connections": self.connections,
            "turns": self.turns,
            "turns_completed": self.turns_completed,
            "queued": self.queued,
            "queue_peak": self.queue_peak,
            "chunks": self.chunks,
            "chars": self.chars,
            "reasoning_chunks": self.reasoning_chunks,
            "reasoning_chars": self.reasoning_chars,
            "usage": {key: self.usage[key] for key in USAGE_KEYS},
            "conversations": len(self.conversations),
            "max_conversations": self.max_conversations,
            "evicted": self.evicted,
            "resumed": self.resumed,
            "history_mismatches": self.history_mismatches,
            "history_messages": self.history_messages,
            "faults": {kind: self.faults[kind] for kind in sorted({*self.fault_kinds, *self.faults})},
            "status": {str(code): self.status[code] for code in sorted({200, 400, 401, *self.status})},
            "ttft_ms": summary_ms(self.ttft_us),
            "turn_ms": summary_ms(self.turn_us),
            "schedule_error_ms": summary_ms(self.schedule_error_us),
            "hdr": {"ttft": self.ttft_us.encode(), "turn": self.turn_us.encode()},
        }
