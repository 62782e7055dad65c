"""A share written as a percentage (`10%`) or a fraction (`0.1`): one rule for every option that
takes one (`--abandon`, the mock's fault rates, `loadtest compare --tolerance`)."""

from __future__ import annotations

import re

_SHARE = re.compile(r"\s*((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(%?)\s*")


class ShareError(ValueError):
    """Not a share between 0 and 100 %; the message says what is accepted."""


def parse_share(text: str | float, *, over_100_percent: bool = False) -> float:
    """`10%` or `0.1` -> 0.1, between 0 and 1 included (with `over_100_percent`, a percentage may
    pass 100%: a tolerance of `150%`).

    A fraction over 1 is refused rather than read as a percentage: `5` might mean 5 % or a mistake.
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        text = repr(float(text))
    match = _SHARE.fullmatch(str(text))
    if match is None:
        raise ShareError(f"{text!r} is not a share: write a percentage like 10% or a fraction like 0.1")
    number, percent = match.groups()
    value = float(number) / (100.0 if percent else 1.0)
    if value > 1.0 and not (percent and over_100_percent):
        hint = f"{number}% for a percentage, or a fraction" if not percent else "at most 100%"
        raise ShareError(f"{text!r} is over 100%: write {hint}")
    return value
