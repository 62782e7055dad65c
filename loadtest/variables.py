"""Variables in user messages, so that no two requests of a load test are identical.

A message is a template: text with variables between double braces, each drawn again every time the
message is sent.

    {{choice: red | green | blue}}     one of the options, uniformly
    {{number: 1000-9999}}              an integer in the range, both ends included
    {{date: +1..+30}}                  a date that many days from today, as YYYY-MM-DD
    {{date: +1..+30 | %d %B}}          the same with a strftime format; one offset (+3, 0, -1) also works
    {{city}}                           one value of a named list (`variables: {city: [Paris, Lyon]}`)
    {{order = number: 10000-99999}}    any of the above, drawn once and named for the rest of the
                                       conversation (it is written here too)
    {{order}}                          the value named `order` earlier in the conversation
    {{{{                               a literal `{{` (a `}}` outside a variable needs no escape)

Templates are compiled when the conversations file is loaded, so an unknown variable or a malformed
one stops the run at start; `render` only draws from the random generator it is given. The messages
of one conversation compile together (`compile_script`), since a value named in one turn can be used
in the turns after it, never before. A turn may have several messages, one of which is sent (a
`reply_is` turn picks it by the last reply: `compile_turns`); those use named values but name none,
since a later turn could not count on the one picked.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from loadtest.errors import ConfigError

KINDS = ("choice", "number", "date")
DATE_FORMAT = "%Y-%m-%d"
ESCAPE = "{{{{"  # writes a literal "{{"

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Where a message names a value, found before compiling so that a use ahead of it says where it is.
_DEFINITION = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*=")
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
class Define:
    """A variable drawn once per conversation and named: `{{order = number: 10000-99999}}`."""

    name: str
    variable: Variable


@dataclass(frozen=True, slots=True)
class Reuse:
    """The value a `Define` drew earlier in the same conversation: `{{order}}`."""

    name: str


Part = str | Variable | Define | Reuse


@dataclass(frozen=True, slots=True)
class Template:
    """A message as written (`source`) and compiled: literal text and variables, in order."""

    source: str
    parts: tuple[Part, ...]

    @classmethod
    def literal(cls, text: str) -> Template:
        """Text sent as it is, braces included (replayed transcripts)."""
        return cls(text, (text,))

    @property
    def is_literal(self) -> bool:
        return all(isinstance(part, str) for part in self.parts)

    @property
    def defines(self) -> tuple[str, ...]:
        """The names of the values this message draws for the rest of its conversation."""
        return tuple(part.name for part in self.parts if isinstance(part, Define))

    @property
    def uses_values(self) -> bool:
        """Whether rendering needs the conversation's named values (it names or reuses one)."""
        return any(isinstance(part, Define | Reuse) for part in self.parts)

    def render(
        self, rng: random.Random, *, today: date | None = None, values: MutableMapping[str, str] | None = None
    ) -> str:
        """The message with every variable drawn anew; dates count from `today` (default: the local date).

        `values` holds the conversation's named values: a `{{name = ...}}` stores its draw there and a
        `{{name}}` reads it (KeyError when the conversation has not drawn it)."""
        first = self.parts[0]
        if len(self.parts) == 1 and isinstance(first, str):
            return first
        day = today or date.today()
        named = {} if values is None else values
        return "".join(_draw(part, rng, day, named) for part in self.parts)


def _draw(part: Part, rng: random.Random, day: date, values: MutableMapping[str, str]) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, Reuse):
        return values[part.name]
    if isinstance(part, Define):
        value = values[part.name] = part.variable.draw(rng, day)
        return value
    return part.draw(rng, day)


class MessageError(ConfigError):
    """A message of a script that does not compile; `index` is its turn (0: the first), `choice` which
    of the turn's messages it is when the turn has several (else None)."""

    def __init__(self, index: int, message: str, choice: int | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.choice = choice


def compile_script(
    texts: Sequence[str], named: Mapping[str, Sequence[str]] | None = None
) -> tuple[Template, ...]:
    """Compile the messages of one conversation, in order: a value named in one (`{{order = ...}}`) is
    known in the ones after it. MessageError says which message is wrong and why."""
    return tuple(only for (only,) in compile_turns(texts, named))


def compile_turns(
    turns: Sequence[str | tuple[str, ...]], named: Mapping[str, Sequence[str]] | None = None
) -> tuple[tuple[Template, ...], ...]:
    """Compile the turns of one conversation, in order: a message (str), or the messages one of which
    is picked when the turn plays (a tuple). A value named in a message is known in the turns after
    it; a picked message names none (the turns after it could not count on it). MessageError says
    which message is wrong; each turn comes back as a tuple of its templates."""
    later: dict[str, int] = {}
    for index, turn in enumerate(turns):
        for text in (turn,) if isinstance(turn, str) else turn:
            for name in _DEFINITION.findall(text):
                later.setdefault(name, index)
    scope = _Scope(named or {}, later)
    compiled: list[tuple[Template, ...]] = []
    for index, turn in enumerate(turns):
        scope.index = index
        if isinstance(turn, str):
            compiled.append((_compile_message(turn, scope, index, None),))
        else:
            compiled.append(tuple(_compile_message(text, scope, index, n) for n, text in enumerate(turn)))
    return tuple(compiled)


def _compile_message(text: str, scope: _Scope, index: int, choice: int | None) -> Template:
    try:
        template = _compile(text, scope)
        if choice is not None and template.defines:
            raise ConfigError(
                f"{{{{{template.defines[0]} = ...}}}}: a message picked by the reply cannot name a value "
                "(the turns after it could not count on it): name it in a turn every conversation sends"
            )
    except ConfigError as exc:
        raise MessageError(index, str(exc), choice) from None
    return template


def compile_template(text: str, named: Mapping[str, Sequence[str]] | None = None) -> Template:
    """Compile one message on its own; ConfigError (without file and line: the caller knows them) when
    malformed. A value it names can be used later in the same message only."""
    return _compile(text, _Scope(named or {}, {}))


class _Scope:
    """What a name can stand for while a conversation's messages compile: a named list, or a value
    named by an earlier message (or earlier in this one)."""

    def __init__(self, named: Mapping[str, Sequence[str]], later: Mapping[str, int]) -> None:
        self.named = named
        # The first message naming each value, found before compiling: a use ahead of it says where.
        self.later = later
        self.defined: dict[str, int] = {}
        self.index = 0

    def part(self, inner: str) -> Part:
        head, colon, _ = inner.partition(":")
        if "=" in head:
            name, _, rest = inner.partition("=")
            return self._define(inner, name.strip(), rest)
        name = inner.strip()
        if colon or name in self.named:
            return _variable(inner, self.named)
        if name in self.defined:
            return Reuse(name)
        if name in self.later:
            raise ConfigError(
                f"{{{{{name}}}}} is used before turn {self.later[name] + 1} names it: name the value where "
                f"it is first used, {{{{{name} = ...}}}}"
            )
        return _variable(inner, self.named)

    def _define(self, inner: str, name: str, rest: str) -> Define:
        if not _NAME.match(name):
            raise ConfigError(f"{{{{{inner}}}}}: a value's name must be a word of letters, digits and '_'")
        if name in KINDS:
            raise ConfigError(f"{{{{{inner}}}}}: {name!r} is a variable kind: name the value otherwise")
        if name in self.named:
            raise ConfigError(
                f"{{{{{inner}}}}}: {name!r} is a list under 'variables:': name the value otherwise"
            )
        if name in self.defined:
            raise ConfigError(
                f"{{{{{inner}}}}}: {name!r} is named already (turn {self.defined[name] + 1}): reuse it "
                f"with {{{{{name}}}}}"
            )
        if not rest.strip():
            raise ConfigError(f"{{{{{inner}}}}} names nothing: use {{{{{name} = number: 10000-99999}}}}")
        variable = _variable(rest.strip(), self.named)
        self.defined[name] = self.index
        return Define(name, variable)


def _compile(text: str, scope: _Scope) -> Template:
    parts: list[Part] = []
    literal: list[str] = []  # text since the last variable, escapes resolved
    pos = 0
    while (start := text.find("{{", pos)) != -1:
        literal.append(text[pos:start])
        if text.startswith(ESCAPE, start):
            literal.append("{{")
            pos = start + len(ESCAPE)
            continue
        end = text.find("}}", start + 2)
        if end == -1:
            raise ConfigError(
                f"unclosed '{{{{' in {_excerpt(text[start:])}: close it with '}}}}', or write '{ESCAPE}' "
                "for a literal '{{'"
            )
        inner = text[start + 2 : end]
        if "{{" in inner:
            raise ConfigError(f"'{{{{' inside a variable in {_excerpt(text[start : end + 2])}")
        if any(literal):
            parts.append("".join(literal))
        literal = []
        parts.append(scope.part(inner))
        pos = end + 2
    literal.append(text[pos:])
    if any(literal) or not parts:
        parts.append("".join(literal))
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
            f"unknown variable {{{{{inner}}}}}: define it under 'variables:' (defined: {known}), name it in "
            f"an earlier turn ({{{{{kind or 'name'} = number: 1-9}}}}) or use choice:, number:, date:"
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
