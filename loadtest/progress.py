"""The progress line of a headless run: one line, rewritten in place on a terminal, printed every
10 s otherwise (CI logs), on the process that writes the outputs.

    loadtest  0:12 / 0:30  users 20  turns 143 (2 failed)  p95 ttft 251.3 ms  turn 1.21 s  [client busy: cpu]

`snapshot` reads what that process holds (the merged `Metrics` and `HealthMonitor`) into a
`Progress`; `format_line` writes it to fit a width; `ProgressLine` shows it while the run goes.
`--only-summary` silences Locust's tables, not this line; `--no-progress` does.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

import gevent

from loadtest import health
from loadtest.catalog import GAUGES, LOOP_LAG, format_number
from loadtest.health import HealthMonitor, ProcessHealth
from loadtest.metrics import INTERVAL_S, Metrics, at, interval_of
from loadtest.recorder import TurnRecorder
from loadtest.run import Run
from loadtest.watchers import Watcher

logger = logging.getLogger("loadtest")

# On a master, workers report every 3 s: an interval is taken as complete once it ended this long ago.
COMPLETE_AFTER_S = 4.0
PERCENTILE = 95.0
TTY_EVERY_S = 1.0
LOG_EVERY_S = 10.0
# When the terminal's width cannot be read.
DEFAULT_COLUMNS = 80
MISSING = "–"
CLEAR_LINE = "\x1b[K"


@dataclass(frozen=True, slots=True)
class Progress:
    """A run in progress, as the progress line shows it."""

    elapsed_s: float
    planned_s: float | None
    users: int
    turns: int
    failed: int
    # p95 of the last complete time-series interval; None when it holds no turn.
    ttft_p95_ms: float | None = None
    turn_p95_ms: float | None = None
    # Gauges of the client's own health over their limits (`cpu`, `loop lag`): the client is the bottleneck.
    busy: tuple[str, ...] = ()


def last_complete_interval(now: float) -> int:
    """Start of the newest time-series interval that ended at least `COMPLETE_AFTER_S` ago: the newest
    one may still miss the data workers have not reported yet, and would read low and jumpy."""
    return interval_of(now - INTERVAL_S - COMPLETE_AFTER_S)


@dataclass
class PercentileCache:
    """The last p95 read per metric, kept while its histogram does not change: hdrh walks the counts
    in Python (2-3 ms), which done every second would stall the event loop of a local run."""

    found: dict[str, tuple[int, int, int, float | None]] = field(default_factory=dict)

    def p95_ms(self, metrics: Metrics, name: str, interval: int) -> float | None:
        # .get, not metrics.hist(): an empty histogram made here would add an interval to the timeline.
        hist = metrics.histograms.get(at(name, interval))
        if hist is None or hist.count == 0:
            return None
        key = (id(metrics), interval, hist.count)
        cached = self.found.get(name)
        if cached is not None and cached[:3] == key:
            return cached[3]
        value = hist.value_at_percentile_us(PERCENTILE) / 1000.0
        self.found[name] = (*key, value)
        return value


def busy_gauges(monitor: HealthMonitor) -> tuple[str, ...]:
    """The gauges whose limits the client breaks, over the run or in any one process: the judgement of
    `HealthMonitor.summary()`, read from its counts only, without the percentiles that `summary()`
    reads from every histogram."""
    processes = monitor.all_processes()
    run = ProcessHealth()
    for process in processes.values():
        run.merge(process)
    if run.tallies[LOOP_LAG.key].n < health.MIN_JUDGED_LAG_SAMPLES:
        return ()
    over = set(run.over())
    if len(processes) > 1:
        for process in processes.values():
            over.update(process.over())
    return tuple(g.key.replace("_", " ") for g in GAUGES if g in over)


def snapshot(
    metrics: Metrics,
    monitor: HealthMonitor,
    *,
    elapsed_s: float,
    planned_s: float | None,
    users: int,
    now: float | None = None,
    cache: PercentileCache | None = None,
) -> Progress:
    """The run so far; latencies are those of the last complete interval (`last_complete_interval`)."""
    interval = last_complete_interval(time.time() if now is None else now)
    cache = cache or PercentileCache()
    return Progress(
        elapsed_s=elapsed_s,
        planned_s=planned_s,
        users=users,
        turns=int(metrics.counts.get("turns", 0)),
        failed=int(metrics.counts.get("turns_failed", 0)),
        ttft_p95_ms=cache.p95_ms(metrics, "ttft", interval),
        turn_p95_ms=cache.p95_ms(metrics, "turn", interval),
        busy=busy_gauges(monitor),
    )


def snapshots(
    recorder: TurnRecorder, monitor: HealthMonitor, run: Run, users: Callable[[], int]
) -> Callable[[], Progress]:
    """What `ProgressLine` calls: a snapshot of `run` now, with one cache for the whole run. The
    recorder, not its metrics, is held: a reset replaces its `Metrics`."""
    cache = PercentileCache()

    def take() -> Progress:
        return snapshot(
            recorder.metrics,
            monitor,
            elapsed_s=run.elapsed_s(),
            planned_s=run.planned_s,
            users=users(),
            cache=cache,
        )

    return take


def format_clock(seconds: float) -> str:
    """72 -> "1:12", 3725 -> "1:02:05"."""
    total = max(int(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_latency(value_ms: float | None) -> str:
    """251.3 -> "251.3 ms", 1210 -> "1.21 s", None -> "–"."""
    if value_ms is None:
        return MISSING
    if value_ms >= 1000:
        return f"{format_number(value_ms / 1000)} s"
    return f"{format_number(value_ms)} ms"


def _parts(p: Progress) -> list[tuple[int, str]]:
    """The parts of the line in the order shown, each with its rank: the highest is dropped first
    when the line is too wide; the time (rank 0) never is."""
    clock = format_clock(p.elapsed_s)
    if p.planned_s is not None:
        clock += f" / {format_clock(p.planned_s)}"
    parts = [
        (6, "loadtest"),
        (0, clock),
        (4, f"users {p.users:,}"),
        (1, f"turns {p.turns:,} ({p.failed:,} failed)"),
    ]
    if p.ttft_p95_ms is not None or p.turn_p95_ms is not None:
        parts += [
            (3, f"p95 ttft {format_latency(p.ttft_p95_ms)}"),
            (5, f"turn {format_latency(p.turn_p95_ms)}"),
        ]
    if p.busy:
        # The figures of a client that is its own bottleneck measure the client: worth keeping.
        parts.append((2, f"[client busy: {', '.join(p.busy)}]"))
    return parts


def format_line(p: Progress, width: int | None = None) -> str:
    """One line; with `width`, at most that many characters, the least useful parts left out first."""
    parts = _parts(p)
    line = "  ".join(text for _, text in parts)
    if width is None:
        return line
    while len(line) > width and len(parts) > 1:
        parts.remove(max(parts, key=lambda part: part[0]))
        line = "  ".join(text for _, text in parts)
    return line[: max(width, 0)]


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return DEFAULT_COLUMNS


class ProgressLine(Watcher):
    """Shows the progress line while a run goes: on a terminal rewritten in place every `interval_s`
    (1 s), and cleared at the stop so the end-of-run output starts on a clean line; elsewhere printed
    whole every `interval_s` (10 s). Nothing it does raises into the run: a failure is logged once."""

    def __init__(self, snapshot: Callable[[], Progress], stream: TextIO, *, interval_s: float | None = None):
        super().__init__()
        self.snapshot = snapshot
        self.stream = stream
        self.tty = _isatty(stream)
        self.interval_s = interval_s if interval_s is not None else (TTY_EVERY_S if self.tty else LOG_EVERY_S)
        # A line is on the terminal with the cursor at its end.
        self.shown = False
        self.failed = False

    def tick(self) -> None:
        """Show the line once."""
        try:
            # One column short of the terminal: a line filling the last column wraps on some terminals.
            line = format_line(self.snapshot(), _columns(self.stream) - 1 if self.tty else None)
            if self.tty:
                self.stream.write(f"\r{line}{CLEAR_LINE}")
                self.shown = True
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
        except Exception:
            self._failed()

    def stop(self) -> None:
        super().stop()
        self._clear()

    def _clear(self) -> None:
        if not self.shown:
            return
        self.shown = False
        try:
            self.stream.write(f"\r{CLEAR_LINE}")
            self.stream.flush()
        except Exception:
            self._failed()

    def _failed(self) -> None:
        if self.failed:
            return
        self.failed = True
        self._clear()
        logger.warning("loadtest: the progress line failed (--no-progress turns it off)", exc_info=True)

    def _loop(self) -> None:
        while True:
            gevent.sleep(self.interval_s)
            self.tick()


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (OSError, ValueError, AttributeError):
        return False
