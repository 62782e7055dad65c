from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from loadtest.conversation import Conversation, Scenario, ThinkTime, choose, load_scenarios
from loadtest.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_conversations_load() -> None:
    scenarios = load_scenarios(ROOT / "locustfiles" / "conversations.yaml")
    assert len(scenarios) >= 3
    assert all(s.turns for s in scenarios)
    assert any(len(s.turns) > 1 for s in scenarios)


def test_jsonl_format(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(
        '# comment\n{"name": "a", "weight": 2, "turns": ["hi", {"user": "bye"}]}\n\n'
        '{"name": "b", "system": "sys", "turns": ["x"]}\n',
        encoding="utf-8",
    )
    a, b = load_scenarios(path)
    assert a == Scenario("a", ("hi", "bye"), 2.0, None)
    assert b.system == "sys"


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
    ],
)
def test_bad_jsonl_line_is_named(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_scenarios(path)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_yaml_scenario_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("scenarios:\n  - name: ok\n    turns: [hi]\n  - name: broken\n    turns: []\n")
    with pytest.raises(ConfigError, match=r"c.yaml:4: scenario 'broken' needs 'turns'"):
        load_scenarios(path)


def test_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("scenarios:\n  - name: a\n    turns: [hi\n")
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: .*fix the YAML syntax"):
        load_scenarios(path)


def test_missing_file_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--conversations"):
        load_scenarios(tmp_path / "nope.yaml")


def test_full_history_carries_system_user_and_assistant_replies() -> None:
    conv = Conversation(Scenario("s", ("a", "b"), system="sys"), "cid", "full")
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
    conv = Conversation(Scenario("s", ("a", "b"), system="sys"), "cid", "last")
    conv.request_messages("a")
    conv.add_reply("r")
    assert conv.request_messages("b") == [{"role": "user", "content": "b"}]


def test_weighted_choice_follows_weights() -> None:
    scenarios = [Scenario("a", ("x",), 3.0), Scenario("b", ("x",), 1.0)]
    rng = random.Random(1)
    counts = Counter(choose(scenarios, rng).name for _ in range(8000))
    assert 0.72 < counts["a"] / 8000 < 0.78


@pytest.mark.parametrize(
    ("text", "low", "high"), [("0", 0, 0), ("3", 3, 3), ("2-8", 2, 8), ("0.5 - 1.5", 0.5, 1.5)]
)
def test_think_time_parses(text: str, low: float, high: float) -> None:
    think = ThinkTime.parse(text)
    assert (think.low, think.high) == (low, high)
    rng = random.Random(3)
    assert all(low <= think.sample(rng) <= high for _ in range(100))


@pytest.mark.parametrize("text", ["fast", "8-2", "-1", "1-", ""])
def test_bad_think_time_is_one_line_naming_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match="--think-time"):
        ThinkTime.parse(text)
