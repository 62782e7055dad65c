"""Conversation scripts (scenarios), the history a turn sends, and replayed transcripts.

A conversations file is YAML or JSONL (UTF-8; `.yaml`, `.yml` or `.jsonl`, in any case). YAML:

    variables:                    # optional named lists, used as {{city}} in messages
      city: [Paris, Lyon, Nice]
    scenarios:
      - name: order_status        # unique name, used in reports
        weight: 3                 # relative frequency (default 1)
        system: "You are ..."     # optional system message sent first (a template too)
        turns:                    # the user's messages, in order
          - "Hi, where is my order?"
          - user: "It is {{order = number: 10000-99999}}"  # a message with variables (loadtest.variables)
            expect: {contains: order, max_length: 500}     # checks on the reply (loadtest.checks)
          - "Any news about {{order}}?"                    # the value named in turn 2
          - reply_is:                                      # the message picked by the last reply:
              - {contains: "order number", user: "It's {{order}}"}   # the first rule it meets
              - {regex: "(?i)which city", user: "{{city}}"}          # (conditions as in expect)
              - {default: "Thanks!"}                                 # none met: this (or no turn)

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

A file is read once per process while it is unchanged (`load_scenarios` keeps what it read, keyed by
the file's path, size and modification time). `preload` reads it in gevent's threadpool, so that a
Locust process keeps answering its heartbeats while a large file loads; `scenario_outline` checks a
whole file but keeps only each scenario's name and sizes, which is all a master needs. Transcripts are
held as tuples of their user messages (a short one that repeats, like "thanks", held once), so a file
costs less memory than its size.
"""

from __future__ import annotations

import codecs
import gc
import json
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml

from loadtest.checks import EXPECT_KEYS, Expectation
from loadtest.errors import ConfigError
from loadtest.variables import MessageError, Template, check_list, compile_template, compile_turns

try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # PyYAML built without libyaml: the same, slower
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

History = Literal["full", "last"]
HISTORY_MODES: tuple[str, ...] = ("full", "last")
REPLAY_SCENARIO = "replay"
REPLY_IS = "reply_is"
ROLES = ("user", "assistant", "system")
YAML_SUFFIXES = (".yaml", ".yml")
JSONL_SUFFIX = ".jsonl"
# Transcript messages up to this long are held once however often they come ("yes", "thanks, bye"):
# short ones repeat, and looking up a long one costs more time than its rare repeats save memory.
SHARED_LENGTH = 40


@dataclass(frozen=True, slots=True)
class Turn:
    """One user message (a template) and what its reply must satisfy.

    `values` is the named values of the conversation playing it (`Scenario.pick` binds them): a
    `{{order = ...}}` stores its draw there, a later `{{order}}` reads it."""

    template: Template
    expect: Expectation | None = None
    values: dict[str, str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def literal(cls, text: str, expect: Expectation | None = None) -> Turn:
        return cls(Template.literal(text), expect)

    @property
    def text(self) -> str:
        """The message as written, variables not drawn."""
        return self.template.source

    def bind(self, values: dict[str, str]) -> Turn:
        """This turn playing in a conversation whose named values are `values`."""
        return Turn(self.template, self.expect, values) if self.template.uses_values else self

    def render(self, rng: random.Random, *, today: date | None = None) -> str:
        """The message to send, its variables drawn anew (see loadtest.variables)."""
        return self.template.render(rng, today=today, values=self.values)

    def check(self, reply: str) -> str | None:
        """None when the reply meets the expectations (or there are none), else what failed."""
        return None if self.expect is None else self.expect.check(reply)

    def respond(self, reply: str) -> Turn | None:
        """The turn to play after `reply`: this one (a `Branching` turn picks)."""
        return self


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of a `reply_is` turn: when the last reply meets `when` (None: always, the default),
    play `turn`."""

    when: Expectation | None
    turn: Turn


@dataclass(frozen=True, slots=True)
class Branching:
    """A turn whose message depends on the last reply (`reply_is:`): the turn of the first rule the
    reply meets; none when no rule does and there is no default (the conversation goes on without)."""

    rules: tuple[Rule, ...]

    def bind(self, values: dict[str, str]) -> Branching:
        if not any(rule.turn.template.uses_values for rule in self.rules):
            return self
        return Branching(tuple(Rule(rule.when, rule.turn.bind(values)) for rule in self.rules))

    def respond(self, reply: str) -> Turn | None:
        for rule in self.rules:
            if rule.when is None or rule.when.check(reply) is None:
                return rule.turn
        return None


# The turns one conversation plays.
Script = tuple[Turn | Branching, ...]
# A script as a scenario holds it: a transcript's messages are plain strings, sent as written, which
# costs a fraction of a Turn each.
StoredScript = tuple[Turn | Branching | str, ...]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named conversation with a weight: one script, or several (transcripts) picked uniformly."""

    name: str
    scripts: tuple[StoredScript, ...]
    weight: float = 1.0
    system: Template | None = None

    @classmethod
    def of(
        cls, name: str, turns: Sequence[str | Turn], *, weight: float = 1.0, system: str | None = None
    ) -> Scenario:
        """A one-script scenario; strings (the system message too) are sent as they are."""
        script = tuple(t if isinstance(t, Turn) else Turn.literal(t) for t in turns)
        return cls(name, (script,), weight, None if system is None else Template.literal(system))

    def pick(self, rng: random.Random) -> Script:
        """The turns one conversation plays: the only script, or one of several, uniformly; its named
        values start empty."""
        stored = self.scripts[0] if len(self.scripts) == 1 else rng.choice(self.scripts)
        values: dict[str, str] = {}
        return tuple(Turn.literal(t) if isinstance(t, str) else t.bind(values) for t in stored)


@dataclass(frozen=True, slots=True)
class Outline:
    """What a scenario is without its messages: for threshold scopes, reports and a file's summary."""

    name: str
    weight: float
    transcripts: int  # 0 for a scripted scenario
    turns: int  # user turns in all its scripts
    longest: int  # turns of its longest script

    @classmethod
    def of(cls, scenario: Scenario) -> Outline:
        lengths = [len(script) for script in scenario.scripts]
        replayed = any(isinstance(turn, str) for script in scenario.scripts for turn in script[:1])
        return cls(
            scenario.name, scenario.weight, len(lengths) if replayed else 0, sum(lengths), max(lengths)
        )


def choose(scenarios: Sequence[Scenario], rng: random.Random) -> Scenario:
    """A scenario at random, by weight."""
    return rng.choices(scenarios, weights=[s.weight for s in scenarios])[0]


def sample(scenario: Scenario, rng: random.Random, *, today: date | None = None) -> list[dict[str, str]]:
    """The messages one conversation of `scenario` sends, variables drawn: its system message, then each
    user message (a request also carries the replies so far, with --history full). There are no
    replies: a `reply_is` turn sends the message of one of its rules, at random."""
    turns = scenario.pick(rng)
    conv = Conversation(scenario, "sample", "full", rng=rng)
    for step in turns:
        turn = rng.choice(step.rules).turn if isinstance(step, Branching) else step
        conv.request_messages(turn.render(rng, today=today))
    return conv.messages


# -- reading a file once per process -------------------------------------------------------------------

# (size, modification time): a file edited since it was read is read again. Each cache holds the last
# file read, so that a process switching files (the web UI's form) does not keep the old ones.
_Stamp = tuple[int, int]
_scenarios: dict[Path, tuple[_Stamp, tuple[Scenario, ...]]] = {}
_outlines: dict[Path, tuple[_Stamp, tuple[Outline, ...]]] = {}
_preloading: Any = None  # a gevent lock, made at the first preload (importing this needs no gevent)


def load_scenarios(path: str | Path) -> tuple[Scenario, ...]:
    """Read a YAML (.yaml/.yml) or JSONL (.jsonl) conversations file; ConfigError names file and line.
    The same tuple again while the file is unchanged."""
    given = Path(path)
    key, stamp = _identify(given)
    cached = _scenarios.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    scenarios = tuple(e.scenario() if isinstance(e, _Group) else e for e in _read(given, keep=True))
    _scenarios.clear()
    _scenarios[key] = (stamp, scenarios)
    return scenarios


def scenario_outline(path: str | Path) -> tuple[Outline, ...]:
    """Check a conversations file as `load_scenarios` does, keeping only each scenario's name and sizes
    (transcripts are counted, not kept): what a process that sends nothing needs."""
    given = Path(path)
    key, stamp = _identify(given)
    read = _scenarios.get(key)
    if read is not None and read[0] == stamp:
        return tuple(Outline.of(scenario) for scenario in read[1])
    cached = _outlines.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    outline = tuple(e.outline() if isinstance(e, _Group) else Outline.of(e) for e in _read(given, keep=False))
    _outlines.clear()
    _outlines[key] = (stamp, outline)
    return outline


def preload(path: str | Path, *, outline: bool = False) -> None:
    """Read a conversations file (or only its outline) into this process's cache in a thread of
    gevent's threadpool: the event loop, and so Locust's heartbeats and web UI, keeps running while
    it parses. Calls that overlap read the file once. ConfigError as load_scenarios."""
    import gevent  # only Locust processes preload: `loadtest conversations check` stays without gevent
    import gevent.lock

    global _preloading
    if _preloading is None:
        _preloading = gevent.lock.Semaphore()
    with _preloading:
        gevent.get_hub().threadpool.apply(scenario_outline if outline else load_scenarios, (path,))


def forget_loaded() -> None:
    """Drop what this process has read (tests, and a long-lived process that is done with a file)."""
    _scenarios.clear()
    _outlines.clear()


def _identify(path: Path) -> tuple[Path, _Stamp]:
    try:
        stat = path.stat()
        key = path.resolve()
    except FileNotFoundError:
        raise ConfigError(f"{path}: conversations file not found (set --conversations PATH)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read conversations file: {exc.strerror}") from None
    return key, (stat.st_size, stat.st_mtime_ns)


def _read(path: Path, *, keep: bool) -> list[Scenario | _Group]:
    suffix = path.suffix.lower()
    if suffix not in (*YAML_SUFFIXES, JSONL_SUFFIX):
        raise ConfigError(f"{path}: unknown conversations format: use a .yaml, .yml or .jsonl file")
    entries: Sequence[tuple[_Where, Scenario | _Group]]
    try:
        with path.open("rb") as file, _collector_paused():
            if suffix == JSONL_SUFFIX:
                entries = _JsonlReader(path, keep).read(file)
            else:
                entries = _from_yaml(path, file.read())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read conversations file: {exc.strerror or exc}") from None
    if not entries:
        raise ConfigError(f"{path}: no scenarios: add at least one with a name and turns")
    first: dict[str, _Where] = {}
    for where, entry in entries:
        if entry.name in first:
            raise ConfigError(
                f"{where}: scenario name {entry.name!r} is used twice (first at line "
                f"{first[entry.name].line}): names must be unique"
            )
        first[entry.name] = where
    return [entry for _, entry in entries]


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Reading a file makes objects that all live on: the garbage collector would walk them again and
    again as they pile up (a third of the time of a large YAML file). Its state is put back after."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# -- where things are in a file -----------------------------------------------------------------------


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

    def not_text(self, value: Any) -> str:
        """Why `value`, found here where text was meant, is not text: with the fix when YAML read an
        unquoted word or number as something else (`yes` as true, `NO` as false, `1:30` as 90)."""
        node = self.node
        if not isinstance(node, yaml.ScalarNode) or node.style or not node.value or isinstance(value, str):
            return ""  # quoted, empty or JSON: the value is what was written
        if isinstance(value, bool):
            read_as = f"the boolean {str(value).lower()}"
        elif value is None:
            read_as = "null (no value)"
        elif isinstance(value, int | float):
            read_as = f"the number {value!r}"
        else:
            return ""
        return f': YAML reads {node.value} as {read_as}: quote it, "{node.value}"'

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


# -- YAML -----------------------------------------------------------------------------------------------


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, first: int) -> None:
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


class _YamlLoader(_SafeLoader):
    """The safe loader, refusing a key given twice in one mapping (YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                raise _DuplicateKey(key_node.value, line, seen[key_node.value])
            seen[key_node.value] = line
        return super().construct_mapping(node, deep)


def _from_yaml(path: Path, data: bytes) -> list[tuple[_Where, Scenario]]:
    text = _decode(path, data)
    loader = _YamlLoader(text)
    try:
        node = loader.get_single_node()
        doc = loader.construct_document(node) if node is not None else None
    except _DuplicateKey as dup:
        raise ConfigError(
            f"{path}:{dup.line}: key {dup.key!r} is given twice (first at line {dup.first}): keep one"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        place = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{place}: {problem}: fix the YAML syntax") from None
    finally:
        loader.dispose()
    root = _Where(path, None, node)
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
    entries = []
    for i, item in enumerate(items):
        where = at_items.at(i)
        entries.append((where, _scenario(item, where, named, default_name=f"scenario{i + 1}")))
    return entries


def _decode(path: Path, data: bytes, first_line: int = 1) -> str:
    """UTF-8 text without its BOM; ConfigError names the line of the first byte that is not UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        raise ConfigError(
            f"{path}:{line}: not UTF-8 (byte 0x{data[exc.start]:02X}): save the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


# -- JSONL ----------------------------------------------------------------------------------------------


@dataclass
class _Group:
    """Transcripts of one scenario name, while a JSONL file is read (only their lengths, unless kept)."""

    name: str
    where: _Where
    scripts: list[StoredScript] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    weight: float | None = None
    system: Template | None = None
    settings_line: _Where | None = None

    def _weight(self, count: int) -> float:
        if not count:
            raise ConfigError(f"{self.where}: scenario {self.name!r} has settings but no transcripts")
        return self.weight if self.weight is not None else float(count)

    def scenario(self) -> Scenario:
        return Scenario(self.name, tuple(self.scripts), self._weight(len(self.scripts)), self.system)

    def outline(self) -> Outline:
        lengths = self.lengths or [len(script) for script in self.scripts]
        count = len(lengths)
        return Outline(self.name, self._weight(count), count, sum(lengths), max(lengths, default=0))


class _JsonlReader:
    """One pass over a JSONL file, line by line: transcripts are checked (and kept, as tuples of
    strings) as they come; scenario and settings lines wait for the named lists, which apply to the
    whole file."""

    def __init__(self, path: Path, keep: bool) -> None:
        self.path = path
        self.keep = keep
        self.named: dict[str, tuple[str, ...]] = {}
        self.groups: dict[str, _Group] = {}
        # In file order: a group at its first line, a scenario line as read (compiled at the end).
        self.entries: list[tuple[_Where, _Group | dict[str, Any]]] = []
        self.group_settings: list[tuple[_Where, _Group, dict[str, Any]]] = []
        # The short user messages read so far, so that one repeated across transcripts ("yes",
        # "thanks") is held once; None when the transcripts are only counted.
        self.messages: dict[str, str] | None = {} if keep else None

    def read(self, lines: Iterable[bytes]) -> list[tuple[_Where, Scenario | _Group]]:
        for lineno, value in self._objects(lines):
            if "messages" in value:
                self._transcript(lineno, value)
            elif len(value) == 1 and "variables" in value:
                self._variables(_Where(self.path, lineno), value["variables"])
            elif "scenario" in value:
                where = _Where(self.path, lineno)
                group = self._group(lineno, value)
                if group.settings_line is not None:
                    raise ConfigError(
                        f"{where}: scenario {group.name!r} already has settings at line "
                        f"{group.settings_line.line}"
                    )
                group.settings_line = where
                self.group_settings.append((where, group, value))
            else:
                self.entries.append((_Where(self.path, lineno), value))
        for where, group, value in self.group_settings:
            _group_settings(group, value, where, self.named)
        return [
            (where, entry if isinstance(entry, _Group) else self._scenario(where, entry))
            for where, entry in self.entries
        ]

    def _objects(self, lines: Iterable[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, object) of each line that is not blank or a comment."""
        for lineno, line in enumerate(lines, start=1):
            # A line that starts with its object (all of them, in an export) goes to orjson as it is:
            # the whitespace around it is JSON's own.
            if not line.startswith(b"{"):
                line = line.strip()
                if lineno == 1:
                    line = line.removeprefix(codecs.BOM_UTF8)
                if not line or line.startswith(b"#"):
                    continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                _decode(self.path, line.rstrip(b"\r\n"), lineno)
                raise ConfigError(
                    f"{self.path}:{lineno}: not valid JSON ({exc}): fix or remove the line"
                ) from None
            if type(value) is not dict:
                raise ConfigError(
                    f"{self.path}:{lineno}: a line must be a JSON object: a scenario, a transcript or "
                    "variables"
                )
            # orjson keeps the last of a key given twice: look again where that can matter, every
            # line but a transcript whose keys all appear once.
            if "messages" not in value or line.count(b'"messages"') > 1 or line.count(b'"scenario"') > 1:
                _no_duplicate_keys(line, _Where(self.path, lineno))
            yield lineno, value

    def _variables(self, where: _Where, value: Any) -> None:
        for name, values in _named_lists(value, where).items():
            if name in self.named:
                raise ConfigError(f"{where}: variable {name!r} is defined twice")
            self.named[name] = values

    def _group(self, lineno: int, value: dict[str, Any]) -> _Group:
        """The group a transcript or settings line belongs to, begun at its first line."""
        name = value.get("scenario", REPLAY_SCENARIO)
        group = self.groups.get(name) if type(name) is str else None
        if group is None:
            where = _Where(self.path, lineno)
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"{where}: 'scenario' must be a non-empty string (the transcript group)")
            group = self.groups[name] = _Group(name, where)
            self.entries.append((where, group))
        return group

    def _transcript(self, lineno: int, value: dict[str, Any]) -> None:
        group = self._group(lineno, value)
        script = _user_messages(value, lineno, self.path, self.messages)
        if self.keep:
            group.scripts.append(script)
        else:
            group.lengths.append(len(script))

    def _scenario(self, where: _Where, value: dict[str, Any]) -> Scenario:
        return _scenario(value, where, self.named, default_name=f"line{where.line}")


def _no_duplicate_keys(line: bytes, where: _Where) -> None:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in items]
        for key in keys:
            if keys.count(key) > 1:
                raise ConfigError(f"{where}: key {key!r} is given twice on this line: keep one")
        return dict(items)

    json.loads(line, object_pairs_hook=pairs)


def _user_messages(
    value: dict[str, Any], lineno: int, path: Path, messages: dict[str, str] | None
) -> tuple[str, ...]:
    """The user messages of a transcript line; a short one already in `messages` is that one (None:
    the script is only counted, nothing is shared)."""
    items = value["messages"]
    if type(items) is not list or "weight" in value or "turns" in value:
        _bad_transcript(value, _Where(path, lineno))
    held = messages.setdefault if messages is not None else None
    turns = []
    # The happy path is kept short: a 100,000-transcript file runs it for every message.
    for message in items:
        if type(message) is dict:
            role = message.get("role")
            content = message.get("content")
            if role == "user":
                if type(content) is str and content and not content.isspace():
                    turns.append(
                        held(content, content) if held and len(content) <= SHARED_LENGTH else content
                    )
                    continue
            elif (role == "assistant" or role == "system") and (content is None or type(content) is str):
                continue
        _bad_message(value, _Where(path, lineno), items.index(message) + 1)
    if not turns:
        raise ConfigError(f"{path}:{lineno}: {_transcript_name(value, lineno)} has no user message to replay")
    return tuple(turns)


def _bad_transcript(value: dict[str, Any], where: _Where) -> None:
    what = f"{where}: {_transcript_name(value, where.line)}"
    if "weight" in value or "turns" in value:
        key = "weight" if "weight" in value else "turns"
        raise ConfigError(
            f"{what}: {key!r} does not go on a transcript: a group's weight goes on its own line, "
            '{"scenario": "replay", "weight": 2}'
        )
    raise ConfigError(f"{what}: 'messages' must be a list of {{role, content}} objects")


def _bad_message(value: dict[str, Any], where: _Where, number: int) -> None:
    message = value["messages"][number - 1]
    what = f"{where}: {_transcript_name(value, where.line)} message {number}"
    role = message.get("role") if isinstance(message, dict) else None
    if role not in ROLES:
        raise ConfigError(f"{what}: needs a 'role' of user, assistant or system")
    if role == "user":
        raise ConfigError(f"{what}: a user 'content' must be a non-empty string")
    raise ConfigError(f"{what}: 'content' must be a string")


def _transcript_name(value: dict[str, Any], lineno: int | None) -> str:
    return f"transcript {value.get('id', f'line{lineno}')!r}"


def _group_settings(
    group: _Group, value: dict[str, Any], where: _Where, named: dict[str, tuple[str, ...]]
) -> None:
    what = f"scenario {group.name!r}"
    unknown = sorted(set(value) - {"scenario", "weight", "system"}, key=str)
    if unknown or not ({"weight", "system"} & set(value)):
        raise ConfigError(
            f"{where}: a line with 'scenario' is a transcript (with 'messages') or the settings of its group "
            "(with 'weight' and/or 'system')"
        )
    group.weight = _weight(value, where, what)
    group.system = _system(value, where, what, named)


# -- what both formats share ---------------------------------------------------------------------------


def _named_lists(value: Any, where: _Where) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where}: 'variables' must map names to lists of values, like {{city: [Paris, Lyon]}}"
        )
    named = {}
    for name, values in value.items():
        if isinstance(values, list):
            for i, item in enumerate(values):
                _plain_value(item, where.at(name, i), name)
        try:
            named[name] = check_list(name, values)
        except ConfigError as exc:
            raise ConfigError(f"{where.at(name)}: {exc}") from None
    return named


def _plain_value(value: Any, where: _Where, name: str) -> None:
    """A list value YAML read as something other than what was written: numbers are fine as long as
    they read back as written (`58213`, not `1:30` or `010`)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        node = where.node
        if not isinstance(node, yaml.ScalarNode) or str(value) == node.value:
            return
    problem = where.not_text(value)
    if problem:
        raise ConfigError(f"{where}: variable {name!r}{problem}")


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
        at_name = where.at("name")
        raise ConfigError(f"{at_name}: 'name' must be a non-empty string{at_name.not_text(name)}")
    what = f"scenario {name!r}"
    turns = value.get("turns")
    if not isinstance(turns, list) or not turns:
        raise ConfigError(f"{where}: {what} needs 'turns': a non-empty list of user messages")
    texts = [_turn_text(turn, where, i, what) for i, turn in enumerate(turns)]
    try:
        templates = compile_turns(texts, named)
    except MessageError as exc:
        raise ConfigError(_message_error(exc, turns[exc.index], where, what)) from None
    script = tuple(
        _branching(turn, messages, where, i, what)
        if isinstance(texts[i], tuple)
        else Turn(messages[0], _expectation(turn, where, i, what))
        for i, (messages, turn) in enumerate(zip(templates, turns, strict=True))
    )
    weight = _weight(value, where, what)
    return Scenario(name, (script,), 1.0 if weight is None else weight, _system(value, where, what, named))


def _turn_text(value: Any, scenario: _Where, index: int, what: str) -> str | tuple[str, ...]:
    """The message of turn `index` of a scenario (`what`); of a `reply_is` turn, its rules' messages."""
    text = value
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"user", "expect", REPLY_IS}, key=str)
        if unknown:
            raise ConfigError(
                f"{scenario.at('turns', index, unknown[0])}: {what} turn {index + 1}: unknown key "
                f"{unknown[0]!r}: use user, expect, {REPLY_IS}"
            )
        if REPLY_IS in value:
            if "user" in value:
                raise ConfigError(
                    f"{scenario.at('turns', index, 'user')}: {what} turn {index + 1}: give 'user' or "
                    f"'{REPLY_IS}', not both: a rule with no condition is {{default: MESSAGE}}"
                )
            return _rule_texts(value[REPLY_IS], scenario.at("turns", index, REPLY_IS), what, index)
        text = value.get("user")
    if not isinstance(text, str) or not text.strip():
        at_text = scenario.at("turns", index, "user" if isinstance(value, dict) else None)
        problem = at_text.not_text(text) or ", or {user: ..., expect: ...}"
        raise ConfigError(f"{at_text}: {what} turn {index + 1} must be a non-empty string{problem}")
    return text


def _rule_texts(rules: Any, where: _Where, what: str, index: int) -> tuple[str, ...]:
    """The messages of the rules of a `reply_is` turn, each rule checked for its shape."""
    label = f"{what} turn {index + 1}"
    if index == 0:
        raise ConfigError(
            f"{where}: {label}: {REPLY_IS} picks a message by the last reply, and the first turn has none: "
            "start with a plain message"
        )
    if not isinstance(rules, list) or not rules:
        raise ConfigError(
            f"{where}: {label}: {REPLY_IS} must be a list of rules, like "
            '[{contains: "order number", user: "It\'s 58213"}, {default: "No idea"}]'
        )
    texts = []
    for number, rule in enumerate(rules, start=1):
        at_rule = where.at(number - 1)
        about = f"{label} rule {number}"
        if not isinstance(rule, dict):
            raise ConfigError(
                f"{at_rule}: {about} must be {{CONDITION: ..., user: MESSAGE}} or {{default: MESSAGE}}"
            )
        unknown = sorted(set(rule) - {"user", "default", "expect", *EXPECT_KEYS}, key=str)
        if unknown:
            raise ConfigError(
                f"{at_rule.at(unknown[0])}: {about}: unknown key {unknown[0]!r}: use user with "
                f"{', '.join(EXPECT_KEYS)} (as in expect), or default"
            )
        conditions = [key for key in EXPECT_KEYS if key in rule]
        if "default" in rule:
            if "user" in rule or conditions:
                raise ConfigError(
                    f"{at_rule}: {about}: a default has no condition and no 'user': {{default: MESSAGE}}"
                )
            if number != len(rules):
                raise ConfigError(
                    f"{at_rule}: {about}: the default goes last (the rules after it would never apply)"
                )
            key = "default"
        elif "user" not in rule:
            raise ConfigError(
                f"{at_rule}: {about} needs 'user', the message to send when its condition holds"
            )
        elif not conditions:
            raise ConfigError(
                f"{at_rule}: {about} needs a condition on the reply ({', '.join(EXPECT_KEYS)}), or make it "
                "{default: MESSAGE}"
            )
        else:
            key = "user"
        text = rule[key]
        if not isinstance(text, str) or not text.strip():
            at_text = at_rule.at(key)
            raise ConfigError(
                f"{at_text}: {about}: '{key}' must be a non-empty string{at_text.not_text(text)}"
            )
        texts.append(text)
    return tuple(texts)


def _branching(
    value: dict[str, Any], messages: tuple[Template, ...], scenario: _Where, index: int, what: str
) -> Branching:
    """A `reply_is` turn whose rules' messages are compiled: each rule's condition, and its `expect`
    (the turn's own `expect` for a rule without one)."""
    where = scenario.at("turns", index, REPLY_IS)
    expect = _expectation(value, scenario, index, what)
    rules = []
    for number, (rule, template) in enumerate(zip(value[REPLY_IS], messages, strict=True), start=1):
        at_rule = where.at(number - 1)
        about = f"{what} turn {index + 1} rule {number}"
        conditions = {key: rule[key] for key in EXPECT_KEYS if key in rule}
        when = _checks(conditions, at_rule, about, REPLY_IS) if conditions else None
        own = _checks(rule["expect"], at_rule.at("expect"), about, "expect") if "expect" in rule else expect
        rules.append(Rule(when, Turn(template, own)))
    return Branching(tuple(rules))


def _message_error(exc: MessageError, turn: Any, scenario: _Where, what: str) -> str:
    """`file:line: scenario 'x' turn N: ...` for a message that does not compile (`turn` as written)."""
    if exc.choice is None:
        at_text = scenario.at("turns", exc.index, "user" if isinstance(turn, dict) else None)
        return f"{at_text}: {what} turn {exc.index + 1}: {exc}"
    rule = turn[REPLY_IS][exc.choice]
    at_text = scenario.at(
        "turns", exc.index, REPLY_IS, exc.choice, "default" if "default" in rule else "user"
    )
    return f"{at_text}: {what} turn {exc.index + 1} rule {exc.choice + 1}: {exc}"


def _expectation(value: Any, scenario: _Where, index: int, what: str) -> Expectation | None:
    """The `expect` of turn `index` of a scenario (`what`), if it has one."""
    if not isinstance(value, dict) or "expect" not in value:
        return None
    return _checks(
        value["expect"], scenario.at("turns", index, "expect"), f"{what} turn {index + 1}", "expect"
    )


def _checks(value: Any, where: _Where, label: str, name: str) -> Expectation:
    """An `expect` mapping (or a rule's condition, `name` reply_is) found at `where`."""
    if isinstance(value, dict):
        for key in ("contains", "not_contains", "regex"):
            given = value.get(key)
            listed = isinstance(given, list)
            items: list[Any] = given if isinstance(given, list) else [given]
            for i, item in enumerate(items):
                if item is None or isinstance(item, str):
                    continue
                at_item = where.at(key, i if listed else None)
                problem = at_item.not_text(item)
                if problem:
                    raise ConfigError(f"{at_item}: {label}: {name}.{key}{problem}")
    return Expectation.parse(value, lambda key: f"{where.at(key)}: {label}", what=name)


def _system(
    value: dict[str, Any], where: _Where, what: str, named: dict[str, tuple[str, ...]]
) -> Template | None:
    system = value.get("system")
    if system is None:
        return None
    at_system = where.at("system")
    if not isinstance(system, str):
        raise ConfigError(f"{at_system}: {what} 'system' must be a string{at_system.not_text(system)}")
    try:
        template = compile_template(system, named)
    except ConfigError as exc:
        raise ConfigError(f"{at_system}: {what} system: {exc}") from None
    if template.defines:
        name = template.defines[0]
        raise ConfigError(
            f"{at_system}: {what} system: {{{{{name} = ...}}}} names a value, which only turns can: name it "
            "in the first turn that uses it"
        )
    return template


def _weight(value: dict[str, Any], where: _Where, what: str) -> float | None:
    if "weight" not in value:
        return None
    weight = value["weight"]
    if (
        isinstance(weight, bool)
        or not isinstance(weight, int | float)
        or not math.isfinite(weight)
        or weight <= 0
    ):
        raise ConfigError(
            f"{where.at('weight')}: {what} weight must be a finite number > 0, got {weight!r}: use 1, 2.5..."
        )
    return float(weight)


# -- one conversation ----------------------------------------------------------------------------------

# System messages draw their variables here unless the conversation is given a generator.
_SYSTEM_RNG = random.Random()


@dataclass
class Conversation:
    """The messages of one conversation so far, as the client sent and received them.

    With history "last" each request carries only its user message, except the first, which carries
    the scenario's system message before it: the server keeps the conversation from there."""

    scenario: Scenario
    conversation_id: str
    history: History = "full"
    messages: list[dict[str, str]] = field(default_factory=list)
    rng: random.Random | None = field(default=None, repr=False)
    sent: int = 0

    def __post_init__(self) -> None:
        if self.scenario.system is not None and not self.messages:
            content = self.scenario.system.render(self.rng or _SYSTEM_RNG)
            self.messages.append({"role": "system", "content": content})

    def request_messages(self, user_text: str) -> list[dict[str, str]]:
        """Record the user's message and return what the request carries for this turn."""
        message = {"role": "user", "content": user_text}
        self.messages.append(message)
        self.sent += 1
        if self.history == "full":
            return list(self.messages)
        if self.sent == 1 and self.messages[0]["role"] == "system":
            return [self.messages[0], message]
        return [message]

    def add_reply(self, content: str) -> None:
        self.messages.append({"role": "assistant", "content": content})
