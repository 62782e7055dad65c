"""What the mock remembers: conversations, counters and server-side latency histograms."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

# Microseconds, one microsecond to one hour, three significant digits: the project-wide layout.
_LOWEST_US = 1
_HIGHEST_US = 3_600_000_000
_DIGITS = 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)


def record_us(histogram: HdrHistogram, value_us: int) -> None:
    """Record, clamping to the histogram's range (early wake-ups give tiny negative errors)."""
    histogram.record_value(min(max(value_us, 0), _HIGHEST_US))


def summary_ms(histogram: HdrHistogram) -> dict[str, float | int]:
    """Count and percentiles of a microsecond histogram, in milliseconds."""

    def ms(value_us: int) -> float:
        return round(value_us / 1000, 3)

    return {
        "count": int(histogram.get_total_count()),
        "p50": ms(histogram.get_value_at_percentile(50)),
        "p90": ms(histogram.get_value_at_percentile(90)),
        "p99": ms(histogram.get_value_at_percentile(99)),
        "max": ms(histogram.get_max_value()),
    }


@dataclass
class Turn:
    messages: list[dict[str, Any]]
    reply: str


@dataclass
class Conversation:
    id: str
    turns: list[Turn] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "turns": [{"messages": turn.messages, "reply": turn.reply} for turn in self.turns],
        }


class MockState:
    """Counters, conversations and histograms of one mock process; `reset()` clears all of it."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.turns = 0
        self.turns_completed = 0
        self.chunks = 0
        self.chars = 0
        self.history_mismatches = 0
        self.history_messages = 0
        self.status: Counter[int] = Counter()
        self.conversations: dict[str, Conversation] = {}
        self.replies_sent: set[str] = set()
        self.ttft_us = new_histogram()
        self.turn_us = new_histogram()
        self.schedule_error_us = new_histogram()

    def begin_turn(self, conversation_id: str, messages: list[dict[str, Any]]) -> Conversation:
        """Check the request's assistant messages against the replies sent so far; count mismatches.

        A request may carry no assistant message at all (only the newest user message); when it
        carries k of them they must equal the first k replies of the conversation, in order.
        """
        conversation = self.conversations.get(conversation_id)
        if conversation is None:
            conversation = self.conversations[conversation_id] = Conversation(conversation_id)
        sent = [m["content"] for m in messages if m["role"] == "assistant"]
        self.history_messages += len(sent)
        if sent and sent != [turn.reply for turn in conversation.turns[: len(sent)]]:
            self.history_mismatches += 1
        return conversation

    def begin_stateless_turn(self, conversation_id: str, messages: list[dict[str, Any]]) -> Conversation:
        """For the OpenAI route, which keeps no conversation: every assistant message in the
        history must be a reply this server sent, character for character."""
        sent = [m["content"] for m in messages if m["role"] == "assistant"]
        self.history_messages += len(sent)
        if any(content not in self.replies_sent for content in sent):
            self.history_mismatches += 1
        return Conversation(conversation_id)

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "turns": self.turns,
            "turns_completed": self.turns_completed,
            "chunks": self.chunks,
            "chars": self.chars,
            "conversations": len(self.conversations),
            "history_mismatches": self.history_mismatches,
            "history_messages": self.history_messages,
            "status": {str(code): self.status[code] for code in sorted({200, 400, 401, *self.status})},
            "ttft_ms": summary_ms(self.ttft_us),
            "turn_ms": summary_ms(self.turn_us),
            "schedule_error_ms": summary_ms(self.schedule_error_us),
            "hdr": {
                "ttft": self.ttft_us.encode().decode("ascii"),
                "turn": self.turn_us.encode().decode("ascii"),
            },
        }
