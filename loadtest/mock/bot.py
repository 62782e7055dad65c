"""A bot the mock can play (`--bot FILE`): rules that pick the reply by the user's last message.

    rules:
      - user: "where is my order"          # a regular expression, searched ignoring case
        reply: "Let me look that up."
        ask: "What is your order number?"  # a follow-up question after the reply (optional)
        ask_share: 50%                     # asked this share of the time (default: always)
      - user: '\\b\\d{5}\\b'
        reply: "Thanks! Your order ships tomorrow."
    default: "Sorry, I didn't get that."   # no rule matches: this, or without it the mock's own text

The first rule whose `user` matches the last user message of the request gives the reply. Whether a
follow-up is asked is drawn from the seed, the conversation id and the turn, as the mock's own text
is, so a seeded run repeats. Timings, chunk counts and faults are the mock's as without a bot.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from loadtest.mock.dist import Distribution
from loadtest.mock.text import reply_pieces, split_text
from loadtest.shares import ShareError, parse_share

RULE_KEYS = ("user", "reply", "ask", "ask_share")


class BotError(ValueError):
    """A bot file that cannot be used; the message is one line, `file:line: what is wrong`."""


@dataclass(frozen=True, slots=True)
class BotRule:
    user: re.Pattern[str]
    reply: str
    ask: str | None = None
    ask_share: float = 1.0


@dataclass(frozen=True, slots=True)
class Bot:
    rules: tuple[BotRule, ...]
    default: str | None = None

    def reply(self, seed: int, conversation_id: str, turn: int, message: str) -> str | None:
        """The reply to `message` (the last user message); None when no rule matches and there is no
        default: the mock's own text then."""
        for rule in self.rules:
            if rule.user.search(message) is None:
                continue
            if rule.ask is None or _draw(seed, conversation_id, turn) >= rule.ask_share:
                return rule.reply
            return f"{rule.reply} {rule.ask}"
        return self.default

    def pieces(
        self,
        seed: int,
        conversation_id: str,
        turn: int,
        chunks: Distribution,
        messages: Sequence[dict[str, Any]],
    ) -> list[str]:
        """The reply to the request's `messages` as the stream sends it: split into a `chunks`-sampled
        number of pieces (at most one per character)."""
        text = self.reply(seed, conversation_id, turn, _last_user_message(messages))
        if text is None:
            return reply_pieces(seed, conversation_id, turn, chunks)
        rng = random.Random(_crc(f"{seed}:{conversation_id}:{turn}:bot-split"))
        return split_text(text, min(chunks.sample_count(rng), len(text)), rng)


def load_bot(path: str | Path) -> Bot:
    """Read a bot file; BotError names the file and line of what is wrong, and the fix."""
    given = Path(path)
    try:
        text = given.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BotError(f"--bot {given}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BotError(f"--bot {given}: cannot read it ({exc}): give a UTF-8 YAML file") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise BotError(
            f"{given}{line}: {getattr(exc, 'problem', None) or 'invalid YAML'}: fix the YAML syntax"
        ) from None
    return _bot(doc, _Place(given, root))


@dataclass(frozen=True)
class _Place:
    """A node of the bot file, for messages that name its line."""

    path: Path
    node: Any

    def at(self, key: str | int) -> _Place:
        node = self.node
        if isinstance(node, yaml.MappingNode):
            for key_node, value in node.value:
                if key_node.value == key:
                    return _Place(self.path, value)
        if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            return _Place(self.path, node.value[key])
        return self

    def __str__(self) -> str:
        line = f":{self.node.start_mark.line + 1}" if self.node is not None else ""
        return f"{self.path}{line}"


def _bot(doc: Any, where: _Place) -> Bot:
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list) or not doc["rules"]:
        raise BotError(
            f"{where}: a bot file is a mapping with 'rules': a list of {{user: PATTERN, reply: TEXT}}"
        )
    unknown = sorted(set(doc) - {"rules", "default"}, key=str)
    if unknown:
        raise BotError(f"{where.at(unknown[0])}: unknown key {unknown[0]!r}: use rules, default")
    rules = tuple(_rule(rule, where.at("rules").at(i), i + 1) for i, rule in enumerate(doc["rules"]))
    default = doc.get("default")
    if default is not None and (not isinstance(default, str) or not default.strip()):
        raise BotError(f"{where.at('default')}: 'default' must be a non-empty text (quote it)")
    return Bot(rules, default)


def _rule(rule: Any, where: _Place, number: int) -> BotRule:
    what = f"{where}: rule {number}"
    if not isinstance(rule, dict):
        raise BotError(
            f"{what} must be a mapping, like {{user: 'where is my order', reply: 'Let me check.'}}"
        )
    unknown = sorted(set(rule) - set(RULE_KEYS), key=str)
    if unknown:
        raise BotError(
            f"{where.at(unknown[0])}: rule {number}: unknown key {unknown[0]!r}: use {', '.join(RULE_KEYS)}"
        )
    for key in ("user", "reply", "ask"):
        value = rule.get(key)
        if (key in rule or key != "ask") and (not isinstance(value, str) or not value.strip()):
            raise BotError(f"{where.at(key)}: rule {number}: {key!r} must be a non-empty text (quote it)")
    try:
        pattern = re.compile(rule["user"], re.IGNORECASE)
    except re.error as exc:
        raise BotError(
            f"{where.at('user')}: rule {number}: 'user' is not a regular expression: {exc}"
        ) from None
    share = 1.0
    if "ask_share" in rule:
        if "ask" not in rule:
            raise BotError(
                f"{where.at('ask_share')}: rule {number}: 'ask_share' goes with 'ask', the question"
            )
        try:
            share = parse_share(rule["ask_share"])
        except ShareError as exc:
            raise BotError(f"{where.at('ask_share')}: rule {number}: ask_share {exc}") from None
    return BotRule(pattern, rule["reply"], rule.get("ask"), share)


def _last_user_message(messages: Sequence[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else ""
    return ""


def _draw(seed: int, conversation_id: str, turn: int) -> float:
    """Uniform in [0, 1), the same for the same seed, conversation and turn."""
    return random.Random(_crc(f"{seed}:{conversation_id}:{turn}:ask")).random()


def _crc(text: str) -> int:
    # crc32, not hash(): the same in every process, so a seeded run repeats.
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))
