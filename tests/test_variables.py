from __future__ import annotations

import random
from datetime import date, timedelta

import pytest

from loadtest.errors import ConfigError
from loadtest.variables import (
    Choice,
    Date,
    Define,
    MessageError,
    Number,
    Reuse,
    Template,
    check_list,
    compile_script,
    compile_template,
)

TODAY = date(2026, 2, 27)
NAMED = {"city": ("Paris", "Lyon", "Nice")}


def _draws(text: str, n: int = 2000, seed: int = 7) -> list[str]:
    template = compile_template(text, NAMED)
    rng = random.Random(seed)
    return [template.render(rng, today=TODAY) for _ in range(n)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{choice: red | green | blue}}", {"red", "green", "blue"}),
        ("{{choice:a|b}}", {"a", "b"}),
        ("{{choice: only one}}", {"only one"}),
        ("{{ city }}", {"Paris", "Lyon", "Nice"}),
        ("{{number: 3-6}}", {"3", "4", "5", "6"}),
        ("{{number: -2..1}}", {"-2", "-1", "0", "1"}),
        ("{{number: 42-42}}", {"42"}),
        ("{{date: +1..+3}}", {"2026-02-28", "2026-03-01", "2026-03-02"}),
        ("{{date: -1..0}}", {"2026-02-26", "2026-02-27"}),
        ("{{date: +2}}", {"2026-03-01"}),
        ("{{date: 0 | %d %B}}", {"27 February"}),
        ("{{date: +1..+2 | %A}}", {"Saturday", "Sunday"}),
    ],
)
def test_every_form_draws_exactly_its_values(text: str, expected: set[str]) -> None:
    assert set(_draws(text)) == expected


def test_number_range_is_inclusive_and_roughly_uniform() -> None:
    values = [int(v) for v in _draws("{{number: 1000-9999}}", n=20_000)]
    assert min(values) >= 1000 and max(values) <= 9999
    assert 5000 < sum(values) / len(values) < 5999
    ends = [int(v) for v in _draws("{{number: 1-4}}", n=400)]
    assert {1, 4} <= set(ends)


def test_date_counts_from_today() -> None:
    values = {date.fromisoformat(v) for v in _draws("{{date: +1..+30}}", n=5000)}
    assert values == {TODAY + timedelta(days=d) for d in range(1, 31)}
    today = date.today().isoformat()
    assert compile_template("{{date: 0}}").render(random.Random(0)) == today


def test_text_around_and_several_variables() -> None:
    template = compile_template(
        "Book {{choice: two|four}} in {{city}} on {{date: +1 | %d/%m}}, ref {{number: 7-7}}.", NAMED
    )
    assert template.parts[0] == "Book "
    assert template.parts[-1] == "."
    text = template.render(random.Random(1), today=TODAY)
    assert text.startswith("Book ") and text.endswith(" on 28/02, ref 7.")
    assert text.split(" in ")[1].split(" on ")[0] in NAMED["city"]


def test_same_template_gives_different_text_each_time() -> None:
    assert len(set(_draws("order {{number: 10000-99999}} to {{city}}", n=50))) > 40


def test_rendering_only_uses_the_given_rng() -> None:
    template = compile_template("{{city}} {{number: 1-1000000}} {{date: 0..+365}}", NAMED)
    assert template.render(random.Random(3), today=TODAY) == template.render(random.Random(3), today=TODAY)


def test_compiled_parts() -> None:
    assert compile_template("{{choice: a | b}}").parts == (Choice(("a", "b")),)
    assert compile_template("{{number: 1-9}}").parts == (Number(1, 9),)
    assert compile_template("{{date: +1..+30 | %d %B}}").parts == (Date(1, 30, "%d %B"),)
    assert compile_template("{{city}}", NAMED).parts == (Choice(NAMED["city"]),)


@pytest.mark.parametrize("text", ["plain text", "a } b }} c", "", "ünïcode 🚀"])
def test_text_without_variables_is_literal(text: str) -> None:
    template = compile_template(text)
    assert template.is_literal
    assert template.render(random.Random(0)) == text


def test_literal_template_keeps_braces() -> None:
    template = Template.literal("say {{hi}}")
    assert template.is_literal
    assert template.render(random.Random(0)) == "say {{hi}}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hi {{city", "unclosed '{{'"),
        ("{{ {{city}} }}", "'{{' inside a variable"),
        ("{{town}}", "unknown variable {{town}}: define it under 'variables:' (defined: city)"),
        ("{{}}", "unknown variable {{}}"),
        ("{{colour: red}}", "unknown variable kind 'colour'"),
        ("{{choice: a || b}}", "has an empty option"),
        ("{{choice:}}", "has an empty option"),
        ("{{choice}}", "needs arguments, like {{choice: red | green | blue}}"),
        ("{{number: 9-1}}", "the range must go low-high, like 1-9"),
        ("{{number: 1.5-3}}", "is not an integer range"),
        ("{{number: 5}}", "is not an integer range"),
        ("{{number}}", "needs arguments"),
        ("{{date: +30..+1}}", "the range must go low..high, like +1..+30"),
        ("{{date: tomorrow}}", "is not a range of days from today"),
        ("{{date: +1..+3 | dd/mm}}", "needs strftime fields"),
        ("{{date: +1 |}}", "needs strftime fields"),
    ],
)
def test_bad_templates_say_what_is_wrong(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_template(text, NAMED)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_variable_without_named_lists() -> None:
    with pytest.raises(ConfigError, match=r"\(defined: none\)"):
        compile_template("{{city}}")


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        ("city", ["Paris", 75, 1.5], ("Paris", "75", "1.5")),
        ("_x1", ["a"], ("a",)),
    ],
)
def test_named_lists(name: str, values: list[object], expected: tuple[str, ...]) -> None:
    assert check_list(name, values) == expected


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        ("my city", ["a"], "must be a word"),
        (3, ["a"], "must be a word"),
        ("number", ["a"], "is taken by {{number: ...}}"),
        ("city", [], "non-empty list"),
        ("city", "Paris", "non-empty list"),
        ("city", ["a", ""], "is not a value"),
        ("city", ["a", True], "is not a value"),
        ("city", [["a"]], "is not a value"),
    ],
)
def test_bad_named_lists(name: object, values: object, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("{", r"\{").replace("}", r"\}")):
        check_list(name, values)


# -- values named for the rest of a conversation ----------------------------------------------------------


def test_a_named_value_is_drawn_once_and_reused() -> None:
    first, second = compile_script(["order {{order = number: 10000-99999}}", "{{order}} again, {{order}}"])
    assert first.parts == ("order ", Define("order", Number(10000, 99999)))
    assert second.parts == (Reuse("order"), " again, ", Reuse("order"))
    assert first.defines == ("order",) and second.defines == ()
    assert first.uses_values and second.uses_values and not compile_template("{{number: 1-2}}").uses_values
    rng = random.Random(1)
    drawn = set()
    for _ in range(20):
        values: dict[str, str] = {}
        sent = first.render(rng, values=values)
        assert second.render(rng, values=values) == f"{values['order']} again, {values['order']}"
        assert sent == f"order {values['order']}"
        drawn.add(values["order"])
    assert len(drawn) > 15


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{pick = choice: a | b}}", {"a", "b"}),
        ("{{town = city}}", {"Paris", "Lyon", "Nice"}),
        ("{{day = date: +1 | %d}}", {"28"}),
        ("{{n = number: 4-4}}", {"4"}),
    ],
)
def test_every_kind_can_be_named(text: str, expected: set[str]) -> None:
    (template,) = compile_script([text + " {{" + text[2:].split("=")[0].strip() + "}}"], NAMED)
    rng = random.Random(0)
    renders = {template.render(rng, today=TODAY) for _ in range(200)}
    assert {r.split(" ")[0] for r in renders} == expected
    assert all(r.split(" ")[0] == r.split(" ")[1] for r in renders)


def test_a_value_named_in_a_message_is_known_later_in_it() -> None:
    template = compile_template("{{x = number: 5-5}} and {{x}}")
    assert template.render(random.Random(0)) == "5 and 5"


@pytest.mark.parametrize(
    ("texts", "index", "expected"),
    [
        (["{{order}}", "{{order = number: 1-9}}"], 0, "{{order}} is used before turn 2 names it"),
        (
            ["{{x = number: 1-9}}", "{{x = number: 1-9}}"],
            1,
            "'x' is named already (turn 1): reuse it with {{x}}",
        ),
        (["{{city = number: 1-9}}"], 0, "'city' is a list under 'variables:'"),
        (["{{number = number: 1-9}}"], 0, "'number' is a variable kind"),
        (["{{my order = number: 1-9}}"], 0, "a value's name must be a word"),
        (["{{x = }}"], 0, "{{x = }} names nothing: use {{x = number: 10000-99999}}"),
        (["a", "{{x = number: 9-1}}"], 1, "the range must go low-high"),
        (["a", "{{x = colour}}"], 1, "unknown variable {{colour}}"),
        (["{{x}}"], 0, "unknown variable {{x}}: define it under 'variables:' (defined: city), name it in an"),
    ],
)
def test_named_value_errors_say_which_message(texts: list[str], index: int, expected: str) -> None:
    with pytest.raises(MessageError) as info:
        compile_script(texts, NAMED)
    assert info.value.index == index
    assert expected in str(info.value)


# -- escapes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("{{{{", "{{"),
        ("a {{{{literal}} b", "a {{literal}} b"),
        ("{{{{{{{{", "{{{{"),
        ("{{{{ {{number: 3-3}} }}", "{{ 3 }}"),
        ("}} alone", "}} alone"),
    ],
)
def test_four_braces_write_two(text: str, sent: str) -> None:
    template = compile_template(text)
    assert template.render(random.Random(0)) == sent
    assert template.source == text


def test_an_escape_alone_is_literal_text() -> None:
    template = compile_template("say {{{{hi}}")
    assert template.is_literal and template.parts == ("say {{hi}}",)


def test_an_unclosed_brace_names_the_escape() -> None:
    with pytest.raises(ConfigError, match=r"write '\{\{\{\{' for a literal '\{\{'"):
        compile_template("a {{ b")
