"""Open-model arrivals: conversations start on a schedule, however slow the server is.

`--arrival-rate 5` starts 5 conversations a second (Poisson: exponential gaps), `constant:5` one
every 0.2 s. Each arrival waits in a queue for a free user, who holds it for the whole conversation;
an arrival that waits longer than `--max-queue-wait` is dropped, one that starts later than
`LATE_NS` after its time is late. Both are counted, and turn latency is also recorded from the
intended start (coordinated-omission corrected response time) beside the service time.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from loadtest.errors import ConfigError

# A start this much after its intended time is counted as late: the generator or the user pool lagged.
LATE_NS = 10_000_000

_RATE = re.compile(r"^\s*(?:(poisson|constant)\s*:\s*)?(\d+(?:\.\d+)?)\s*(?:/s)?\s*$")


@dataclass(frozen=True, slots=True)
class ArrivalRate:
    """Conversations per second, and how the gaps between them are drawn."""

    rate: float
    process: str = "poisson"

    @classmethod
    def parse(cls, text: str) -> ArrivalRate:
        match = _RATE.match(str(text))
        if not match or float(match.group(2)) <= 0:
            raise ConfigError(
                f"--arrival-rate {text!r} is not a rate: use conversations per second like 5, "
                "poisson:5 or constant:0.5"
            )
        return cls(float(match.group(2)), match.group(1) or "poisson")

    def share(self, processes: int) -> ArrivalRate:
        """This process's part of the rate when `processes` workers generate load."""
        return ArrivalRate(self.rate / max(processes, 1), self.process)


class Schedule:
    """Intended arrival times (perf_counter_ns clock), each computed from the previous one, so a
    late wake-up of the generator never shifts the schedule."""

    def __init__(self, rate: ArrivalRate, start_ns: int, rng: random.Random) -> None:
        self.rate = rate
        self.rng = rng
        self.next_ns = start_ns

    def __iter__(self) -> Schedule:
        return self

    def __next__(self) -> int:
        if self.rate.process == "constant":
            gap_s = 1.0 / self.rate.rate
        else:
            gap_s = self.rng.expovariate(self.rate.rate)
        self.next_ns += int(gap_s * 1e9)
        return self.next_ns
