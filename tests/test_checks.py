from __future__ import annotations

from typing import Any

import pytest

from loadtest.checks import Expectation, excerpt, fallback_check
from loadtest.errors import ConfigError


@pytest.mark.parametrize(
    ("expect", "reply", "failure"),
    [
        ({"contains": "order"}, "Your ORDER is on its way", None),
        ({"contains": "order"}, "Your parcel is on its way", "reply does not contain 'order'"),
        ({"contains": ["order", "Tracking"]}, "order 1, tracking link", None),
        ({"contains": ["order", "tracking"]}, "order 1", "reply does not contain 'tracking'"),
        ({"contains": "café"}, "CAFÉ au lait", None),
        ({"contains": "strasse"}, "Hauptstraße", None),  # casefold, not lower
        ({"not_contains": "sorry"}, "Here you go", None),
        ({"not_contains": ["sorry", "error"]}, "An ERROR occurred", "reply contains 'error'"),
        ({"regex": r"\b\d{5}\b"}, "order 48213 shipped", None),
        ({"regex": r"\b\d{5}\b"}, "order 4821 shipped", r"reply does not match /\b\d{5}\b/"),
        ({"regex": "Order"}, "order", "reply does not match /Order/"),  # case-sensitive
        ({"regex": "(?i)Order"}, "order", None),
        ({"max_length": 5}, "12345", None),
        ({"max_length": 5}, "123456", "reply is 6 characters long, over max_length 5"),
        ({"max_length": 1}, "🚀", None),  # characters, not bytes
        ({"contains": "a", "not_contains": "b", "regex": "c", "max_length": 3}, "ac", None),
        ({"contains": "x", "max_length": 1}, "yy", "reply does not contain 'x'"),  # the first failure
        ({"contains": "a"}, "", "reply does not contain 'a'"),
    ],
)
def test_expectations(expect: dict[str, Any], reply: str, failure: str | None) -> None:
    assert Expectation.parse(expect).check(reply) == failure


@pytest.mark.parametrize(
    ("value", "key", "expected"),
    [
        (None, None, "'expect' must be a mapping with any of contains, not_contains, regex, max_length"),
        ({}, None, "'expect' must be a mapping"),
        (["order"], None, "'expect' must be a mapping"),
        ({"contain": "x"}, "contain", "unknown expect key 'contain': use contains"),
        ({"contains": ""}, "contains", "expect.contains must be a non-empty string or list"),
        ({"contains": []}, "contains", "expect.contains must be"),
        ({"not_contains": ["a", 1]}, "not_contains", "expect.not_contains must be"),
        ({"regex": "(unclosed"}, "regex", "expect.regex '(unclosed' is not valid: missing )"),
        ({"regex": ""}, "regex", "expect.regex must be a non-empty string"),
        ({"regex": 5}, "regex", "expect.regex must be a non-empty string"),
        ({"max_length": 0}, "max_length", "expect.max_length must be an integer >= 1"),
        ({"max_length": 2.5}, "max_length", "expect.max_length must be an integer >= 1"),
        ({"max_length": True}, "max_length", "expect.max_length must be an integer >= 1"),
    ],
)
def test_bad_expectations_name_the_place_of_the_key(value: Any, key: str | None, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        Expectation.parse(value, lambda k: f"f.yaml:{k or 'expect'}")
    assert str(info.value).startswith(f"f.yaml:{key or 'expect'}: {expected}")


def test_no_condition_passes_everything() -> None:
    assert Expectation().check("anything") is None


@pytest.mark.parametrize(
    ("reply", "failure"),
    [
        ("Sorry, I didn't get that", 'fallback reply: "Sorry, I didn\'t get that"'),
        ("i DID NOT UNDERSTAND.", 'fallback reply: "i DID NOT UNDERSTAND."'),
        ("Your order has shipped", None),
        ("", None),
        ("Sorry,\u2028I  \n\ndidn't get that", 'fallback reply: "Sorry, I didn\'t get that"'),
    ],
)
def test_fallback_check(reply: str, failure: str | None) -> None:
    check = fallback_check(r"didn't get that|did not understand")
    assert check(reply) == failure


def test_fallback_reply_is_cut_to_80_characters() -> None:
    reply = "Sorry, I didn't get that. " + "Could you say it again in other words? " * 5
    failure = fallback_check("sorry")(reply)
    assert failure is not None
    shown = failure.removeprefix('fallback reply: "').removesuffix('"')
    assert len(shown) == 80
    assert shown.endswith("…")
    assert reply.startswith(shown[:-1])


@pytest.mark.parametrize(
    ("pattern", "expected"), [("(sorry", "is not a valid regular expression"), ("", "is empty")]
)
def test_bad_fallback_pattern_names_the_option(pattern: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        fallback_check(pattern)
    assert str(info.value).startswith("--fallback-pattern")
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "limit", "expected"), [("a  b\n", 80, "a b"), ("abcdef", 4, "abc…"), ("abcd", 4, "abcd")]
)
def test_excerpt(text: str, limit: int, expected: str) -> None:
    assert excerpt(text, limit) == expected
