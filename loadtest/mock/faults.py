"""Fault injection for the mock: which faults, at what rates, drawn per request from a seeded RNG.

    --fault http_429=10% --fault cut=2%             one KIND=RATE per option, repeatable
    --faults "http_500=5%,stall=1%"                 several at once, comma-separated

A RATE is a percentage (`5%`) or a fraction (`0.05`). At most one fault is drawn per request, so the
rates may add up to 100% at most. Most kinds are named for the error kind the client reports.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

# Answered with this status and a JSON `{"error": ...}` body instead of a stream.
HTTP_FAULTS: Final[Mapping[str, int]] = {
    "http_400": 400,
    "http_401": 401,
    "http_429": 429,
    "http_500": 500,
    "http_503": 503,
}
# Kind -> what the mock does, for `--help` and error messages.
FAULT_KINDS: Final[Mapping[str, str]] = {
    **{kind: f"answer {status} with a JSON error body" for kind, status in HTTP_FAULTS.items()},
    "reset": "reset the connection (TCP RST) before sending headers",
    "cut": "stream a few chunks, then close the connection in the middle of an event",
    "stall": "after the first content chunk, send nothing for --stall-seconds",
    "content_type": "answer 200 with Content-Type: text/html",
    "error_body": "answer 200 with Content-Type: application/json and an {error} body",
    "error_event": 'stream a few chunks, then data: {"error": {...}}',
    "bad_json": "stream a few chunks, then an event whose data is not JSON",
    "huge_event": "send one event with 2 MiB of content",
    "idle_close": "complete the response, then close the connection (Connection: close)",
}
# Accepted on the command line for the kind it names: the client reports a `cut` as `disconnect`.
ALIASES: Final[Mapping[str, str]] = {"disconnect": "cut"}
# Faults that answer before any stream starts: the request leaves no turn in the mock's state.
NO_STREAM_FAULTS: Final = frozenset({*HTTP_FAULTS, "reset", "content_type", "error_body"})

_RATE = re.compile(r"^([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)(%?)$")


@dataclass(frozen=True)
class FaultPlan:
    """The fault rates of one mock; `draw` picks at most one fault for a request."""

    rates: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, rate in self.rates.items():
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}: use one of {', '.join(FAULT_KINDS)}")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault {kind}: rate {rate} is not between 0 and 100%")
        total = math.fsum(self.rates.values())
        if total > 1.0 + 1e-9:
            raise ValueError(
                f"fault rates add up to {total:.4g} (more than 100%): at most one fault is drawn per request"
            )

    def __bool__(self) -> bool:
        return any(rate > 0 for rate in self.rates.values())

    def draw(self, rng: random.Random) -> str | None:
        """One fault kind, or None; kind K comes with probability rates[K]."""
        if not self:
            return None
        point = rng.random()
        for kind, rate in self.rates.items():
            if point < rate:
                return kind
            point -= rate
        return None


def parse_rate(text: str) -> float:
    """`5%` or `0.05` -> 0.05; ValueError for anything outside 0..100%."""
    match = _RATE.match(text.strip())
    if match is None:
        raise ValueError(f"bad rate {text!r}: use a percentage such as 5% or a fraction such as 0.05")
    value = float(match.group(1)) / (100.0 if match.group(2) else 1.0)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"bad rate {text!r}: it must be between 0 and 100%")
    return value


def parse_faults(specs: Iterable[str]) -> FaultPlan:
    """Build a plan from `KIND=RATE` items, each item possibly a comma-separated list of them."""
    rates: dict[str, float] = {}
    for spec in specs:
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            kind, sep, rate_text = item.partition("=")
            kind = ALIASES.get(kind.strip(), kind.strip())
            if not sep:
                raise ValueError(f"bad fault {item!r}: use KIND=RATE, such as http_429=10%")
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}: use one of {', '.join(FAULT_KINDS)}")
            if kind in rates:
                raise ValueError(f"fault {kind} is given twice")
            try:
                rates[kind] = parse_rate(rate_text)
            except ValueError as exc:
                raise ValueError(f"fault {kind}: {exc}") from None
    return FaultPlan(rates)
