"""One rule for a share written as 10% or 0.1 (--abandon, fault rates, --tolerance)."""

from __future__ import annotations

import pytest

from loadtest.shares import ShareError, parse_share


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10%", 0.1),
        ("0.1", 0.1),
        (" 5 % ", 0.05),
        (".5", 0.5),
        ("1", 1.0),
        ("0", 0.0),
        ("1e-2", 0.01),
        (0.25, 0.25),
    ],
)
def test_a_percentage_or_a_fraction(text: str | float, value: float) -> None:
    assert parse_share(text) == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ten", "'ten' is not a share: write a percentage like 10% or a fraction like 0.1"),
        ("-5%", "is not a share"),
        ("", "is not a share"),
        ("5", "'5' is over 100%: write 5% for a percentage, or a fraction"),
        ("150%", "'150%' is over 100%: write at most 100%"),
    ],
)
def test_anything_else_names_the_forms(text: str, message: str) -> None:
    with pytest.raises(ShareError, match=message.replace("(", r"\(").replace("%", "%")):
        parse_share(text)


def test_a_percentage_over_100_when_the_option_allows_it_but_never_a_fraction_over_1() -> None:
    assert parse_share("150%", over_100_percent=True) == pytest.approx(1.5)
    with pytest.raises(ShareError, match="over 100%"):
        parse_share("1.5", over_100_percent=True)
