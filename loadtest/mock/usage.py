"""The usage chunk of the OpenAI route, with token counts as the mock can make them: in words.

OpenAI sends it when the request has `stream_options: {"include_usage": true}`, after the finish chunk
and before `data: [DONE]`, with `"choices": []`; every other chunk of that stream carries
`"usage": null`. The mock has no tokenizer: a token is a whitespace-separated word (`str.split`), of
the request messages' contents and of the reply. Reasoning words count in `completion_tokens` too, as
OpenAI counts reasoning tokens, and are named apart in `completion_tokens_details`. NLX sends no usage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def words(text: str) -> int:
    return len(text.split())


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int  # reasoning included
    reasoning_tokens: int | None  # None: no reasoning was sent

    def json(self) -> dict[str, Any]:
        """The chunk's `usage` object, as OpenAI spells it."""
        counts: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if self.reasoning_tokens is not None:
            counts["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return counts


def count_usage(messages: Sequence[Mapping[str, Any]], reply: str, reasoning: str | None) -> Usage:
    """The usage of a turn that got `messages` and sent `reply`, after `reasoning` (None: none sent)."""
    thought = None if reasoning is None else words(reasoning)
    return Usage(
        prompt_tokens=sum(words(message["content"]) for message in messages),
        completion_tokens=words(reply) + (thought or 0),
        reasoning_tokens=thought,
    )
