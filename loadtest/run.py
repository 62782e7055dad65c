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
    # How long the run was meant to last (-t, or the --stages total); None: until stopped.
    planned_s: float | None = None
    peak_users: int = 0
    # What ended the run (a verdict.StoppedBy), set by whatever stopped it; and the signal's name.
    stopped_by: str | None = None
    signal: str | None = None
    # The threshold whose failure stopped the run early (--threshold-abort).
    aborted_by: str | None = None
    # Why fail-fast stopped the run: the one line naming the refusal and its fix.
    refused: str | None = None
    # One line each, found at the start (options with no effect); the end adds its own.
    warnings: list[str] = field(default_factory=list)
    # Locust's RESET (or --reset-stats): the figures cover the time since the last one.
    reset_at: datetime | None = None
    reset_monotonic: float | None = None
    # The most users active in each time-series interval.
    users_by_interval: dict[int, int] = field(default_factory=dict)
    # Master only: workers that took part, and those whose final data arrived.
    workers: set[str] = field(default_factory=set)
    workers_final: set[str] = field(default_factory=set)
    # Workers that went missing (no heartbeat, connection gone) before their final data: when, in
    # seconds after the start. What they reported until then is kept.
    workers_lost: dict[str, float] = field(default_factory=dict)

    @property
    def workers_without_final(self) -> set[str]:
        """Workers that neither sent their final data nor were seen lost (the wait for it timed out)."""
        return self.workers - self.workers_final - self.workers_lost.keys()

    def worker_lost(self, worker: str) -> None:
        if worker not in self.workers_final and worker not in self.workers_lost:
            self.workers_lost[worker] = round(self.elapsed_s(), 1)

    def stop(self, by: str, *, signal: str | None = None) -> None:
        """Record what ended the run; the first cause wins (a signal during a threshold abort's stop
        does not rename it)."""
        if self.stopped_by is None:
            self.stopped_by = by
            self.signal = signal

    def reset(self) -> None:
        self.reset_at = datetime.now(UTC)
        self.reset_monotonic = time.monotonic()

    def measured_s(self) -> float:
        """The seconds the figures cover: since the start, or since the last reset."""
        return time.monotonic() - (self.reset_monotonic or self.started_monotonic)

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_monotonic
