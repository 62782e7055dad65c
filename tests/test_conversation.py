from __future__ import annotations

import gc
import json
import random
import re
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import orjson
import pytest

from loadtest import conversation
from loadtest.checks import Expectation
from loadtest.conversation import (
    Conversation,
    Outline,
    Scenario,
    Turn,
    choose,
    forget_loaded,
    load_scenarios,
    sample,
    scenario_outline,
)
from loadtest.errors import ConfigError
from loadtest.mock.text import reply_text
from tests.conftest import FAST, NLX, TEST_KEY
from tests.harness import Run
from tests.mockthread import ThreadedMock

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
    assert b.system is not None and b.system.source == "sys"


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
            "c.jsonl:1: scenario 'a' weight must be a finite number > 0",
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
        ("  - name: s", "  - name: s\n    weight: zero", "c.yaml:5: scenario 's' weight must be a finite"),
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
    # a transcript is held as its user messages, plain strings
    assert replay.scripts == (("a1 {{not a variable}}", "a2"), ("c1",))
    assert billing.scripts == (("b1",), ("d1", "d2"), ("e1",))
    # transcripts are sent as written: braces are not variables
    rng = random.Random(0)
    played = {tuple(t.render(rng) for t in replay.pick(rng)) for _ in range(50)}
    assert played == {("a1 {{not a variable}}", "a2"), ("c1",)}
    assert all(t.expect is None for _ in range(20) for t in replay.pick(rng))


def test_transcript_group_settings_line(tmp_path: Path) -> None:
    text = '{"scenario": "billing", "weight": 0.5, "system": "sys"}\n' + TRANSCRIPTS
    billing = {s.name: s for s in _load(tmp_path, "c.jsonl", text)}["billing"]
    assert (billing.weight, len(billing.scripts)) == (0.5, 3)
    assert billing.system is not None and billing.system.render(random.Random(0)) == "sys"


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
        ('{"scenario": "g", "weight": -2}\n', "c.jsonl:1: scenario 'g' weight must be a finite number > 0"),
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


# -- values named for the rest of a conversation, escapes, system messages ------------------------------

VALUES = """\
variables:
  city: [Paris, Lyon]
scenarios:
  - name: order
    system: "Customer in {{city}}, ref {{number: 1-9}}"
    turns:
      - "Order {{order = number: 10000-99999}} to {{city}}"
      - "Still {{order}}, literal {{{{order}}"
      - user: "Again {{order}} and {{order}}"
"""


def test_a_named_value_is_reused_in_later_turns_and_drawn_anew_per_conversation(tmp_path: Path) -> None:
    (scenario,) = _load(tmp_path, "c.yaml", VALUES)
    rng = random.Random(3)
    orders = set()
    for _ in range(30):
        first, second, third = (turn.render(rng) for turn in scenario.pick(rng))
        order = re.fullmatch(r"Order (\d{5}) to (Paris|Lyon)", first)
        assert order is not None
        assert second == f"Still {order[1]}, literal {{{{order}}}}"
        assert third == f"Again {order[1]} and {order[1]}"
        orders.add(order[1])
    assert len(orders) > 20


def test_system_messages_are_templates(tmp_path: Path) -> None:
    (scenario,) = _load(tmp_path, "c.yaml", VALUES)
    systems = {Conversation(scenario, "c", rng=random.Random(i)).messages[0]["content"] for i in range(40)}
    assert all(re.fullmatch(r"Customer in (Paris|Lyon), ref [1-9]", s) for s in systems)
    assert len(systems) > 5


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            '"Order {{order = ',
            '"Order {{order}} {{order = ',
            "c.yaml:7: scenario 'order' turn 1: {{order}} is used",
        ),
        ("Still {{order}}", "Still {{ordr}}", "c.yaml:8: scenario 'order' turn 2: unknown variable {{ordr}}"),
        ("Again {{order}}", "Again {{order = city}}", "c.yaml:9: scenario 'order' turn 3: {{order = city}}"),
        ("{{order = number", "{{city = number", "c.yaml:7: scenario 'order' turn 1: {{city = number"),
        (
            "ref {{number: 1-9}}",
            "ref {{numbr: 1-9}}",
            "c.yaml:5: scenario 'order' system: unknown variable kind",
        ),
        (
            "ref {{number: 1-9}}",
            "ref {{ref = number: 1-9}}",
            "c.yaml:5: scenario 'order' system: {{ref = ...}}",
        ),
        (
            "ref {{number: 1-9}}",
            "ref {{order}}",
            "c.yaml:5: scenario 'order' system: unknown variable {{order}}",
        ),
        ("ref {{number: 1-9}}", "ref {{number: 1-9", "c.yaml:5: scenario 'order' system: unclosed"),
    ],
)
def test_named_values_and_system_errors_name_the_line(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert expected in _error(tmp_path, "c.yaml", VALUES.replace(old, new))


def test_a_use_before_the_definition_says_where_the_definition_is(tmp_path: Path) -> None:
    text = VALUES.replace("Order {{order = number: 10000-99999}}", "Order {{order}}").replace(
        "Again {{order}}", "Again {{order = number: 1-9}}"
    )
    message = _error(tmp_path, "c.yaml", text)
    assert message.startswith(
        f"{tmp_path / 'c.yaml'}:7: scenario 'order' turn 1: {{{{order}}}} is used before"
    )
    assert "turn 3 names it" in message


def test_history_last_sends_the_system_message_with_the_first_turn_only() -> None:
    conv = Conversation(Scenario.of("s", ["a", "b"], system="sys"), "cid", "last")
    assert conv.request_messages("a") == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "a"},
    ]
    conv.add_reply("r")
    assert conv.request_messages("b") == [{"role": "user", "content": "b"}]


def test_history_last_without_a_system_message_sends_only_the_user_message() -> None:
    conv = Conversation(Scenario.of("s", ["a"]), "cid", "last")
    assert conv.request_messages("a") == [{"role": "user", "content": "a"}]


def test_sample_is_what_a_conversation_sends(tmp_path: Path) -> None:
    (scenario,) = _load(tmp_path, "c.yaml", VALUES)
    messages = sample(scenario, random.Random(1))
    assert [m["role"] for m in messages] == ["system", "user", "user", "user"]
    assert not any("{{order" in m["content"] and "literal" not in m["content"] for m in messages)


# -- validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("weight", [".inf", "-.inf", ".nan", ".NaN"])
def test_a_weight_must_be_finite(tmp_path: Path, weight: str) -> None:
    text = f"scenarios:\n  - name: a\n    weight: {weight}\n    turns: [hi]\n"
    assert "c.yaml:3: scenario 'a' weight must be a finite number > 0" in _error(tmp_path, "c.yaml", text)


def test_jsonl_weights_beyond_a_double_are_refused(tmp_path: Path) -> None:
    message = _error(tmp_path, "c.jsonl", '{"name": "a", "weight": 1e999, "turns": ["hi"]}\n')
    assert message.startswith(f"{tmp_path / 'c.jsonl'}:1: not valid JSON")


@pytest.mark.parametrize("name", ["c.yaml", "c.jsonl"])
def test_a_file_that_is_not_utf8_names_its_line(tmp_path: Path, name: str) -> None:
    good = (
        'scenarios:\n  - name: a\n    turns: ["caf\xe9"]\n'
        if name == "c.yaml"
        else '# comment\n{"name": "b", "turns": ["x"]}\n{"name": "a", "turns": ["caf\xe9"]}\n'
    )
    path = tmp_path / name
    path.write_bytes(good.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_scenarios(path)
    assert str(info.value) == f"{path}:3: not UTF-8 (byte 0xE9): save the file as UTF-8"


def test_a_key_given_twice_in_yaml_names_both_lines(tmp_path: Path) -> None:
    text = "scenarios:\n  - name: a\n    turns: [one]\n    weight: 2\n    turns: [two]\n"
    message = _error(tmp_path, "c.yaml", text)
    assert message == f"{tmp_path / 'c.yaml'}:5: key 'turns' is given twice (first at line 3): keep one"


@pytest.mark.parametrize(
    "line",
    [
        '{"name": "a", "turns": ["one"], "turns": ["two"]}',
        '{"scenario": "g", "messages": [{"role": "user", "content": "x"}], "messages": []}',
        '{"name": "a", "turns": [{"user": "x", "expect": {"contains": "a", "contains": "b"}}]}',
    ],
)
def test_a_key_given_twice_in_jsonl_is_refused(tmp_path: Path, line: str) -> None:
    assert "c.jsonl:2: key " in _error(tmp_path, "c.jsonl", "# first\n" + line + "\n")


def test_duplicate_scenario_names_give_both_lines(tmp_path: Path) -> None:
    text = (
        "scenarios:\n  - name: a\n    turns: [x]\n  - name: b\n    turns: [y]\n  - name: a\n    turns: [z]\n"
    )
    assert _error(tmp_path, "c.yaml", text) == (
        f"{tmp_path / 'c.yaml'}:6: scenario name 'a' is used twice (first at line 2): names must be unique"
    )
    assert "c.jsonl:3: scenario name 'replay' is used twice (first at line 1)" in _error(
        tmp_path,
        "c.jsonl",
        '{"messages": [{"role": "user", "content": "a"}]}\n\n{"name": "replay", "turns": ["x"]}\n',
    )


def test_a_bom_is_accepted_in_jsonl_as_in_yaml(tmp_path: Path) -> None:
    bom = "\ufeff"
    (yaml_scenario,) = _load(tmp_path, "c.yaml", bom + "scenarios:\n  - name: a\n    turns: [hi]\n")
    (jsonl_scenario,) = _load(tmp_path, "c.jsonl", bom + '{"name": "a", "turns": ["hi"]}\n')
    assert yaml_scenario == jsonl_scenario


@pytest.mark.parametrize("name", ["C.YAML", "c.Yml", "C.JSONL"])
def test_extensions_in_any_case(tmp_path: Path, name: str) -> None:
    text = '{"name": "a", "turns": ["hi"]}\n'
    (scenario,) = _load(tmp_path, name, text if name.lower().endswith("jsonl") else f"[{text}]")
    assert scenario.name == "a"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "      - hello",
            "      - yes",
            "c.yaml:6: scenario 's' turn 1 must be a non-empty string: YAML reads yes as the boolean true: "
            'quote it, "yes"',
        ),
        (
            "      - hello",
            "      - 58213",
            "c.yaml:6: scenario 's' turn 1 must be a non-empty string: YAML reads 58213 as the number 58213: "
            "quote it",
        ),
        ("      - hello", "      - [FR, DE, NO]", "c.yaml:6: scenario 's' turn 1 must be a non-empty string"),
        (
            'user: "to {{city}}"',
            "user: off",
            "c.yaml:7: scenario 's' turn 2 must be a non-empty string: YAML reads off as the boolean false",
        ),
        (
            "city: [Paris]",
            "city: [FR, DE, NO]",
            "c.yaml:2: variable 'city': YAML reads NO as the boolean false: quote it, \"NO\"",
        ),
        (
            "city: [Paris]",
            "city: [7:30, 8]",
            "c.yaml:2: variable 'city': YAML reads 7:30 as the number 450: quote it",
        ),
        ("city: [Paris]", "city: [Paris, ~]", "c.yaml:2: variable 'city': YAML reads ~ as null"),
        (
            "contains: x",
            "contains: [x, yes]",
            "c.yaml:9: scenario 's' turn 2: expect.contains: YAML reads yes as the boolean true",
        ),
        (
            "  - name: s",
            "  - name: no",
            "c.yaml:4: 'name' must be a non-empty string: YAML reads no as the boolean false",
        ),
        (
            "  - name: s",
            "  - name: s\n    system: 1.5",
            "c.yaml:5: scenario 's' 'system' must be a string: YAML reads 1.5",
        ),
    ],
)
def test_yaml_11_surprises_say_quote_it(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert expected in _error(tmp_path, "c.yaml", YAML_ERRORS.replace(old, new))


def test_turns_as_a_flow_list_of_yaml_11_words(tmp_path: Path) -> None:
    text = "scenarios:\n  - name: s\n    turns: [FR, DE, NO]\n"
    assert (
        "c.yaml:3: scenario 's' turn 3 must be a non-empty string: YAML reads NO as the boolean false: "
        'quote it, "NO"' in _error(tmp_path, "c.yaml", text)
    )


def test_numbers_that_read_back_as_written_are_list_values(tmp_path: Path) -> None:
    (scenario,) = _load(tmp_path, "c.yaml", YAML_ERRORS.replace("city: [Paris]", "city: [75, 1.5, '07']"))
    rng = random.Random(0)
    assert {scenario.pick(rng)[1].render(rng) for _ in range(60)} == {"to 75", "to 1.5", "to 07"}


# -- loaded once, held compactly, loaded without stopping the event loop ----------------------------------


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    forget_loaded()
    yield
    forget_loaded()


def _transcripts_file(path: Path, count: int) -> Path:
    """`count` transcripts of 3 user turns, about 600 bytes a line; one user message in five is "thanks"."""
    reply = {"role": "assistant", "content": "Certainly, let me look into that for you. " * 3}
    with path.open("wb") as file:
        for i in range(count):
            messages = []
            for turn in range(3):
                user = (
                    "thanks" if (i + turn) % 5 == 0 else f"Question {turn} of conversation {i}: where is it?"
                )
                messages += [{"role": "user", "content": user}, reply]
            file.write(orjson.dumps({"id": f"t{i}", "scenario": f"g{i % 3}", "messages": messages}) + b"\n")
    return path


def test_a_file_is_read_once_while_it_is_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("scenarios:\n  - name: a\n    turns: [hi]\n")
    reads = _count_reads(monkeypatch)
    first = load_scenarios(path)
    assert load_scenarios(str(path)) is first
    assert load_scenarios(tmp_path / "." / "c.yaml") is first
    assert scenario_outline(path) == (Outline("a", 1.0, 0, 1, 1),)
    assert len(reads) == 1
    path.write_text("scenarios:\n  - name: b\n    turns: [hi, there]\n")
    assert [s.name for s in load_scenarios(path)] == ["b"]
    assert len(reads) == 2


def test_an_outline_checks_everything_and_keeps_only_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"scenario": "billing", "weight": 5}\n' + TRANSCRIPTS + "\n")
    reads = _count_reads(monkeypatch)
    assert scenario_outline(path) == (
        Outline("billing", 5.0, 3, 4, 2),
        Outline("replay", 2.0, 2, 3, 2),
        Outline("scripted", 1.0, 0, 1, 1),
    )
    assert reads == [False]
    # the scenarios themselves were not kept: the users' process reads them
    assert len(load_scenarios(path)) == 3
    assert reads == [False, True]
    broken = TRANSCRIPTS.replace('"content": "e1"', '"content": 7')
    path.write_text(broken + "\n# longer now\n")
    with pytest.raises(ConfigError, match=r"c\.jsonl:6: transcript '5' message 1: a user 'content'"):
        scenario_outline(path)


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    reads: list[bool] = []
    read = conversation._read

    def counted(path: Path, *, keep: bool) -> list[Any]:
        reads.append(keep)
        return read(path, keep=keep)

    monkeypatch.setattr(conversation, "_read", counted)
    return reads


def test_transcripts_are_held_in_about_their_size(tmp_path: Path) -> None:
    path = _transcripts_file(tmp_path / "t.jsonl", 2000)
    tracemalloc.start()
    try:
        scenarios = load_scenarios(path)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(len(s.scripts) for s in scenarios) == 2000
    assert held < 2 * path.stat().st_size
    # a message repeated across transcripts is held once
    thanks = [turn for s in scenarios for script in s.scripts for turn in script if turn == "thanks"]
    assert len(thanks) > 100 and all(turn is thanks[0] for turn in thanks)


def test_preload_keeps_the_event_loop_running(tmp_path: Path) -> None:
    path = _transcripts_file(tmp_path / "big.jsonl", 20_000)
    ticks: list[float] = []

    def tick() -> None:
        while True:
            ticks.append(time.perf_counter())
            gevent.sleep(0.01)

    ticker = gevent.spawn(tick)
    gevent.sleep(0)
    started = time.perf_counter()
    conversation.preload(path)
    ended = time.perf_counter()
    ticker.kill()
    during = [t for t in ticks if started < t < ended]
    # Loading in the event loop's own thread would allow no tick at all until it ends. How many more
    # than one the loop gets depends on the GIL and on the machine's load (CI saw 2 in 0.12 s).
    assert len(during) >= 2, (len(during), ended - started)
    assert sum(len(s.scripts) for s in load_scenarios(path)) == 20_000


def test_overlapping_preloads_read_the_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _transcripts_file(tmp_path / "t.jsonl", 300)
    reads = _count_reads(monkeypatch)
    gevent.joinall([gevent.spawn(conversation.preload, path) for _ in range(3)], raise_error=True)
    assert reads == [True]


@pytest.mark.parametrize("enabled", [True, False])
def test_loading_leaves_the_garbage_collector_as_it_was(tmp_path: Path, enabled: bool) -> None:
    # loadtest's --gc rests the collector during a run: a load must not turn it back on, nor off.
    path = _transcripts_file(tmp_path / "t.jsonl", 10)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"name": "a"}\n')
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        load_scenarios(path)
        with pytest.raises(ConfigError):
            load_scenarios(broken)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_preload_raises_the_files_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("scenarios:\n  - name: a\n    turns: []\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:2: scenario 'a' needs 'turns'"):
        conversation.preload(path)


# -- conversation_ms (loadtest.plugin): from the first request, not from the pause before it -------------


def test_conversation_time_starts_at_the_first_request(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run], tmp_path: Path
) -> None:
    mock = thread_mock(*FAST)
    conversations = tmp_path / "one.yaml"
    conversations.write_text("scenarios:\n  - name: one\n    turns: [hi]\n")
    pause = "human:floor=0.5,jitter=0,type_cpm=100000,read_wpm=100000"
    run = in_process(
        f"--host {mock.url} {NLX} -u 3 -r 3 --think-time {pause} --conversations {conversations}",
        until=lambda env: int(env.loadtest.metrics.counts["conversations_completed"]) >= 3,
        env={"NLX_API_KEY": TEST_KEY},
    )
    one = run.summary()["by_scenario"]["one"]
    assert one["conversation_ms"]["count"] >= 3
    # Each conversation waited 0.5 s before its one turn: that pause is not in its time.
    assert one["conversation_ms"]["max"] < 400
    assert one["conversation_ms"]["min"] >= one["turn_ms"]["min"]


# -- reply_is: a turn whose message the last reply picks -------------------------------------------------

BRANCHES = """\
variables:
  city: [Paris]
scenarios:
  - name: b
    turns:
      - "Hi {{order = number: 10000-99999}}"
      - reply_is:
          - {contains: ["order", "number"], user: "It's {{order}}"}
          - {regex: "(?i)which city", user: "{{city}}", expect: {max_length: 50}}
          - {not_contains: "?", max_length: 20, user: "short and sure"}
          - {default: "I don't know"}
        expect: {not_contains: sorry}
      - reply_is:
          - {contains: bye, user: "Bye!"}
"""


def _branches(tmp_path: Path, text: str = BRANCHES) -> tuple[Any, ...]:
    (scenario,) = _load(tmp_path, "c.yaml", text)
    return scenario.pick(random.Random(0))


def test_reply_is_plays_the_first_rule_the_last_reply_meets(tmp_path: Path) -> None:
    first, second, third = _branches(tmp_path)
    rng = random.Random(0)
    sent = first.render(rng)
    picked = {
        reply: second.respond(reply) for reply in ("Your ORDER NUMBER?", "Which city?", "Noted.", "Hm?")
    }
    # contains (every string, any case), a regex, not_contains with max_length (both hold), the default
    assert [turn.render(rng) for turn in picked.values()] == [
        f"It's {sent[3:]}",
        "Paris",
        "short and sure",
        "I don't know",
    ]
    # A rule meets its conditions in order: a reply with an order number and a city question is the first.
    assert second.respond("order number, and which city?").render(rng).startswith("It's")
    assert second.respond("a long reply with no question mark in it") == picked["Hm?"]
    # A rule's own expect replaces the turn's; the others keep the turn's.
    assert picked["Which city?"].expect == Expectation(max_length=50)
    assert picked["Noted."].expect == picked["Hm?"].expect == Expectation(not_contains=("sorry",))
    # With no default, a reply no rule meets plays no turn: the conversation goes on without it.
    assert third.respond("Anything else?") is None
    assert third.respond("Goodbye").render(rng) == "Bye!"


def test_reply_is_in_jsonl_and_in_a_rendered_sample(tmp_path: Path) -> None:
    line = {"name": "j", "turns": ["Hi", {"reply_is": [{"regex": "\\d", "user": "a"}, {"default": "b"}]}]}
    (scenario,) = _load(tmp_path, "c.jsonl", json.dumps(line) + "\n")
    branching = scenario.pick(random.Random(0))[1]
    assert branching.respond("no digit").text == "b" and branching.respond("4 digits").text == "a"
    # Without replies, a sample sends the message of one rule or another.
    seconds = {sample(scenario, random.Random(seed))[1]["content"] for seed in range(20)}
    assert seconds == {"a", "b"}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            '      - "Hi {{order = number: 10000-99999}}"\n',
            "",
            "c.yaml:6: scenario 'b' turn 1: reply_is picks a message by the last reply, and the first turn "
            "has none",
        ),
        ("reply_is:\n          - {contains: bye", "reply_is: []\n          - {contains: bye", "c.yaml:"),
        (
            '{contains: ["order", "number"], user',
            '{contains: ["order", "number"], usr',
            "c.yaml:8: scenario 'b' turn 2 rule 1: unknown key 'usr'",
        ),
        (
            '{contains: ["order", "number"], user: "It\'s {{order}}"}',
            '{contains: ["order", "number"]}',
            "c.yaml:8: scenario 'b' turn 2 rule 1 needs 'user'",
        ),
        (
            '{not_contains: "?", max_length: 20, user',
            "{user",
            "c.yaml:10: scenario 'b' turn 2 rule 3 needs a condition on the reply",
        ),
        (
            '"(?i)which city"',
            '"(which city"',
            "c.yaml:9: scenario 'b' turn 2 rule 2: reply_is.regex '(which city' is not valid",
        ),
        (
            "max_length: 20",
            "max_length: 0",
            "c.yaml:10: scenario 'b' turn 2 rule 3: reply_is.max_length must be an integer >= 1",
        ),
        (
            '{default: "I don\'t know"}',
            '{default: "I don\'t know", regex: x}',
            "c.yaml:11: scenario 'b' turn 2 rule 4: a default has no condition",
        ),
        (
            '{not_contains: "?", max_length: 20, user: "short and sure"}',
            "{default: early}",
            "c.yaml:10: scenario 'b' turn 2 rule 3: the default goes last",
        ),
        (
            '{default: "I don\'t know"}',
            "{default: yes}",
            "c.yaml:11: scenario 'b' turn 2 rule 4: 'default' must be a non-empty string: YAML reads yes as",
        ),
        ("{{city}}", "{{town}}", "c.yaml:9: scenario 'b' turn 2 rule 2: unknown variable {{town}}"),
        (
            '"It\'s {{order}}"',
            '"It\'s {{ref = number: 1-9}}"',
            "c.yaml:8: scenario 'b' turn 2 rule 1: {{ref = ...}}: a message picked by the reply cannot name",
        ),
        (
            "expect: {max_length: 50}",
            "expect: {max: 50}",
            "c.yaml:9: scenario 'b' turn 2 rule 2: unknown expect key 'max'",
        ),
        (
            "      - reply_is:\n          - {contains: bye",
            "      - user: x\n        reply_is:\n          - {contains: bye",
            "c.yaml:13: scenario 'b' turn 3: give 'user' or 'reply_is', not both",
        ),
        (
            'reply_is:\n          - {contains: bye, user: "Bye!"}',
            "reply_is: [Bye]",
            "c.yaml:13: scenario 'b' turn 3 rule 1 must be {CONDITION: ..., user: MESSAGE} or {default: ",
        ),
    ],
)
def test_reply_is_errors_name_the_line(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in BRANCHES
    message = _error(tmp_path, "c.yaml", BRANCHES.replace(old, new))
    assert message.startswith(str(tmp_path / expected)), message


def test_reply_is_plays_against_the_replies_served(
    thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run], tmp_path: Path
) -> None:
    # A mock reply holds each word of its vocabulary ("order", "refund", "booking", "travel"...) about
    # one time in two: over a few conversations each rule is met (the first about a third of the time,
    # the second and the default as often), and the message sent is the one the reply served picked.
    mock = thread_mock(*FAST)
    conversations = tmp_path / "b.yaml"
    conversations.write_text(
        "scenarios:\n"
        "  - name: b\n"
        "    turns:\n"
        "      - Hi\n"
        "      - reply_is:\n"
        "          - {contains: [order, refund], user: about a refund}\n"
        "          - {regex: '(?i)booking', user: about a booking}\n"
        "          - {default: about nothing}\n"
        "      - reply_is: [{contains: TRAVEL, user: about travel}]\n"
        "      - Bye\n"
    )
    run = in_process(
        f"--host {mock.url} {NLX} -u 4 -r 4 --think-time 0 --conversations {conversations}",
        until=lambda env: int(env.loadtest.metrics.counts["conversations_completed"]) >= 24,
        env={"NLX_API_KEY": TEST_KEY},
    )
    assert run.exit_code == 0, run.output[-3000:]
    taken: Counter[str] = Counter()
    for cid in mock.get("/_mock/conversations")["ids"]:
        turns = mock.conversation(cid)["turns"]
        if len(turns) < 3 or turns[-1]["messages"][-1]["content"] != "Bye":
            continue  # cut by the end of the run
        first, second = turns[0]["reply"].lower(), turns[1]["messages"][-1]["content"]
        refund = "order" in first and "refund" in first
        assert second == (
            "about a refund" if refund else "about a booking" if "booking" in first else "about nothing"
        )
        # Turn 3 is played only when the reply before it speaks of travel: then "Bye" is turn 4.
        assert len(turns) == (4 if "travel" in turns[1]["reply"].lower() else 3)
        taken[second] += 1
        taken["skipped" if len(turns) == 3 else "played"] += 1
    assert set(taken) == {"about a refund", "about a booking", "about nothing", "skipped", "played"}, taken
    # Turns are numbered as sent: a skipped turn leaves no gap.
    by_turn = run.summary()["by_turn"]
    assert by_turn["3"]["counts"]["turns"] > by_turn.get("4", {"counts": {"turns": 0}})["counts"]["turns"]
