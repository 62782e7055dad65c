"""Conversation scripts (scenarios), the history a turn sends, and think time between turns.

A conversations file is YAML or JSONL. YAML:

    scenarios:
      - name: order_status        # unique name, used in reports
        weight: 3                 # relative frequency (default 1)
        system: "You are ..."     # optional system message sent first
        turns:                    # the user's messages, in order
          - "Hi, where is my order?"
          - "It is 12345"

JSONL: one scenario object per line with the same keys. Blank lines and lines starting with `#`
are skipped.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml

from loadtest.errors import ConfigError

History = Literal["full", "last"]
HISTORY_MODES: tuple[str, ...] = ("full", "last")


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    turns: tuple[str, ...]
    weight: float = 1.0
    system: str | None = None


def load_scenarios(path: str | Path) -> list[Scenario]:
    """Read a YAML (.yaml/.yml) or JSONL (.jsonl) conversations file; ConfigError names file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: conversations file not found (set --conversations PATH)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read conversations file: {exc.strerror}") from None
    if path.suffix == ".jsonl":
        scenarios = _from_jsonl(path, text)
    elif path.suffix in (".yaml", ".yml"):
        scenarios = _from_yaml(path, text)
    else:
        raise ConfigError(f"{path}: unknown conversations format: use a .yaml, .yml or .jsonl file")
    if not scenarios:
        raise ConfigError(f"{path}: no scenarios: add at least one with a name and turns")
    names = [s.name for s in scenarios]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{path}: scenario name {duplicates[0]!r} is used twice: names must be unique")
    return scenarios


def _from_jsonl(path: Path, text: str) -> list[Scenario]:
    scenarios = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            value = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{lineno}: not valid JSON ({exc}): fix or remove the line") from None
        scenarios.append(_scenario(value, f"{path}:{lineno}", default_name=f"line{lineno}"))
    return scenarios


def _from_yaml(path: Path, text: str) -> list[Scenario]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where}: {problem}: fix the YAML syntax") from None
    items = doc.get("scenarios") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise ConfigError(f"{path}: expected a top-level 'scenarios:' list")
    lines = _yaml_item_lines(text)
    return [
        _scenario(
            item,
            f"{path}:{lines[i]}" if i < len(lines) else f"{path}: scenario {i + 1}",
            default_name=f"scenario{i + 1}",
        )
        for i, item in enumerate(items)
    ]


def _yaml_item_lines(text: str) -> list[int]:
    """Line numbers of the items of the top-level scenarios list, for error messages."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return []
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if getattr(key, "value", None) == "scenarios":
                node = value
                break
    if not isinstance(node, yaml.SequenceNode):
        return []
    return [item.start_mark.line + 1 for item in node.value]


def _scenario(value: Any, where: str, *, default_name: str) -> Scenario:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: a scenario must be an object with 'name' and 'turns'")
    unknown = sorted(set(value) - {"name", "weight", "system", "turns"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}: use name, weight, system, turns")
    name = value.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: 'name' must be a non-empty string")
    turns = value.get("turns")
    if not isinstance(turns, list) or not turns:
        raise ConfigError(f"{where}: scenario {name!r} needs 'turns': a non-empty list of user messages")
    texts = []
    for i, turn in enumerate(turns, start=1):
        text = turn.get("user") if isinstance(turn, dict) else turn
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{where}: scenario {name!r} turn {i} must be a non-empty string")
        texts.append(text)
    weight = value.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
        raise ConfigError(f"{where}: scenario {name!r} weight must be a number > 0, got {weight!r}")
    system = value.get("system")
    if system is not None and not isinstance(system, str):
        raise ConfigError(f"{where}: scenario {name!r} 'system' must be a string")
    return Scenario(name=name, turns=tuple(texts), weight=float(weight), system=system)


def choose(scenarios: Sequence[Scenario], rng: random.Random) -> Scenario:
    return rng.choices(scenarios, weights=[s.weight for s in scenarios])[0]


@dataclass
class Conversation:
    """The messages of one conversation so far, as the client sent and received them."""

    scenario: Scenario
    conversation_id: str
    history: History = "full"
    messages: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.scenario.system is not None and not self.messages:
            self.messages.append({"role": "system", "content": self.scenario.system})

    def request_messages(self, user_text: str) -> list[dict[str, str]]:
        """Record the user's message and return what the request carries for this turn."""
        message = {"role": "user", "content": user_text}
        self.messages.append(message)
        if self.history == "last":
            return [message]
        return list(self.messages)

    def add_reply(self, content: str) -> None:
        self.messages.append({"role": "assistant", "content": content})


_RANGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:-\s*(\d+(?:\.\d+)?))?\s*s?\s*$")


@dataclass(frozen=True, slots=True)
class ThinkTime:
    """Seconds between turns: uniform in [low, high] (a constant when equal)."""

    low: float
    high: float

    @classmethod
    def parse(cls, text: str) -> ThinkTime:
        match = _RANGE.match(str(text))
        if not match:
            raise ConfigError(
                f"--think-time {text!r} is not a duration: use seconds like 0, 3 or a range like 2-8"
            )
        low = float(match.group(1))
        high = float(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise ConfigError(f"--think-time {text!r}: the range must go low-high, like {high:g}-{low:g}")
        return cls(low, high)

    def sample(self, rng: random.Random) -> float:
        return self.low if self.high == self.low else rng.uniform(self.low, self.high)
