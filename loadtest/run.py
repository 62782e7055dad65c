"""One test run's identity and bookkeeping, held by the process that writes its outputs."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime


def new_run_id() -> str:
    """`20261130-214022-3fa1`: sortable by start, unique across runs started in the same second."""
    return datetime.now().strftime("%Y%m%d-%H%M%S-") + f"{random.getrandbits(16):04x}"


@dataclass
class Run:
    """What a run is, beside what it measured (that is in `Metrics` and `HealthMonitor`)."""

    id: str = field(default_factory=new_run_id)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_monotonic: float = field(default_factory=time.monotonic)
    peak_users: int = 0
    # The threshold whose failure stopped the run early (--threshold-abort).
    aborted_by: str | None = None
    # The most users active in each time-series interval.
    users_by_interval: dict[int, int] = field(default_factory=dict)
    # Master only: workers that took part, and those whose final data arrived.
    workers: set[str] = field(default_factory=set)
    workers_final: set[str] = field(default_factory=set)

    @property
    def workers_without_final(self) -> set[str]:
        return self.workers - self.workers_final

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_monotonic
