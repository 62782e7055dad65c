"""How long a simulated user waits: think time before each message, and abandoned conversations.

`--think-time` is one of

    0, 3                  a constant number of seconds
    2-8                   uniform between 2 and 8 s
    exp:5                 exponential with a mean of 5 s
    human                 read the last reply, then type the next message:
    human:read_wpm=240,type_cpm=200,floor=1,jitter=0.25,max=60

The fixed models (constant, uniform, exponential) wait between two turns and between two
conversations, never before the first turn (the wait between conversations comes first). `human`
waits before every turn, the first one included: words of the previous reply / read_wpm minutes,
plus characters of the next message / type_cpm minutes, at least `floor` seconds, times a factor
uniform in [1 - jitter, 1 + jitter], at most `max` seconds. Between two conversations it waits
uniformly between `floor` and 3 × `floor` seconds (1 to 3 s by default, the default `--think-time`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Protocol

from loadtest.errors import ConfigError
from loadtest.shares import ShareError, parse_share

FORMS = (
    "0, 3 (seconds), 2-8 (uniform), exp:5 (exponential, mean 5 s) or human[:read_wpm=240,type_cpm=200,...]"
)

_SECONDS = r"(\d+(?:\.\d+)?)"
_RANGE = re.compile(rf"^\s*{_SECONDS}\s*(?:-\s*{_SECONDS})?\s*s?\s*$")


class Pacing(Protocol):
    """A think-time model; every method draws from the caller's random generator."""

    def before_turn(self, rng: random.Random, previous_reply: str | None, next_message: str) -> float:
        """Seconds to wait before sending `next_message`; `previous_reply` is None on the first turn."""
        ...

    def between_conversations(self, rng: random.Random) -> float:
        """Seconds to wait after a conversation, before the next one starts."""
        ...


@dataclass(frozen=True, slots=True)
class Uniform:
    """Uniform in [low, high] seconds; a constant when they are equal."""

    low: float
    high: float

    @classmethod
    def parse(cls, text: str) -> Uniform:
        """`3`, `2-8`, `0.5 - 1.5 s`; ConfigError names --think-time and every accepted form."""
        match = _RANGE.match(str(text))
        if not match:
            raise ConfigError(f"--think-time {text!r} is not a duration: use {FORMS}")
        low = float(match.group(1))
        high = float(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise ConfigError(f"--think-time {text!r}: the range must go low-high, like {high:g}-{low:g}")
        return cls(low, high)

    def sample(self, rng: random.Random) -> float:
        return self.low if self.high == self.low else rng.uniform(self.low, self.high)

    def before_turn(self, rng: random.Random, previous_reply: str | None, next_message: str) -> float:
        return 0.0 if previous_reply is None else self.sample(rng)

    def between_conversations(self, rng: random.Random) -> float:
        return self.sample(rng)


@dataclass(frozen=True, slots=True)
class Exponential:
    """Exponential with mean `mean` seconds: many short pauses, a few long ones."""

    mean: float

    def sample(self, rng: random.Random) -> float:
        return rng.expovariate(1.0 / self.mean)

    def before_turn(self, rng: random.Random, previous_reply: str | None, next_message: str) -> float:
        return 0.0 if previous_reply is None else self.sample(rng)

    def between_conversations(self, rng: random.Random) -> float:
        return self.sample(rng)


@dataclass(frozen=True, slots=True)
class Human:
    """Time to read the previous reply and type the next message (see the module docstring)."""

    read_wpm: float = 240.0
    type_cpm: float = 200.0
    floor: float = 1.0
    jitter: float = 0.25
    cap: float = 60.0

    @classmethod
    def parse(cls, text: str, args: str) -> Human:
        """`read_wpm=240,type_cpm=200,floor=1,jitter=0.25,max=60`, any subset, in any order."""
        values: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in args.split(","))):
            key, eq, raw = (s.strip() for s in item.partition("="))
            if key not in _HUMAN_KEYS:
                raise ConfigError(
                    f"--think-time {text!r}: unknown setting {key!r}: use {', '.join(_HUMAN_KEYS)}"
                )
            try:
                number = float(raw) if eq else -1.0
            except ValueError:
                number = -1.0
            if not number >= 0:  # also false for nan
                raise ConfigError(f"--think-time {text!r}: {key} needs a number >= 0, like {key}=1")
            values[_HUMAN_KEYS[key]] = number
        human = cls(**values)
        if human.read_wpm <= 0 or human.type_cpm <= 0:
            raise ConfigError(f"--think-time {text!r}: read_wpm and type_cpm must be > 0")
        if human.jitter > 1:
            raise ConfigError(f"--think-time {text!r}: jitter must be at most 1, like jitter=0.25")
        if human.cap < human.floor:
            raise ConfigError(f"--think-time {text!r}: max must be at least floor ({human.floor:g})")
        return human

    def read_seconds(self, reply: str) -> float:
        """Words (runs of non-space) of `reply` at read_wpm."""
        return len(reply.split()) * 60.0 / self.read_wpm

    def type_seconds(self, message: str) -> float:
        """Characters of `message` at type_cpm."""
        return len(message) * 60.0 / self.type_cpm

    def before_turn(self, rng: random.Random, previous_reply: str | None, next_message: str) -> float:
        read = 0.0 if previous_reply is None else self.read_seconds(previous_reply)
        base = max(self.floor, read + self.type_seconds(next_message))
        return min(self.cap, base * rng.uniform(1.0 - self.jitter, 1.0 + self.jitter))

    def between_conversations(self, rng: random.Random) -> float:
        return min(self.cap, rng.uniform(self.floor, 3.0 * self.floor))


_HUMAN_KEYS = {
    "read_wpm": "read_wpm",
    "type_cpm": "type_cpm",
    "floor": "floor",
    "jitter": "jitter",
    "max": "cap",
}


def parse_think_time(text: str) -> Pacing:
    """The think-time model for `--think-time`; ConfigError (one line) names the accepted forms."""
    spec = str(text).strip()
    kind, colon, args = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "human":
        return Human.parse(spec, args)
    if kind == "exp":
        match = _RANGE.match(args)
        if not colon or not match or match.group(2) is not None or float(match.group(1)) <= 0:
            raise ConfigError(f"--think-time {spec!r}: exp needs a mean in seconds > 0, like exp:5")
        return Exponential(float(match.group(1)))
    return Uniform.parse(spec)


def parse_abandon(text: str | float) -> float:
    """`--abandon`: the share of conversations that stop early, as `10%` or `0.1`, between 0 and 1."""
    try:
        return parse_share(text)
    except ShareError:
        raise ConfigError(
            f"--abandon {text!r} is not a share of conversations: use a percentage like 10% "
            "or a fraction like 0.1"
        ) from None


def abandon_after(rng: random.Random, share: float, n_turns: int) -> int | None:
    """After which turn (1 .. n_turns - 1, uniformly) a conversation stops, or None to play it all.

    `share` of the conversations with two turns or more are abandoned; one turn is never abandoned.
    """
    if n_turns < 2 or share <= 0.0 or rng.random() >= share:
        return None
    return rng.randint(1, n_turns - 1)
