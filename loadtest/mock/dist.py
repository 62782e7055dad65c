"""Random distributions for the mock's timings and chunk counts, parsed from short strings.

Accepted forms (durations take `ms`, `s` or `us`; a bare number is milliseconds):

    const:100ms   100ms   0.1s   100      always the same value
    uniform:A:B                           uniform between A and B
    normal:MEAN:SD                        normal, clamped at 0
    lognormal:MEDIAN:SIGMA                log-normal with the given median; SIGMA has no unit
    exp:MEAN                              exponential with the given mean

Counts (`--chunks`) take the same forms without units and are rounded to an integer of at least 1.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["const", "uniform", "normal", "lognormal", "exp"]

FORMS = "const:V (or just V), uniform:A:B, normal:MEAN:SD, lognormal:MEDIAN:SIGMA or exp:MEAN"

_ARITY: dict[str, int] = {"const": 1, "uniform": 2, "normal": 2, "lognormal": 2, "exp": 1}
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_NUMBER = re.compile(r"^([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)(us|ms|s)?$")


@dataclass(frozen=True)
class Distribution:
    """A parsed distribution; durations are held in seconds, counts as plain numbers."""

    kind: Kind
    a: float
    b: float = 0.0

    def sample(self, rng: random.Random) -> float:
        """One non-negative sample."""
        if self.kind == "const":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        if self.kind == "normal":
            return max(0.0, rng.gauss(self.a, self.b))
        if self.kind == "lognormal":
            return self.a * math.exp(rng.gauss(0.0, self.b))
        return rng.expovariate(1.0 / self.a) if self.a > 0 else 0.0

    def sample_count(self, rng: random.Random) -> int:
        """One sample rounded to an integer, at least 1."""
        return max(1, round(self.sample(rng)))


def parse_duration_dist(text: str) -> Distribution:
    """Parse a distribution of durations (result in seconds); ValueError names the accepted forms."""
    return _parse(text, durations=True)


def parse_count_dist(text: str) -> Distribution:
    """Parse a distribution of counts; ValueError names the accepted forms."""
    return _parse(text, durations=False)


def _parse(text: str, *, durations: bool) -> Distribution:
    parts = [part.strip() for part in text.strip().split(":")]
    kind = parts[0].lower()
    args = parts[1:]
    if kind not in _ARITY:
        kind, args = "const", parts
    if len(args) != _ARITY[kind]:
        raise _bad(text, durations)
    # lognormal's SIGMA is a shape parameter and never takes a unit.
    unitless = {1} if kind == "lognormal" else set()
    values = [_number(arg, text, durations=durations and i not in unitless) for i, arg in enumerate(args)]
    dist = Distribution(kind, *values)  # type: ignore[arg-type]
    if kind == "uniform" and dist.a > dist.b:
        raise _bad(text, durations, "uniform needs A <= B")
    if kind == "lognormal" and dist.a <= 0:
        raise _bad(text, durations, "lognormal needs MEDIAN > 0")
    return dist


def _number(arg: str, text: str, *, durations: bool) -> float:
    match = _NUMBER.match(arg)
    if match is None or (match.group(2) and not durations):
        raise _bad(text, durations)
    value = float(match.group(1))
    if not math.isfinite(value):
        raise _bad(text, durations)
    if durations:
        value *= _UNITS[match.group(2) or "ms"]
    return value


def _bad(text: str, durations: bool, why: str = "") -> ValueError:
    units = "; durations take ms, s or us (a bare number is ms)" if durations else "; counts take no unit"
    reason = f" ({why})" if why else ""
    return ValueError(f"bad distribution {text!r}{reason}: use {FORMS}{units}")
