"""Client health: is the load generator itself the bottleneck?

A load tester's figures are only as good as its own overhead. Each load-generating process runs one
`HealthMonitor`, which measures three things:

- event-loop lag: a greenlet sleeps `LAG_INTERVAL_S` and records how late it woke up. Every greenlet
  that was due in the meantime (a chunk arriving, a think time ending) was late by as much, so the
  lag is added to every timestamp the client takes. A stall longer than the interval is back-filled
  with the samples the stall swallowed (lag − interval, lag − 2·interval, …), so the percentiles
  describe time, not wake-ups.
- CPU: this process's CPU time per second of wall time, in per-mille of one core.
- connection-pool waits: how long a request waited for a connection from httpx's pool
  (`phases.PhaseTrace`), time the server never saw. Under gevent this includes one trip round the
  event loop for a kept-alive connection (see `POOL_WAIT_P99_LIMIT_MS`).

Histograms merge exactly across Locust workers like `Metrics`; beside them each process keeps, per
gauge, its number of samples, how many were over the limit and its largest value, so the master can
name the worker that was overloaded without keeping a histogram per worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gevent

from loadtest.catalog import CPU, GAUGES, LOOP_LAG, POOL_WAIT, Gauge
from loadtest.metrics import Histogram
from loadtest.phases import PhaseTrace

LAG_INTERVAL_S = 0.05
CPU_INTERVAL_S = 1.0

# Below 10 s of loop-lag samples (at 50 ms) a single start-up hiccup (spawning users, the first TLS
# handshakes) is the whole p99: such a run is reported but not judged.
MIN_JUDGED_LAG_SAMPLES = 200


_BY_KEY = {g.key: g for g in GAUGES}
# Reasons name at most this many overloaded processes.
MAX_PROCESS_REASONS = 5


@dataclass
class Tally:
    """One gauge in one process: samples, samples over the limit, the largest value."""

    n: int = 0
    over: int = 0
    max: int = 0

    def merge(self, other: Tally) -> None:
        self.n += other.n
        self.over += other.over
        self.max = max(self.max, other.max)

    def share_over(self) -> float:
        return self.over / self.n if self.n else 0.0

    def to_data(self) -> list[int]:
        return [self.n, self.over, self.max]

    @classmethod
    def from_data(cls, data: list[int]) -> Tally:
        n, over, top = data
        return cls(int(n), int(over), int(top))


@dataclass
class ProcessHealth:
    """The tallies of one load-generating process."""

    tallies: dict[str, Tally] = field(default_factory=lambda: {g.key: Tally() for g in GAUGES})

    @property
    def samples(self) -> int:
        return sum(t.n for t in self.tallies.values())

    def record(self, gauge: Gauge, value: int) -> None:
        tally = self.tallies[gauge.key]
        tally.n += 1
        if value > gauge.limit_recorded:
            tally.over += 1
        if value > tally.max:
            tally.max = value

    def merge(self, other: ProcessHealth) -> None:
        for key, tally in other.tallies.items():
            self.tallies[key].merge(tally)

    def score(self) -> float:
        """The worst count of samples over a limit relative to the count allowed: above 1 means this
        process (or run) breaks a limit."""
        return max(_ratio(t.over, _BY_KEY[key].allowed_over(t.n)) for key, t in self.tallies.items())

    def over(self) -> list[Gauge]:
        """The gauges whose limits this process (or run) breaks."""
        return [g for g in GAUGES if self.tallies[g.key].over > g.allowed_over(self.tallies[g.key].n)]

    def to_data(self) -> dict[str, list[int]]:
        return {key: t.to_data() for key, t in self.tallies.items() if t.n}

    @classmethod
    def from_data(cls, data: Mapping[str, list[int]]) -> ProcessHealth:
        health = cls()
        for key, values in data.items():
            if key in health.tallies:
                health.tallies[key] = Tally.from_data(values)
        return health


def _ratio(over: int, allowed: int) -> float:
    if allowed:
        return over / allowed
    return float("inf") if over else 0.0


class HealthMonitor:
    """Client health of one load-generating process, or of a whole run once merged on the master."""

    def __init__(
        self,
        *,
        name: str = "local",
        lag_interval_s: float = LAG_INTERVAL_S,
        cpu_interval_s: float = CPU_INTERVAL_S,
    ) -> None:
        self.name = name
        self.lag_interval_s = lag_interval_s
        self.cpu_interval_s = cpu_interval_s
        self.histograms: dict[str, Histogram] = {}
        self.own = ProcessHealth()
        self.processes: dict[str, ProcessHealth] = {}
        self._greenlet: gevent.Greenlet | None = None
        # perf_counter_ns when the sleeping greenlet should wake; where the current CPU interval began
        self._due_ns: int | None = None
        self._wall_mark = 0
        self._cpu_mark = 0
        self.reset()

    def reset(self) -> None:
        self.histograms = {g.key: Histogram() for g in GAUGES}
        self.own = ProcessHealth()
        self.processes = {}

    # -- measuring -----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._greenlet is not None

    def start(self) -> None:
        """Start afresh, and sample event-loop lag and CPU in a greenlet until `stop()`."""
        self.stop()
        self.reset()
        self._due_ns = None
        self._wall_mark = time.perf_counter_ns()
        self._cpu_mark = time.process_time_ns()
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        """Stop sampling, after recording what the greenlet had no chance to: a stall still going on,
        and the CPU of the last part of an interval (when it is at least half of one)."""
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is None:
            return
        if greenlet is not gevent.getcurrent():
            greenlet.kill(block=False)
        now = time.perf_counter_ns()
        if self._due_ns is not None and now > self._due_ns:
            self.record_lag(now - self._due_ns)
        self._due_ns = None
        if now - self._wall_mark >= self.cpu_interval_s * 1e9 / 2:
            self._sample_cpu(now)

    def record_pool_wait(self, wait_ns: int) -> None:
        """Record how long one request waited for a connection from its pool."""
        self._record(POOL_WAIT, max(wait_ns, 0) // 1000)

    def record_lag(self, lag_ns: int) -> None:
        """Record one wake-up `lag_ns` late, back-filling the sleeps a longer stall swallowed."""
        interval_us = max(int(self.lag_interval_s * 1_000_000), 1)
        lag_us = max(lag_ns, 0) // 1000
        self._record(LOOP_LAG, lag_us)
        lag_us -= interval_us
        while lag_us > 0:
            self._record(LOOP_LAG, lag_us)
            lag_us -= interval_us

    def record_cpu(self, cpu_ns: int, wall_ns: int) -> None:
        """Record `cpu_ns` of this process's CPU time spent in `wall_ns` of wall time."""
        if wall_ns > 0:
            self._record(CPU, round(cpu_ns * 1000 / wall_ns))

    def _record(self, gauge: Gauge, value: int) -> None:
        self.histograms[gauge.key].record_us(value)
        self.own.record(gauge, value)

    def _sample_cpu(self, now_ns: int) -> None:
        cpu = time.process_time_ns()
        self.record_cpu(cpu - self._cpu_mark, now_ns - self._wall_mark)
        self._wall_mark, self._cpu_mark = now_ns, cpu

    def _run(self) -> None:
        me = gevent.getcurrent()
        loop = gevent.get_hub().loop
        interval_ns = int(self.lag_interval_s * 1e9)
        cpu_every_ns = int(self.cpu_interval_s * 1e9)
        while True:
            # The loop's clock goes stale while greenlets run; a timer started on a stale clock
            # fires early and would hide lag.
            loop.update_now()
            self._due_ns = time.perf_counter_ns() + interval_ns
            gevent.sleep(self.lag_interval_s)
            if self._greenlet is not me:
                return  # stopped while this wake-up was pending: stop() has recorded it
            now = time.perf_counter_ns()
            self.record_lag(now - self._due_ns)
            if now - self._wall_mark >= cpu_every_ns:
                self._sample_cpu(now)

    # -- shipping ------------------------------------------------------------------------------------

    def to_data(self) -> dict[str, Any]:
        """Plain, msgpack-friendly data: encoded histograms, this process's tallies, merged ones."""
        return {
            "histograms": {key: h.encode() for key, h in self.histograms.items() if h.count},
            "process": self.own.to_data(),
            "processes": {source: p.to_data() for source, p in self.processes.items()},
        }

    def drain(self) -> dict[str, Any]:
        """Return everything recorded so far as plain data and start afresh; sampling goes on."""
        data = self.to_data()
        self.reset()
        return data

    def merge_data(self, data: Mapping[str, Any], *, source: str) -> None:
        """Add what another process drained; its own tallies are kept under `source`."""
        for key, encoded in data.get("histograms", {}).items():
            if key in self.histograms:
                self.histograms[key].merge_encoded(encoded)
        self._merge_process(source, ProcessHealth.from_data(data.get("process", {})))
        for name, tallies in data.get("processes", {}).items():
            self._merge_process(str(name), ProcessHealth.from_data(tallies))

    def _merge_process(self, source: str, health: ProcessHealth) -> None:
        if not health.samples:
            return
        found = self.processes.get(source)
        if found is None:
            self.processes[source] = health
        else:
            found.merge(health)

    # -- summary -------------------------------------------------------------------------------------

    def all_processes(self) -> dict[str, ProcessHealth]:
        """Every process measured: those merged in, and this one under its name when it sampled."""
        out = dict(self.processes)
        if self.own.samples:
            mine = ProcessHealth()
            mine.merge(self.own)
            if self.name in out:
                mine.merge(out[self.name])
            out[self.name] = mine
        return out

    def summary(self) -> dict[str, Any]:
        """`client_health` of summary.json: percentiles, the worst process, and whether the client
        was the bottleneck, with the reasons."""
        out: dict[str, Any] = {g.summary_key: _stats(self.histograms[g.key], g) for g in GAUGES}
        out["limits"] = {f"{g.key}_p{g.percentile:g}_{g.suffix}": g.limit for g in GAUGES}
        processes = self.all_processes()
        run = ProcessHealth()
        for health in processes.values():
            run.merge(health)
        # Judged on exact counts over the limit rather than the percentile read from the histogram:
        # that is its bucket's highest value, which reads a sample right at the limit as just over.
        judged = run.tallies[LOOP_LAG.key].n >= MIN_JUDGED_LAG_SAMPLES
        reasons = [
            f"{g.label} p{g.percentile:g} {_num(out[g.summary_key][f'p{g.percentile:g}'])}{g.unit}"
            f" > {_num(g.limit)}{g.unit}"
            for g in (run.over() if judged else [])
        ]
        ranked = sorted(processes.items(), key=lambda kv: (kv[1].score(), kv[1].tallies[LOOP_LAG.key].max))
        overloaded = [(source, p) for source, p in reversed(ranked) if p.score() > 1.0]
        # One overloaded worker among many hardly moves the run's percentiles, yet skews its share.
        if len(processes) > 1 and judged:
            for source, health in overloaded[:MAX_PROCESS_REASONS]:
                reasons.append(f"process {source}: {_process_reason(health)}")
            if len(overloaded) > MAX_PROCESS_REASONS:
                reasons.append(f"and {len(overloaded) - MAX_PROCESS_REASONS} more overloaded processes")
        out["processes"] = len(processes)
        out["worst_process"] = _process_json(*ranked[-1]) if ranked else None
        out["overloaded_processes"] = len(overloaded)
        out["judged"] = judged
        out["bottleneck"] = bool(reasons)
        out["reasons"] = reasons
        return out


def _stats(hist: Histogram, gauge: Gauge) -> dict[str, Any]:
    names = [f"p{pct:g}" for pct in gauge.shown]
    if hist.count == 0:
        return {"count": 0, **dict.fromkeys(names), "max": None}
    values = hist.values_at_percentiles_us([*gauge.shown, 100.0])
    out: dict[str, Any] = {"count": hist.count}
    for name, pct in zip(names, gauge.shown, strict=True):
        out[name] = round(values[pct] / gauge.per_unit, 3)
    out["max"] = round(values[100.0] / gauge.per_unit, 3)
    return out


def _num(value: float) -> str:
    """38.4 -> "38", 2.54 -> "2.5", 5.0 -> "5"."""
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}".removesuffix(".0")


def _process_reason(health: ProcessHealth) -> str:
    return ", ".join(
        f"{g.label} over {_num(g.limit)}{g.unit} in {health.tallies[g.key].share_over():.0%} of samples"
        for g in health.over()
    )


def _process_json(source: str, health: ProcessHealth) -> dict[str, Any]:
    out: dict[str, Any] = {"source": source, "bottleneck": health.score() > 1.0}
    for g in GAUGES:
        tally = health.tallies[g.key]
        out[f"{g.key}_max_{g.suffix}"] = round(tally.max / g.per_unit, 3) if tally.n else None
        out[f"{g.key}_over_limit"] = round(tally.share_over(), 4)
    return out


def pool_wait_trace(record: Callable[[int], None]) -> Callable[[str, Any], None]:
    """An httpx `trace` extension for one request that records its connection-pool wait (ns).

    A `PhaseTrace` (loadtest/phases.py, where the wait is defined), which also reads the request's
    connection phases.
    """
    return PhaseTrace(record)
