"""Fault injection for the mock: which faults, at what rates, drawn per request from a seeded RNG.

    --fault http_429=10% --fault truncate=2%        one KIND=RATE per option, repeatable
    --faults "http_500=5%,stall=1%"                 several at once, comma-separated
    --fault keepalive_timeout=2s                    on every connection: KIND=DURATION

A RATE is a percentage (`5%`) or a fraction (`0.05`), as `loadtest.shares` reads every share. At most
one fault is drawn per request, so the rates may add up to 100% at most. A fault of `Stage.IDLE` is
not drawn: it takes a duration (`2s`, `500ms`) and acts on every connection between its requests.

`FAULTS` is the one list of faults: what each does, when in the response it happens, and the kind of
failed turn the client reports for it (a `catalog.Failure`, or `http_failure(status)`). Adding a fault
is one entry here plus what the server does for it (`loadtest/mock/answers.py` for a fault that
replaces the response, `loadtest/mock/stream.py` for one inside the stream or between requests, with
`loadtest/mock/connection.py` for what happens below HTTP).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from loadtest.catalog import Failure, http_failure
from loadtest.shares import ShareError, parse_share


class Stage(Enum):
    """Where in the response a fault happens."""

    ANSWER = "answer"  # replaces the whole response: no stream, so no turn in the mock's state
    MID_STREAM = "mid_stream"  # a few content chunks, then an event of the fault's own ends the stream
    EVENT = "event"  # one event of the fault's own in place of every content chunk
    STREAM = "stream"  # changes how a complete stream is sent
    IDLE = "idle"  # acts on every connection between its requests; given a duration, not a rate


@dataclass(frozen=True, slots=True)
class Fault:
    name: str
    does: str  # for --help and error messages
    stage: Stage
    # The kind of failed turn the client reports for it; None when no turn fails.
    fails_as: str | None
    status: int | None = None  # of an HTTP fault


_HTTP_STATUSES = (400, 401, 429, 500, 503)

FAULTS: Final[tuple[Fault, ...]] = (
    *(
        Fault(
            http_failure(status),
            f"answer {status} with a JSON error body",
            Stage.ANSWER,
            http_failure(status),
            status,
        )
        for status in _HTTP_STATUSES
    ),
    Fault("reset", "reset the connection (TCP RST) before sending headers", Stage.ANSWER, Failure.DISCONNECT),
    Fault(
        "truncate",
        "stream a few chunks, then close the connection in the middle of an event",
        Stage.MID_STREAM,
        Failure.DISCONNECT,
    ),
    # A turn fails only when the stall outlasts the client's idle timeout.
    Fault(
        "stall",
        "after the first content chunk, send nothing for --stall-seconds",
        Stage.STREAM,
        Failure.IDLE_TIMEOUT,
    ),
    Fault("content_type", "answer 200 with Content-Type: text/html", Stage.ANSWER, Failure.CONTENT_TYPE),
    Fault(
        "error_body",
        "answer 200 with Content-Type: application/json and an {error} body",
        Stage.ANSWER,
        Failure.ERROR_BODY,
    ),
    Fault(
        "error_event",
        'stream a few chunks, then data: {"error": {...}}',
        Stage.MID_STREAM,
        Failure.STREAM_ERROR,
    ),
    Fault(
        "bad_json",
        "stream a few chunks, then an event whose data is not JSON",
        Stage.MID_STREAM,
        Failure.BAD_JSON,
    ),
    Fault("huge_event", "send one event with 2 MiB of content", Stage.EVENT, Failure.EVENT_TOO_LARGE),
    # The client reconnects for its next turn: nothing fails.
    Fault(
        "idle_close",
        "complete the response, then close the connection (Connection: close), so the next request "
        "opens a new one",
        Stage.STREAM,
        None,
    ),
    # A server's or load balancer's idle timeout, as most have one (60-75 s): the client must notice the
    # close before it reuses the connection, so nothing fails.
    Fault(
        "keepalive_timeout",
        "close a keep-alive connection left idle for the given time after its response, with no "
        "Connection: close (KIND=DURATION, such as keepalive_timeout=2s)",
        Stage.IDLE,
        None,
    ),
)
BY_NAME: Final[Mapping[str, Fault]] = {fault.name: fault for fault in FAULTS}
# Kind -> what the mock does, for `--help` and error messages.
FAULT_KINDS: Final[Mapping[str, str]] = {fault.name: fault.does for fault in FAULTS}
# Answered with this status and a JSON `{"error": ...}` body instead of a stream.
HTTP_FAULTS: Final[Mapping[str, int]] = {f.name: f.status for f in FAULTS if f.status is not None}
# Faults drawn per request at a rate; the others take a duration.
RATE_FAULTS: Final = frozenset(f.name for f in FAULTS if f.stage is not Stage.IDLE)
# Faults that answer before any stream starts: the request leaves no turn in the mock's state.
NO_STREAM_FAULTS: Final = frozenset(f.name for f in FAULTS if f.stage is Stage.ANSWER)
MID_STREAM_FAULTS: Final = frozenset(f.name for f in FAULTS if f.stage is Stage.MID_STREAM)
# Faults that end the stream with an event of their own.
EVENT_FAULTS: Final = frozenset(f.name for f in FAULTS if f.stage in (Stage.MID_STREAM, Stage.EVENT))
# Other names accepted on the command line: `cut`, the fault's first name (the client's `cut` is a
# turn stopped by the end of the run), and `disconnect`, what the client reports for it.
ALIASES: Final[Mapping[str, str]] = {"cut": "truncate", "disconnect": "truncate"}


@dataclass(frozen=True)
class FaultPlan:
    """The faults of one mock: the rates `draw` picks at most one fault from for a request, and
    `keepalive_timeout_s`, after which an idle connection is closed without notice (None: never)."""

    rates: Mapping[str, float] = field(default_factory=dict)
    keepalive_timeout_s: float | None = None

    def __post_init__(self) -> None:
        for kind, rate in self.rates.items():
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}: use one of {', '.join(FAULT_KINDS)}")
            if kind not in RATE_FAULTS:
                raise ValueError(f"fault {kind} takes a duration, not a rate")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault {kind}: rate {rate} is not between 0 and 100%")
        total = math.fsum(self.rates.values())
        if total > 1.0 + 1e-9:
            raise ValueError(
                f"fault rates add up to {total:.4g} (more than 100%): at most one fault is drawn per request"
            )
        if self.keepalive_timeout_s is not None and not self.keepalive_timeout_s > 0:
            raise ValueError(f"fault keepalive_timeout: {self.keepalive_timeout_s} s is not a positive time")

    def __bool__(self) -> bool:
        return self._draws() or self.keepalive_timeout_s is not None

    def _draws(self) -> bool:
        return any(rate > 0 for rate in self.rates.values())

    def draw(self, rng: random.Random) -> str | None:
        """One fault kind, or None; kind K comes with probability rates[K]."""
        if not self._draws():
            return None
        point = rng.random()
        for kind, rate in self.rates.items():
            if point < rate:
                return kind
            point -= rate
        return None


def parse_faults(specs: Iterable[str]) -> FaultPlan:
    """Build a plan from `KIND=RATE` (or `KIND=DURATION`) items, each item possibly a comma-separated
    list of them."""
    rates: dict[str, float] = {}
    durations: dict[str, float] = {}
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
            if kind in rates or kind in durations:
                raise ValueError(f"fault {kind} is given twice")
            if BY_NAME[kind].stage is Stage.IDLE:
                durations[kind] = _parse_duration(kind, rate_text.strip())
                continue
            try:
                rates[kind] = parse_share(rate_text)
            except ShareError as exc:
                raise ValueError(f"fault {kind}: bad rate {exc}") from None
    return FaultPlan(rates, keepalive_timeout_s=durations.get("keepalive_timeout"))


_DURATION = re.compile(r"^([0-9]*\.?[0-9]+)(ms|s)$")


def _parse_duration(kind: str, text: str) -> float:
    """Seconds from `2s` or `500ms`; a unit is required, since a bare number reads as a rate elsewhere."""
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"fault {kind}: bad duration {text!r}: write a positive time such as 2s or 500ms")
    return float(match.group(1)) * (1e-3 if match.group(2) == "ms" else 1.0)
