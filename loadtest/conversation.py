"""Conversation scripts (scenarios), the history a turn sends, and replayed transcripts.

A conversations file is YAML or JSONL. YAML:

    variables:                    # optional named lists, used as {{city}} in messages
      city: [Paris, Lyon, Nice]
    scenarios:
      - name: order_status        # unique name, used in reports
        weight: 3                 # relative frequency (default 1)
        system: "You are ..."     # optional system message sent first
        turns:                    # the user's messages, in order
          - "Hi, where is my order?"
          - user: "It is {{number: 10000-99999}}"       # a message with variables (loadtest.variables)
            expect: {contains: order, max_length: 500}  # checks on the reply (loadtest.checks)

JSONL: one object per line; blank lines and lines starting with `#` are skipped. A line is

- a scenario, with the same keys as in YAML;
- named lists: `{"variables": {"city": ["Paris", "Lyon"]}}`;
- a transcript of a past conversation, recognised by its "messages":
  `{"id": "c1", "scenario": "refunds", "messages": [{"role": "user", "content": "..."}, ...]}`.
  Only its user messages are replayed, in order and as written (no variables); assistant and system
  messages are ignored, since the live replies make the history. Transcripts are grouped into one
  scenario by "scenario" (default "replay"), which plays one of them, picked uniformly, per
  conversation; other keys are ignored, as exports carry their own metadata;
- the settings of a transcript group: `{"scenario": "refunds", "weight": 2, "system": "..."}`.
  A group's weight is otherwise its number of transcripts.

Every error names the file and line: `conversations.yaml:12: scenario 'booking' turn 2: ...`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml

from loadtest.checks import Expectation
from loadtest.errors import ConfigError
from loadtest.variables import Template, check_list, compile_template

History = Literal["full", "last"]
HISTORY_MODES: tuple[str, ...] = ("full", "last")
REPLAY_SCENARIO = "replay"
ROLES = ("user", "assistant", "system")


@dataclass(frozen=True, slots=True)
class Turn:
    """One user message (a template) and what its reply must satisfy."""

    template: Template
    expect: Expectation | None = None

    @classmethod
    def literal(cls, text: str, expect: Expectation | None = None) -> Turn:
        return cls(Template.literal(text), expect)

    @property
    def text(self) -> str:
        """The message as written, variables not drawn."""
        return self.template.source

    def render(self, rng: random.Random, *, today: date | None = None) -> str:
        """The message to send, its variables drawn anew (see loadtest.variables)."""
        return self.template.render(rng, today=today)

    def check(self, reply: str) -> str | None:
        """None when the reply meets the expectations (or there are none), else what failed."""
        return None if self.expect is None else self.expect.check(reply)


Script = tuple[Turn, ...]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named conversation with a weight: one script, or several (transcripts) picked uniformly."""

    name: str
    scripts: tuple[Script, ...]
    weight: float = 1.0
    system: str | None = None

    @classmethod
    def of(
        cls, name: str, turns: Sequence[str | Turn], *, weight: float = 1.0, system: str | None = None
    ) -> Scenario:
        """A one-script scenario; strings are sent as they are."""
        script = tuple(t if isinstance(t, Turn) else Turn.literal(t) for t in turns)
        return cls(name, (script,), weight, system)

    def pick(self, rng: random.Random) -> Script:
        """The turns one conversation plays: the only script, or one of several, uniformly."""
        return self.scripts[0] if len(self.scripts) == 1 else rng.choice(self.scripts)


def choose(scenarios: Sequence[Scenario], rng: random.Random) -> Scenario:
    """A scenario at random, by weight."""
    return rng.choices(scenarios, weights=[s.weight for s in scenarios])[0]


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


@dataclass(frozen=True, slots=True)
class _Where:
    """A place in a conversations file for error messages: a line, and in YAML the node there."""

    path: Path
    line: int | None = None
    node: yaml.Node | None = None

    def at(self, *keys: str | int | None) -> _Where:
        """The place of a key or index below this one (None keys are skipped), or the nearest found."""
        node, line = self.node, self.line
        for key in keys:
            if key is None:
                continue
            found = _child(node, key)
            if found is None:
                return _Where(self.path, line)
            line, node = found
        return _Where(self.path, line, node)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else str(self.path)


def _child(node: yaml.Node | None, key: str | int) -> tuple[int, yaml.Node] | None:
    """(line, value node) of a mapping key (the key's line) or a sequence index."""
    if isinstance(node, yaml.MappingNode) and isinstance(key, str):
        for key_node, value in node.value:
            if getattr(key_node, "value", None) == key:
                return key_node.start_mark.line + 1, value
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        item = node.value[key]
        return item.start_mark.line + 1, item
    return None


def _from_yaml(path: Path, text: str) -> list[Scenario]:
    try:
        doc = yaml.safe_load(text)
        root = _Where(path, None, yaml.compose(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where}: {problem}: fix the YAML syntax") from None
    named: dict[str, tuple[str, ...]] = {}
    if isinstance(doc, dict):
        unknown = sorted(set(doc) - {"scenarios", "variables"}, key=str)
        if unknown:
            raise ConfigError(f"{root.at(unknown[0])}: unknown key {unknown[0]!r}: use scenarios, variables")
        if "variables" in doc:
            named = _named_lists(doc["variables"], root.at("variables"))
        items, at_items = doc.get("scenarios"), root.at("scenarios")
    else:
        items, at_items = doc, root
    if not isinstance(items, list):
        raise ConfigError(f"{path}: expected a top-level 'scenarios:' list")
    return [
        _scenario(item, at_items.at(i), named, default_name=f"scenario{i + 1}")
        for i, item in enumerate(items)
    ]


@dataclass
class _Group:
    """Transcripts of one scenario name, while a JSONL file is read."""

    name: str
    where: _Where
    scripts: list[Script] = field(default_factory=list)
    weight: float | None = None
    system: str | None = None
    settings_line: _Where | None = None

    def scenario(self) -> Scenario:
        if not self.scripts:
            raise ConfigError(f"{self.where}: scenario {self.name!r} has settings but no transcripts")
        weight = self.weight if self.weight is not None else float(len(self.scripts))
        return Scenario(self.name, tuple(self.scripts), weight, self.system)


def _from_jsonl(path: Path, text: str) -> list[Scenario]:
    records: list[tuple[_Where, dict[str, Any]]] = []
    named: dict[str, tuple[str, ...]] = {}
    for lineno, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = _Where(path, lineno)
        try:
            value = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON ({exc}): fix or remove the line") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: a line must be a JSON object: a scenario, a transcript or variables")
        if set(value) == {"variables"}:
            for name, values in _named_lists(value["variables"], where).items():
                if name in named:
                    raise ConfigError(f"{where}: variable {name!r} is defined twice")
                named[name] = values
        else:
            records.append((where, value))
    entries: list[Scenario | _Group] = []
    groups: dict[str, _Group] = {}
    for where, value in records:
        if "messages" in value or "scenario" in value:
            name = value.get("scenario", REPLAY_SCENARIO)
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"{where}: 'scenario' must be a non-empty string (the transcript group)")
            if name not in groups:
                groups[name] = _Group(name, where)
                entries.append(groups[name])
            if "messages" in value:
                groups[name].scripts.append(_transcript(value, where))
            else:
                _group_settings(groups[name], value, where)
        else:
            entries.append(_scenario(value, where, named, default_name=f"line{where.line}"))
    return [e.scenario() if isinstance(e, _Group) else e for e in entries]


def _named_lists(value: Any, where: _Where) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where}: 'variables' must map names to lists of values, like {{city: [Paris, Lyon]}}"
        )
    named = {}
    for name, values in value.items():
        try:
            named[name] = check_list(name, values)
        except ConfigError as exc:
            raise ConfigError(f"{where.at(name)}: {exc}") from None
    return named


def _scenario(value: Any, where: _Where, named: dict[str, tuple[str, ...]], *, default_name: str) -> Scenario:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: a scenario must be an object with 'name' and 'turns'")
    unknown = sorted(set(value) - {"name", "weight", "system", "turns"}, key=str)
    if unknown:
        raise ConfigError(
            f"{where.at(unknown[0])}: unknown key {unknown[0]!r}: use name, weight, system, turns"
        )
    name = value.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where.at('name')}: 'name' must be a non-empty string")
    turns = value.get("turns")
    if not isinstance(turns, list) or not turns:
        raise ConfigError(f"{where}: scenario {name!r} needs 'turns': a non-empty list of user messages")
    script = tuple(
        _turn(turn, where.at("turns", i), f"scenario {name!r} turn {i + 1}", named)
        for i, turn in enumerate(turns)
    )
    weight = _weight(value, where, f"scenario {name!r}")
    system = value.get("system")
    if system is not None and not isinstance(system, str):
        raise ConfigError(f"{where.at('system')}: scenario {name!r} 'system' must be a string")
    return Scenario(name, (script,), 1.0 if weight is None else weight, system)


def _turn(value: Any, where: _Where, what: str, named: dict[str, tuple[str, ...]]) -> Turn:
    text, at_text = value, where
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"user", "expect"}, key=str)
        if unknown:
            raise ConfigError(f"{where.at(unknown[0])}: {what}: unknown key {unknown[0]!r}: use user, expect")
        text, at_text = value.get("user"), where.at("user")
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{at_text}: {what} must be a non-empty string, or {{user: ..., expect: ...}}")
    try:
        template = compile_template(text, named)
    except ConfigError as exc:
        raise ConfigError(f"{at_text}: {what}: {exc}") from None
    if not isinstance(value, dict) or "expect" not in value:
        return Turn(template)
    return Turn(
        template, Expectation.parse(value["expect"], lambda key: f"{where.at('expect', key)}: {what}")
    )


def _transcript(value: dict[str, Any], where: _Where) -> Script:
    ident = value.get("id", f"line{where.line}")
    what = f"transcript {ident!r}"
    if "weight" in value or "turns" in value:
        key = "weight" if "weight" in value else "turns"
        raise ConfigError(
            f"{where}: {what}: {key!r} does not go on a transcript: a group's weight goes on its own line, "
            '{"scenario": "replay", "weight": 2}'
        )
    messages = value["messages"]
    if not isinstance(messages, list):
        raise ConfigError(f"{where}: {what}: 'messages' must be a list of {{role, content}} objects")
    turns = []
    for i, message in enumerate(messages, start=1):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            raise ConfigError(f"{where}: {what} message {i}: needs a 'role' of user, assistant or system")
        content = message.get("content")
        if role == "user":
            if not isinstance(content, str) or not content.strip():
                raise ConfigError(f"{where}: {what} message {i}: a user 'content' must be a non-empty string")
            turns.append(Turn.literal(content))
        elif content is not None and not isinstance(content, str):
            raise ConfigError(f"{where}: {what} message {i}: 'content' must be a string")
    if not turns:
        raise ConfigError(f"{where}: {what} has no user message to replay")
    return tuple(turns)


def _group_settings(group: _Group, value: dict[str, Any], where: _Where) -> None:
    what = f"scenario {group.name!r}"
    unknown = sorted(set(value) - {"scenario", "weight", "system"}, key=str)
    if unknown or not ({"weight", "system"} & set(value)):
        raise ConfigError(
            f"{where}: a line with 'scenario' is a transcript (with 'messages') or the settings of its group "
            "(with 'weight' and/or 'system')"
        )
    if group.settings_line is not None:
        raise ConfigError(f"{where}: {what} already has settings at line {group.settings_line.line}")
    group.settings_line = where
    group.weight = _weight(value, where, what)
    system = value.get("system")
    if system is not None and not isinstance(system, str):
        raise ConfigError(f"{where}: {what} 'system' must be a string")
    group.system = system


def _weight(value: dict[str, Any], where: _Where, what: str) -> float | None:
    if "weight" not in value:
        return None
    weight = value["weight"]
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
        raise ConfigError(f"{where.at('weight')}: {what} weight must be a number > 0, got {weight!r}")
    return float(weight)


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
