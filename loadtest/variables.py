"""Variables in user messages, so that no two requests of a load test are identical.

A message is a template: text with variables between double braces, each drawn again every time the
message is sent.

    {{choice: red | green | blue}}     one of the options, uniformly
    {{number: 1000-9999}}              an integer in the range, both ends included
    {{date: +1..+30}}                  a date that many days from today, as YYYY-MM-DD
    {{date: +1..+30 | %d %B}}          the same with a strftime format; one offset (+3, 0, -1) also works
    {{city}}                           one value of a named list (`variables: {city: [Paris, Lyon]}`)

Templates are compiled when the conversations file is loaded, so an unknown variable or a malformed
one stops the run at start; `render` only draws from the random generator it is given.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from loadtest.errors import ConfigError

KINDS = ("choice", "number", "date")
DATE_FORMAT = "%Y-%m-%d"

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMBER_RANGE = re.compile(r"^\s*(-?\d+)\s*(?:-|\.\.)\s*(-?\d+)\s*$")
_DAYS = re.compile(r"^\s*([+-]?\d+)\s*(?:\.\.\s*([+-]?\d+)\s*)?$")


@dataclass(frozen=True, slots=True)
class Choice:
    """One of `options`, uniformly (a named list is a Choice too)."""

    options: tuple[str, ...]

    def draw(self, rng: random.Random, today: date) -> str:
        return rng.choice(self.options)


@dataclass(frozen=True, slots=True)
class Number:
    """An integer in [low, high]."""

    low: int
    high: int

    def draw(self, rng: random.Random, today: date) -> str:
        return str(rng.randint(self.low, self.high))


@dataclass(frozen=True, slots=True)
class Date:
    """`today` plus a number of days in [low, high], formatted with `fmt`."""

    low: int
    high: int
    fmt: str = DATE_FORMAT

    def draw(self, rng: random.Random, today: date) -> str:
        return (today + timedelta(days=rng.randint(self.low, self.high))).strftime(self.fmt)


Variable = Choice | Number | Date


@dataclass(frozen=True, slots=True)
class Template:
    """A message as written (`source`) and compiled: literal text and variables, in order."""

    source: str
    parts: tuple[str | Variable, ...]

    @classmethod
    def literal(cls, text: str) -> Template:
        """Text sent as it is, braces included (replayed transcripts)."""
        return cls(text, (text,))

    @property
    def is_literal(self) -> bool:
        return all(isinstance(part, str) for part in self.parts)

    def render(self, rng: random.Random, *, today: date | None = None) -> str:
        """The message with every variable drawn anew; dates count from `today` (default: the local date)."""
        if self.is_literal:
            return self.source
        day = today or date.today()
        return "".join(part if isinstance(part, str) else part.draw(rng, day) for part in self.parts)


def compile_template(text: str, named: Mapping[str, Sequence[str]] | None = None) -> Template:
    """Compile a message; ConfigError (without file and line: the caller knows them) when malformed."""
    named = named or {}
    parts: list[str | Variable] = []
    pos = 0
    while (start := text.find("{{", pos)) != -1:
        end = text.find("}}", start + 2)
        if end == -1:
            raise ConfigError(f"unclosed '{{{{' in {_excerpt(text[start:])}: close it with '}}}}'")
        inner = text[start + 2 : end]
        if "{{" in inner:
            raise ConfigError(f"'{{{{' inside a variable in {_excerpt(text[start : end + 2])}")
        if start > pos:
            parts.append(text[pos:start])
        parts.append(_variable(inner, named))
        pos = end + 2
    if pos < len(text):
        parts.append(text[pos:])
    return Template(text, tuple(parts))


def check_list(name: Any, values: Any) -> tuple[str, ...]:
    """One named list of a `variables:` mapping: an identifier that is not a variable kind, and a
    non-empty list of strings or numbers. ConfigError without file and line, like compile_template."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"variable name {name!r} must be a word of letters, digits and '_'")
    if name in KINDS:
        raise ConfigError(f"variable name {name!r} is taken by {{{{{name}: ...}}}}: pick another name")
    if not isinstance(values, list) or not values:
        raise ConfigError(f"variable {name!r} must be a non-empty list of values, like [Paris, Lyon]")
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, str | int | float) or str(value) == "":
            raise ConfigError(
                f"variable {name!r}: {value!r} is not a value: use non-empty strings or numbers"
            )
        out.append(str(value))
    return tuple(out)


def _variable(inner: str, named: Mapping[str, Sequence[str]]) -> Variable:
    kind, colon, args = inner.partition(":")
    kind = kind.strip()
    if not colon:
        if kind in named:
            return Choice(tuple(named[kind]))
        if kind in KINDS:
            raise ConfigError(f"{{{{{inner}}}}} needs arguments, like {_EXAMPLES[kind]}")
        known = ", ".join(sorted(named)) or "none"
        raise ConfigError(
            f"unknown variable {{{{{inner}}}}}: define it under 'variables:' (defined: {known}) "
            "or use choice:, number:, date:"
        )
    if kind == "choice":
        options = tuple(option.strip() for option in args.split("|"))
        if not all(options):
            raise ConfigError(f"{{{{{inner}}}}} has an empty option: use {_EXAMPLES['choice']}")
        return Choice(options)
    if kind == "number":
        match = _NUMBER_RANGE.match(args)
        if not match:
            raise ConfigError(f"{{{{{inner}}}}} is not an integer range: use {_EXAMPLES['number']}")
        low, high = int(match.group(1)), int(match.group(2))
        if high < low:
            raise ConfigError(f"{{{{{inner}}}}}: the range must go low-high, like {high}-{low}")
        return Number(low, high)
    if kind == "date":
        return _date(inner, args)
    raise ConfigError(f"unknown variable kind {kind!r} in {{{{{inner}}}}}: use choice:, number:, date:")


def _date(inner: str, args: str) -> Date:
    days, bar, fmt = args.partition("|")
    match = _DAYS.match(days)
    if not match:
        raise ConfigError(f"{{{{{inner}}}}} is not a range of days from today: use {_EXAMPLES['date']}")
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) is not None else low
    if high < low:
        raise ConfigError(f"{{{{{inner}}}}}: the range must go low..high, like {high:+d}..{low:+d}")
    fmt = fmt.strip() if bar else DATE_FORMAT
    if "%" not in fmt:
        raise ConfigError(f"{{{{{inner}}}}}: the date format needs strftime fields, like %d %B")
    try:
        date(2000, 1, 1).strftime(fmt)
    except ValueError as exc:
        raise ConfigError(f"{{{{{inner}}}}}: bad date format ({exc})") from None
    return Date(low, high, fmt)


_EXAMPLES = {
    "choice": "{{choice: red | green | blue}}",
    "number": "{{number: 1000-9999}}",
    "date": "{{date: +1..+30}} or {{date: +1..+30 | %d %B}}",
}


def _excerpt(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")
