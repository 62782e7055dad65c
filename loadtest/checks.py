"""Checks on a reassembled reply: a turn's expectations, and the global fallback pattern.

A check returns None when the reply is fine, else a short description of what is wrong, such as
`reply does not contain 'order'`; the caller turns it into a failed turn of kind `assertion`.

    expect:
      contains: order                  # or a list: every one must be in the reply (case-insensitive)
      not_contains: [sorry, error]     # none of them may be in the reply (case-insensitive)
      regex: "\\b\\d{5}\\b"            # re.search must find it (case-sensitive unless (?i))
      max_length: 500                  # at most this many characters
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadtest.errors import ConfigError

EXPECT_KEYS = ("contains", "not_contains", "regex", "max_length")
FALLBACK_EXCERPT = 80

Check = Callable[[str], str | None]
# Given a key of the expect mapping (None: the mapping itself), the "file:line" an error should name.
Locate = Callable[[str | None], str]


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a turn's reply must satisfy; every given condition must hold."""

    contains: tuple[str, ...] = ()
    not_contains: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None
    max_length: int | None = None

    @classmethod
    def parse(cls, value: Any, locate: Locate | None = None, *, what: str = "expect") -> Expectation:
        """Validate an `expect:` mapping; ConfigError is `{locate(key)}: expect.KEY ...`. `what` names
        the mapping in messages: a `reply_is` rule's condition is written the same way."""
        where = locate or (lambda key: what)
        if not isinstance(value, dict) or not value:
            raise ConfigError(
                f"{where(None)}: '{what}' must be a mapping with any of {', '.join(EXPECT_KEYS)}"
            )
        for key in value:
            if key not in EXPECT_KEYS:
                raise ConfigError(f"{where(key)}: unknown {what} key {key!r}: use {', '.join(EXPECT_KEYS)}")
        regex = None
        if "regex" in value:
            pattern = value["regex"]
            if not isinstance(pattern, str) or not pattern:
                raise ConfigError(f"{where('regex')}: {what}.regex must be a non-empty string")
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"{where('regex')}: {what}.regex {pattern!r} is not valid: {exc}") from None
        max_length = value.get("max_length")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        ):
            raise ConfigError(f"{where('max_length')}: {what}.max_length must be an integer >= 1")
        return cls(
            contains=_strings(value, "contains", where, what),
            not_contains=_strings(value, "not_contains", where, what),
            regex=regex,
            max_length=max_length,
        )

    def check(self, reply: str) -> str | None:
        """None when the reply satisfies every condition, else what the first failing one saw."""
        folded = reply.casefold()
        for text in self.contains:
            if text.casefold() not in folded:
                return f"reply does not contain {text!r}"
        for text in self.not_contains:
            if text.casefold() in folded:
                return f"reply contains {text!r}"
        if self.regex is not None and self.regex.search(reply) is None:
            return f"reply does not match /{self.regex.pattern}/"
        if self.max_length is not None and len(reply) > self.max_length:
            return f"reply is {len(reply)} characters long, over max_length {self.max_length}"
        return None


def fallback_check(pattern: str) -> Check:
    """A check that fails replies matching `pattern` (case-insensitive): the bot's "I didn't get that".

    ConfigError names --fallback-pattern when the pattern is empty or not a regular expression.
    """
    if not pattern:
        raise ConfigError(
            '--fallback-pattern is empty: give a regular expression such as "didn\'t (get|understand)"'
        )
    try:
        regex = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(
            f"--fallback-pattern {pattern!r} is not a valid regular expression: {exc}"
        ) from None

    def check(reply: str) -> str | None:
        if regex.search(reply) is None:
            return None
        return f'fallback reply: "{excerpt(reply)}"'

    return check


def excerpt(text: str, limit: int = FALLBACK_EXCERPT) -> str:
    """`text` on one line (runs of whitespace, U+2028 included, become one space), cut to `limit` chars."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _strings(value: dict[str, Any], key: str, where: Locate, what: str) -> tuple[str, ...]:
    given = value.get(key)
    if given is None:
        return ()
    items = [given] if isinstance(given, str) else given
    if not isinstance(items, list) or not items or not all(isinstance(s, str) and s for s in items):
        raise ConfigError(
            f"{where(key)}: {what}.{key} must be a non-empty string or list of non-empty strings"
        )
    return tuple(items)
