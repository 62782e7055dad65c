"""The progress line of a headless run: its snapshot, its text, and how it is shown."""

from __future__ import annotations

import io
import logging
from types import SimpleNamespace

import pytest

from loadtest import health, recorder
from loadtest.catalog import Failure
from loadtest.client import TurnResult
from loadtest.health import HealthMonitor
from loadtest.metrics import INTERVAL_S
from loadtest.progress import (
    COMPLETE_AFTER_S,
    LOG_EVERY_S,
    TTY_EVERY_S,
    PercentileCache,
    Progress,
    ProgressLine,
    busy_gauges,
    format_line,
    snapshot,
    snapshots,
)
from loadtest.recorder import TurnRecorder
from loadtest.run import Run
from tests.harness import wait_for

MS = 1_000_000  # ns
# A time-series interval start (epoch seconds, a multiple of INTERVAL_S).
T0 = 1_800_000_000

FULL = Progress(
    elapsed_s=12.4,
    planned_s=30.0,
    users=20,
    turns=1143,
    failed=2,
    ttft_p95_ms=251.34,
    turn_p95_ms=1210.0,
    busy=("cpu",),
)


# -- the text ----------------------------------------------------------------------------------------


def test_the_full_line_names_every_figure_in_the_outputs_number_format() -> None:
    assert format_line(FULL) == (
        "loadtest  0:12 / 0:30  users 20  turns 1,143 (2 failed)  p95 ttft 251.3 ms  turn 1.21 s"
        "  [client busy: cpu]"
    )


def test_times_past_an_hour_and_runs_without_a_planned_end() -> None:
    line = format_line(Progress(elapsed_s=3725.9, planned_s=None, users=0, turns=0, failed=0))
    assert line == "loadtest  1:02:05  users 0  turns 0 (0 failed)"


def test_latencies_missing_from_the_interval_read_as_a_dash_or_are_left_out() -> None:
    one = Progress(elapsed_s=9, planned_s=30, users=5, turns=3, failed=3, turn_p95_ms=8.5)
    assert "p95 ttft –  turn 8.5 ms" in format_line(one)
    none = Progress(elapsed_s=2, planned_s=30, users=5, turns=0, failed=0)
    assert "p95" not in format_line(none) and "turn " not in format_line(none)
    assert "client busy" not in format_line(none)


def test_a_narrow_width_drops_the_least_useful_parts_first() -> None:
    full = format_line(FULL)
    lines = [format_line(FULL, width) for width in range(len(full), 0, -1)]
    assert all(len(line) <= width for line, width in zip(lines, range(len(full), 0, -1), strict=True))
    assert lines[0] == full
    # The name goes first, then the turn latency, the users, the TTFT, the hint; turns stay with the time.
    steps = [
        "0:12 / 0:30  users 20  turns 1,143 (2 failed)  p95 ttft 251.3 ms  turn 1.21 s  [client busy: cpu]",
        "0:12 / 0:30  users 20  turns 1,143 (2 failed)  p95 ttft 251.3 ms  [client busy: cpu]",
        "0:12 / 0:30  turns 1,143 (2 failed)  p95 ttft 251.3 ms  [client busy: cpu]",
        "0:12 / 0:30  turns 1,143 (2 failed)  [client busy: cpu]",
        "0:12 / 0:30  turns 1,143 (2 failed)",
        "0:12 / 0:30",
    ]
    for step in steps:
        assert format_line(FULL, len(step)) == step
        assert len(format_line(FULL, len(step) - 1)) < len(step)
    # Only a terminal narrower than the time cuts it.
    assert format_line(FULL, 5) == "0:12 "


# -- the snapshot ------------------------------------------------------------------------------------


def turn(ttft_ms: int, end_ms: int) -> TurnResult:
    return TurnResult(
        ok=True,
        kind=None,
        detail="",
        status=200,
        t_start_ns=0,
        t_end_ns=end_ms * MS,
        t_first_content_ns=ttft_ms * MS,
        t_last_event_ns=end_ms * MS,
        chunks=2,
    )


def failed() -> TurnResult:
    return TurnResult(ok=False, kind=Failure.ASSERTION, detail="no", status=200, t_start_ns=0, t_end_ns=MS)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> TurnRecorder:
    """Turns in two intervals: 100 in T0 (TTFT 101-200 ms, turn 1-1.1 s) with 4 failed, and 10 slow
    ones (TTFT 5 s) in the next interval."""
    clock = SimpleNamespace(time=lambda: T0 + 1.0)
    monkeypatch.setattr(recorder, "time", clock)
    rec = TurnRecorder()
    for i in range(100):
        rec.turn(turn(101 + i, 1000 + i), "booking", 1, f"c{i}", intended_ns=0)
    for i in range(4):
        rec.turn(failed(), "booking", 2, f"f{i}", intended_ns=0)
    clock.time = lambda: T0 + INTERVAL_S + 1.0
    for i in range(10):
        rec.turn(turn(5000, 6000), "booking", 1, f"s{i}", intended_ns=0)
    return rec


def test_a_snapshot_counts_every_turn_and_reads_the_newest_complete_interval(recorded: TurnRecorder) -> None:
    # The next interval (slow turns) ended too recently: on a master its data may be partial.
    now = T0 + 2 * INTERVAL_S + COMPLETE_AFTER_S - 0.5
    p = snapshot(recorded.metrics, HealthMonitor(), elapsed_s=14.0, planned_s=30.0, users=7, now=now)
    assert (p.elapsed_s, p.planned_s, p.users) == (14.0, 30.0, 7)
    assert (p.turns, p.failed) == (114, 4)
    assert p.ttft_p95_ms == pytest.approx(195, rel=2e-3)
    assert p.turn_p95_ms == pytest.approx(1094, rel=2e-3)
    assert p.busy == ()
    later = snapshot(recorded.metrics, HealthMonitor(), elapsed_s=15, planned_s=30, users=7, now=now + 1)
    assert later.ttft_p95_ms == pytest.approx(5000, rel=2e-3)


def test_an_interval_without_turns_reads_none_and_adds_nothing_to_the_time_series(
    recorded: TurnRecorder,
) -> None:
    before = sorted(recorded.metrics.histograms)
    p = snapshot(recorded.metrics, HealthMonitor(), elapsed_s=0, planned_s=None, users=0, now=T0 + 3600)
    assert p.ttft_p95_ms is None and p.turn_p95_ms is None
    assert sorted(recorded.metrics.histograms) == before


def test_the_cache_reads_a_percentile_again_only_when_its_histogram_changed(recorded: TurnRecorder) -> None:
    cache = PercentileCache()
    metrics = recorded.metrics
    interval_now = T0 + INTERVAL_S + COMPLETE_AFTER_S + 0.5
    assert cache.p95_ms(metrics, "ttft", T0) == pytest.approx(195, rel=2e-3)
    cache.found["ttft"] = (*cache.found["ttft"][:3], -1.0)  # marks a value read from the cache
    assert cache.p95_ms(metrics, "ttft", T0) == -1.0
    metrics.hist(f"ttft@{T0}").record_us(10_000_000)  # the 96th of 101 values is now 196 ms
    assert cache.p95_ms(metrics, "ttft", T0) == pytest.approx(196, rel=2e-3)
    p = snapshot(
        metrics, HealthMonitor(), elapsed_s=1, planned_s=None, users=1, now=interval_now, cache=cache
    )
    assert p.ttft_p95_ms == pytest.approx(196, rel=2e-3)


def test_snapshots_follow_the_recorder_through_a_reset(recorded: TurnRecorder) -> None:
    run = Run(planned_s=60.0)
    take = snapshots(recorded, HealthMonitor(), run, lambda: 3)
    first = take()
    assert (first.turns, first.users, first.planned_s) == (114, 3, 60.0)
    recorded.reset()
    assert take().turns == 0


def judged_monitor(name: str, cpu_per_mille: int) -> HealthMonitor:
    monitor = HealthMonitor(name=name)
    for _ in range(health.MIN_JUDGED_LAG_SAMPLES):
        monitor.record_lag(MS)
        monitor.record_cpu(cpu_per_mille, 1000)
    return monitor


def test_the_busy_hint_agrees_with_the_health_summary() -> None:
    busy = judged_monitor("local", 990)
    assert busy_gauges(busy) == ("cpu",) and busy.summary()["bottleneck"] is True
    calm = judged_monitor("local", 300)
    assert busy_gauges(calm) == () and calm.summary()["bottleneck"] is False
    # One overloaded worker among calm ones: the run's share hides it, the summary names it.
    master = HealthMonitor(name="master")
    for i in range(5):
        master.merge_data(judged_monitor(f"w{i}", 300).drain(), source=f"w{i}")
    master.merge_data(judged_monitor("w9", 990).drain(), source="w9")
    assert busy_gauges(master) == ("cpu",) and master.summary()["bottleneck"] is True


def test_a_run_too_short_to_judge_gives_no_hint() -> None:
    monitor = HealthMonitor()
    for _ in range(health.MIN_JUDGED_LAG_SAMPLES - 1):
        monitor.record_lag(50 * MS)
    assert busy_gauges(monitor) == () and monitor.summary()["bottleneck"] is False


# -- showing it --------------------------------------------------------------------------------------


class FakeStream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no terminal here")


def test_on_a_terminal_the_line_is_rewritten_in_place_and_cleared_at_the_stop() -> None:
    stream = FakeStream(tty=True)
    line = ProgressLine(lambda: FULL, stream)
    assert line.interval_s == TTY_EVERY_S
    line.tick()
    line.tick()
    shown = "\r" + format_line(FULL, 79) + "\x1b[K"
    assert stream.getvalue() == shown * 2
    assert "\n" not in stream.getvalue()
    line.stop()
    assert stream.getvalue() == shown * 2 + "\r\x1b[K"
    line.stop()  # nothing more to clear
    assert stream.getvalue().endswith(shown + "\r\x1b[K")


def test_elsewhere_whole_lines_every_ten_seconds_and_nothing_to_clear() -> None:
    stream = FakeStream(tty=False)
    line = ProgressLine(lambda: FULL, stream)
    assert line.interval_s == LOG_EVERY_S
    line.tick()
    line.tick()
    line.stop()
    assert stream.getvalue() == (format_line(FULL) + "\n") * 2


def test_a_stop_before_any_line_writes_nothing() -> None:
    stream = FakeStream(tty=True)
    ProgressLine(lambda: FULL, stream).stop()
    assert stream.getvalue() == ""


def test_the_greenlet_shows_a_line_each_interval_until_stopped() -> None:
    stream = FakeStream(tty=False)
    line = ProgressLine(lambda: FULL, stream, interval_s=0.001)
    line.start()
    assert wait_for(lambda: stream.getvalue().count("\n") >= 3, timeout=5.0)
    line.stop()
    assert line._greenlet is None and stream.getvalue() == (
        format_line(FULL) + "\n"
    ) * stream.getvalue().count("\n")


def test_a_failing_snapshot_is_logged_once_and_the_line_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    stream = FakeStream(tty=True)
    answers: list[Progress | Exception] = [FULL, RuntimeError("boom"), RuntimeError("boom"), FULL]

    def take() -> Progress:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    line = ProgressLine(take, stream)
    with caplog.at_level(logging.WARNING, logger="loadtest"):
        for _ in range(4):
            line.tick()
    assert [r.message for r in caplog.records] == [
        "loadtest: the progress line failed (--no-progress turns it off)"
    ]
    shown = "\r" + format_line(FULL, 79) + "\x1b[K"
    # Cleared before the log message, so the message starts on a clean line; shown again after.
    assert stream.getvalue() == shown + "\r\x1b[K" + shown


def test_a_broken_stream_never_raises_into_the_run() -> None:
    class Broken(FakeStream):
        def write(self, text: str) -> int:
            raise BrokenPipeError("gone")

    line = ProgressLine(lambda: FULL, Broken(tty=True))
    line.tick()
    line.stop()
    assert line.failed is True
