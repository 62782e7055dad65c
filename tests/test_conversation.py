from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from loadtest.checks import Expectation
from loadtest.conversation import Conversation, Scenario, Turn, choose, load_scenarios
from loadtest.errors import ConfigError
from loadtest.mock.text import reply_text

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "locustfiles"


def _load(tmp_path: Path, name: str, text: str) -> list[Scenario]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_scenarios(path)


def _error(tmp_path: Path, name: str, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, name, text)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_shipped_conversations_load() -> None:
    scenarios = load_scenarios(SAMPLES / "conversations.yaml")
    assert len(scenarios) >= 3
    assert all(s.pick(random.Random(0)) for s in scenarios)
    assert any(len(s.pick(random.Random(0))) > 1 for s in scenarios)
    turns = [turn for s in scenarios for turn in s.scripts[0]]
    assert any(not turn.template.is_literal for turn in turns)
    assert any(turn.expect is not None for turn in turns)


def test_shipped_expectations_pass_against_the_mock_replies() -> None:
    # The sample runs against the built-in mock in `make demo`: its checks must hold there.
    expectations = [
        turn.expect
        for s in load_scenarios(SAMPLES / "conversations.yaml")
        for turn in s.scripts[0]
        if turn.expect
    ]
    for i in range(2000):
        reply = reply_text(0, f"conversation-{i}", i % 4, min_words=i % 20)
        assert [e.check(reply) for e in expectations] == [None] * len(expectations)


def test_shipped_templates_render_without_braces() -> None:
    rng = random.Random(5)
    for scenario in load_scenarios(SAMPLES / "conversations.yaml"):
        for turn in scenario.pick(rng):
            text = turn.render(rng)
            assert "{{" not in text and "}}" not in text


def test_shipped_transcripts_load_grouped() -> None:
    scenarios = {s.name: s for s in load_scenarios(SAMPLES / "transcripts.jsonl")}
    assert sum(len(s.scripts) for s in scenarios.values()) == 5
    assert "replay" in scenarios
    assert any(len(s.scripts) > 1 for s in scenarios.values())


def test_jsonl_format(tmp_path: Path) -> None:
    a, b = _load(
        tmp_path,
        "c.jsonl",
        '# comment\n{"name": "a", "weight": 2, "turns": ["hi", {"user": "bye"}]}\n\n'
        '{"name": "b", "system": "sys", "turns": ["x"]}\n',
    )
    assert a == Scenario.of("a", ["hi", "bye"], weight=2.0)
    assert tuple(turn.text for turn in a.pick(random.Random(0))) == ("hi", "bye")
    assert b.system == "sys"


def test_yaml_turns_with_variables_and_expectations(tmp_path: Path) -> None:
    (scenario,) = _load(
        tmp_path,
        "c.yaml",
        "variables:\n  city: [Paris, Lyon]\n"
        "scenarios:\n  - name: s\n    turns:\n"
        "      - 'to {{city}} on {{date: +1..+1}}'\n"
        "      - user: 'order {{number: 7-7}}'\n"
        "        expect: {contains: [order, Status], not_contains: sorry, regex: '\\d', max_length: 50}\n",
    )
    first, second = scenario.pick(random.Random(0))
    assert first.expect is None
    assert re.fullmatch(r"to (Paris|Lyon) on \d{4}-\d\d-\d\d", first.render(random.Random(1)))
    assert second.render(random.Random(1)) == "order 7"
    assert second.expect is not None
    assert second.expect.contains == ("order", "Status")
    assert second.expect.not_contains == ("sorry",)
    assert second.expect.max_length == 50
    assert second.check("Your ORDER status: 3 days") is None
    assert second.check("Sorry, order status unknown") == "reply contains 'sorry'"


def test_jsonl_variables_line_applies_to_the_whole_file(tmp_path: Path) -> None:
    (scenario,) = _load(
        tmp_path,
        "c.jsonl",
        '{"name": "a", "turns": ["{{fruit}}"]}\n{"variables": {"fruit": ["apple", "pear"]}}\n',
    )
    (turn,) = scenario.pick(random.Random(0))
    rng = random.Random(2)
    assert {turn.render(rng) for _ in range(50)} == {"apple", "pear"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"name": "a", "turns": ["hi"]}\n{"name": "b", "turns": []}\n',
            "c.jsonl:2: scenario 'b' needs 'turns'",
        ),
        ('{"name": "a", "turns": ["hi"]}\n{not json\n', "c.jsonl:2: not valid JSON"),
        (
            '{"name": "a", "turns": ["hi"], "weight": -1}\n',
            "c.jsonl:1: scenario 'a' weight must be a number > 0",
        ),
        ('{"name": "a", "turns": ["hi"], "wieght": 1}\n', "c.jsonl:1: unknown key 'wieght'"),
        (
            '{"name": "a", "turns": ["hi"]}\n{"name": "a", "turns": ["x"]}\n',
            "scenario name 'a' is used twice",
        ),
        ('["a"]\n', "c.jsonl:1: a line must be a JSON object"),
        (
            '\n{"name": "a", "turns": ["{{colour}}"]}\n',
            "c.jsonl:2: scenario 'a' turn 1: unknown variable {{colour}}",
        ),
        (
            '{"name": "a", "turns": ["x", "{{number: 9-1}}"]}\n',
            "c.jsonl:1: scenario 'a' turn 2: {{number: 9-1}}",
        ),
        (
            '{"name": "a", "turns": [{"user": "x", "expct": {}}]}\n',
            "c.jsonl:1: scenario 'a' turn 1: unknown key",
        ),
        ('{"name": "a", "turns": [{"expect": {"contains": "x"}}]}\n', "turn 1 must be a non-empty string"),
        (
            '{"name": "a", "turns": [{"user": "x", "expect": {"regex": "("}}]}\n',
            "c.jsonl:1: scenario 'a' turn 1",
        ),
        ('{"name": "a", "turns": [{"user": "x", "expect": {"max_length": 0}}]}\n', "expect.max_length"),
        ('{"name": "a", "turns": [{"user": "x", "expect": null}]}\n', "'expect' must be a mapping"),
        ('{"variables": {"city": []}}\n{"name": "a", "turns": ["x"]}\n', "c.jsonl:1: variable 'city'"),
        (
            '{"variables": {"a": ["x"]}}\n{"variables": {"a": ["y"]}}\n',
            "c.jsonl:2: variable 'a' is defined twice",
        ),
    ],
)
def test_bad_jsonl_line_is_named(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _error(tmp_path, "c.jsonl", text)


def test_bad_yaml_scenario_names_its_line(tmp_path: Path) -> None:
    text = "scenarios:\n  - name: ok\n    turns: [hi]\n  - name: broken\n    turns: []\n"
    assert "c.yaml:4: scenario 'broken' needs 'turns'" in _error(tmp_path, "c.yaml", text)


YAML_ERRORS = """\
variables:
  city: [Paris]
scenarios:
  - name: s
    turns:
      - hello
      - user: "to {{city}}"
        expect:
          contains: x
          regex: "a+"
"""


def test_yaml_errors_base_file_is_valid(tmp_path: Path) -> None:
    (scenario,) = _load(tmp_path, "c.yaml", YAML_ERRORS)
    assert scenario.pick(random.Random(0))[1].render(random.Random(0)) == "to Paris"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('"a+"', '"(unclosed"', "c.yaml:10: scenario 's' turn 2: expect.regex '(unclosed' is not valid"),
        ("{{city}}", "{{town}}", "c.yaml:7: scenario 's' turn 2: unknown variable {{town}}"),
        ("{{city}}", "{{city", "c.yaml:7: scenario 's' turn 2: unclosed '{{'"),
        ("contains: x", "contain: x", "c.yaml:9: scenario 's' turn 2: unknown expect key 'contain'"),
        ("city: [Paris]", "city: Paris", "c.yaml:2: variable 'city' must be a non-empty list"),
        ("city: [Paris]", "date: [Paris]", "c.yaml:2: variable name 'date' is taken"),
        ("      - hello", "      - 42", "c.yaml:6: scenario 's' turn 1 must be a non-empty string"),
        ("  - name: s", "  - name: s\n    weight: zero", "c.yaml:5: scenario 's' weight must be a number"),
        ("variables:", "scenario: []\nvariables:", "c.yaml:1: unknown key 'scenario'"),
        ("  city: [Paris]", "  - city", "c.yaml:1: 'variables' must map names to lists"),
    ],
)
def test_yaml_errors_name_the_line_of_the_field(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert expected in _error(tmp_path, "c.yaml", YAML_ERRORS.replace(old, new))


def test_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    assert re.search(
        r"c.yaml:\d+: .*fix the YAML syntax",
        _error(tmp_path, "c.yaml", "scenarios:\n  - name: a\n    turns: [hi\n"),
    )


def test_missing_file_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--conversations"):
        load_scenarios(tmp_path / "nope.yaml")


def _messages(*pairs: tuple[str, str | None]) -> list[dict[str, str | None]]:
    return [{"role": role, "content": content} for role, content in pairs]


TRANSCRIPTS = "\n".join(
    json.dumps(line)
    for line in [
        {
            "id": "1",
            "messages": _messages(
                ("system", "s"), ("user", "a1 {{not a variable}}"), ("assistant", "r"), ("user", "a2")
            ),
        },
        {"id": "2", "scenario": "billing", "messages": _messages(("user", "b1")), "channel": "web"},
        {"name": "scripted", "turns": ["s1"]},
        {"id": "3", "messages": _messages(("user", "c1"), ("assistant", None))},
        {"id": "4", "scenario": "billing", "messages": _messages(("user", "d1"), ("user", "d2"))},
        {"id": "5", "scenario": "billing", "messages": _messages(("user", "e1"))},
    ]
)


def test_transcripts_are_grouped_and_replay_only_user_turns(tmp_path: Path) -> None:
    replay, billing, scripted = _load(tmp_path, "c.jsonl", TRANSCRIPTS)
    assert (replay.name, replay.weight, replay.system) == ("replay", 2.0, None)
    assert (billing.name, billing.weight) == ("billing", 3.0)
    assert scripted.name == "scripted"
    assert [[t.text for t in script] for script in replay.scripts] == [
        ["a1 {{not a variable}}", "a2"],
        ["c1"],
    ]
    assert [[t.text for t in script] for script in billing.scripts] == [["b1"], ["d1", "d2"], ["e1"]]
    # transcripts are sent as written: braces are not variables
    assert replay.scripts[0][0].render(random.Random(0)) == "a1 {{not a variable}}"
    assert all(t.expect is None for s in replay.scripts for t in s)


def test_transcript_group_settings_line(tmp_path: Path) -> None:
    text = '{"scenario": "billing", "weight": 0.5, "system": "sys"}\n' + TRANSCRIPTS
    billing = {s.name: s for s in _load(tmp_path, "c.jsonl", text)}["billing"]
    assert (billing.weight, billing.system, len(billing.scripts)) == (0.5, "sys", 3)


def test_scripts_of_a_scenario_are_picked_uniformly(tmp_path: Path) -> None:
    _, billing, _ = _load(tmp_path, "c.jsonl", TRANSCRIPTS)
    rng = random.Random(4)
    counts = Counter(billing.pick(rng)[0].text for _ in range(9000))
    assert set(counts) == {"b1", "d1", "e1"}
    assert all(2700 < n < 3300 for n in counts.values())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"id": "x", "messages": []}\n', "c.jsonl:1: transcript 'x' has no user message"),
        ('{"id": "x", "messages": {"role": "user"}}\n', "transcript 'x': 'messages' must be a list"),
        (
            '{"id": "x", "messages": [{"role": "bot", "content": "a"}]}\n',
            "transcript 'x' message 1: needs a 'role'",
        ),
        ('{"id": "x", "messages": ["hi"]}\n', "transcript 'x' message 1: needs a 'role'"),
        (
            '{"id": "x", "messages": [{"role": "user", "content": " "}]}\n',
            "message 1: a user 'content' must be",
        ),
        (
            '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": 3}]}\n',
            "c.jsonl:1: transcript 'line1' message 2: 'content' must be a string",
        ),
        (
            '{"weight": 2, "messages": [{"role": "user", "content": "a"}]}\n',
            "'weight' does not go on a transcript",
        ),
        (
            '{"scenario": "", "messages": [{"role": "user", "content": "a"}]}\n',
            "'scenario' must be a non-empty",
        ),
        ('{"scenario": "g", "weight": 2}\n', "c.jsonl:1: scenario 'g' has settings but no transcripts"),
        ('{"scenario": "g"}\n', "c.jsonl:1: a line with 'scenario' is a transcript"),
        (
            '{"scenario": "g", "weight": 2, "name": "x"}\n',
            "c.jsonl:1: a line with 'scenario' is a transcript",
        ),
        ('{"scenario": "g", "weight": -2}\n', "c.jsonl:1: scenario 'g' weight must be a number > 0"),
        ('{"scenario": "g", "system": 1}\n', "c.jsonl:1: scenario 'g' 'system' must be a string"),
        (
            '{"scenario": "g", "weight": 1}\n{"scenario": "g", "weight": 2}\n',
            "c.jsonl:2: scenario 'g' already has",
        ),
        (
            '{"name": "replay", "turns": ["x"]}\n{"messages": [{"role": "user", "content": "a"}]}\n',
            "scenario name 'replay' is used twice",
        ),
    ],
)
def test_bad_transcripts_are_named(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _error(tmp_path, "c.jsonl", text)


def test_turn_without_expectation_always_passes() -> None:
    assert Turn.literal("hi").check("") is None
    assert Turn.literal("hi", Expectation(max_length=1)).check("ab") is not None


def test_full_history_carries_system_user_and_assistant_replies() -> None:
    conv = Conversation(Scenario.of("s", ["a", "b"], system="sys"), "cid", "full")
    assert conv.request_messages("a") == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "a"},
    ]
    conv.add_reply("reply\u2028one")
    assert conv.request_messages("b") == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "reply\u2028one"},
        {"role": "user", "content": "b"},
    ]


def test_last_history_sends_only_the_new_user_message() -> None:
    conv = Conversation(Scenario.of("s", ["a", "b"], system="sys"), "cid", "last")
    conv.request_messages("a")
    conv.add_reply("r")
    assert conv.request_messages("b") == [{"role": "user", "content": "b"}]


def test_weighted_choice_follows_weights() -> None:
    scenarios = [Scenario.of("a", ["x"], weight=3.0), Scenario.of("b", ["x"], weight=1.0)]
    rng = random.Random(1)
    counts = Counter(choose(scenarios, rng).name for _ in range(8000))
    assert 0.72 < counts["a"] / 8000 < 0.78
