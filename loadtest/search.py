"""A capacity search in a Locust run (the plan and its arithmetic are `loadtest.capacity`'s).

- `CapacityShape`: the Locust load shape of `locustfiles/capacity.py`. Locust applies the users it
  returns (adding and removing users, never restarting the others) and ends the test when it returns
  None; it returns what the search asks for.
- `CapacitySearch`: the watcher, on the process that writes the outputs (local or master), that runs
  each step: it sets the load, waits for it and the warm-up, and judges the step by the `--threshold`
  rules on the step's own data. Those are the difference between the run's figures at the end of the
  step and at the end of its warm-up: on a master the figures are merged from the workers' reports
  (every 3 s), so they are exact across workers, and a step's window reaches back by up to one report.
- `SteppedArrivals`: the open model's arrival queue, whose rate a rate search sets at each step on
  every load-generating process, and which it drains before its first step and each one below a step
  that failed.
- `LocalControl`, `MasterControl`: how the search reaches the processes that generate the load (a
  master tells its workers a rate, or to drain, with `RATE_MESSAGE`; they answer a drain with
  `DRAINED_MESSAGE`), and when their figures are in: on a master, a step's window opens and closes
  once every worker has reported after the moment it is due, so it holds only turns of that step's
  load, past its warm-up, whenever each worker's report came.

Why a rate step may start with a drain (no arrivals until every user is free): a step of the open model
above capacity leaves a backlog, queued at the server (up to `-u` conversations) and in the arrival
queue. A server below capacity works it off only at the rate it has to spare (at 95 % of capacity, a
twentieth of its pace), so the lower steps that bisection tries next would be judged on the backlog of
the failed one, not on their own rate. At the start, the users Locust spawns are not all running yet
(the arrivals begin with the first step: before it, they would wait for the users and come as a
burst). So the first step, and each step below one that failed, starts once every user waits for an
arrival (the arrivals still queued are cut): from nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.queue
from locust import LoadTestShape

from loadtest import capacity, catalog, thresholds
from loadtest.arrivals import ArrivalRate
from loadtest.capacity import RATE, Outcome, SearchPlan
from loadtest.catalog import GAUGES
from loadtest.health import HealthMonitor, ProcessHealth, Tally
from loadtest.metrics import Histogram, Metrics
from loadtest.openmodel import ArrivalQueue
from loadtest.recorder import TurnRecorder
from loadtest.report.schema import ERROR_RATE, GOODPUT, stat_of
from loadtest.run import Run
from loadtest.verdict import StoppedBy
from loadtest.watchers import Watcher

logger = logging.getLogger("loadtest")

RATE_MESSAGE = "loadtest_search_rate"
# A worker's answer to a drain (a RATE_MESSAGE without a rate): whether every user of it got free.
DRAINED_MESSAGE = "loadtest_search_drained"
DRAIN_POLL_S = 0.05
# Workers report every 3 s (Locust's WORKER_REPORT_INTERVAL): a window waits at most this long for
# every worker's next report.
REPORT_WAIT_S = 7.0
REPORT_POLL_S = 0.05
# How long a step waits for Locust to reach its users before its warm-up starts regardless.
SPAWN_WAIT_S = 30.0
SPAWN_POLL_S = 0.1
# The statistics a step keeps of TTFT and turn latency.
STEP_STATS = catalog.BREAKDOWN_STATS
STEP_METRICS = (catalog.TTFT, catalog.TURN_LATENCY)


class SteppedArrivals(ArrivalQueue):
    """The open model's arrival queue, whose rate can change while it runs: the schedule restarts at
    the new rate on the same queue, so arrivals waiting keep their place and users waiting for one
    keep waiting. A drain stops the arrivals until the next rate, and lasts until every user waits for
    one: until the conversations under way have ended."""

    def __init__(self, recorder: TurnRecorder) -> None:
        super().__init__(recorder)
        # Users waiting for an arrival now: the others are in a conversation.
        self.waiting = 0

    def take(self) -> int:
        self.waiting += 1
        try:
            return super().take()
        finally:
            self.waiting -= 1

    def open(self, max_wait_s: float) -> None:
        """At test start: users wait for an arrival, and arrivals begin with the first `set_rate`."""
        self.stop()
        self.max_wait_s = max_wait_s
        self._queue = gevent.queue.Queue()

    def set_rate(self, rate: ArrivalRate, processes: int) -> None:
        if self._queue is None:
            self.start(rate, self.max_wait_s, processes)
            return
        if self._generator is not None:
            self._generator.kill(block=True)
        self._generator = gevent.spawn(self._generate, rate.share(processes), self._queue)

    def drain(self, users: Callable[[], int], timeout_s: float) -> bool:
        """No more arrivals (those waiting are cut: counted as `arrivals_cut`) until `set_rate`; wait
        until all `users()` are waiting for one, that is until every conversation under way has
        ended. False if `timeout_s` passed first."""
        if self._generator is not None:
            self._generator.kill(block=True)
            self._generator = None
        queue = self._queue
        while queue is not None and not queue.empty():
            queue.get_nowait()
            self.recorder.count("arrivals_cut")
        deadline = time.monotonic() + timeout_s
        while self.waiting < users():
            if time.monotonic() > deadline:
                return False
            gevent.sleep(DRAIN_POLL_S)
        return True


def nothing_to_drain(timeout_s: float) -> bool:
    """The drain of a process without a rate search's arrivals: every user is free already."""
    return True


class LocalControl:
    """A search in the process that generates the load: a rate is set and the arrivals drained here
    (`drain(timeout_s)` says whether every user was free in time), figures are in at once."""

    def __init__(
        self, set_rate: Callable[[ArrivalRate], None], drain: Callable[[float], bool] = nothing_to_drain
    ) -> None:
        self.set_rate = set_rate
        self.drain = drain

    def settle(self) -> None:
        """Every turn recorded so far is in the figures already."""


class MasterControl:
    """A search on a master: rates go to the workers by message, and a step's figures are in once every
    worker has reported after they were due."""

    def __init__(self, runner: Any, report_wait_s: float = REPORT_WAIT_S) -> None:
        self.runner = runner
        self.report_wait_s = report_wait_s
        self.reported: dict[str, float] = {}
        # Each drain is numbered; a worker's answer names the drain it answers, and whether it drained.
        self.drains = 0
        self.drained: dict[str, tuple[int, bool]] = {}
        runner.environment.events.worker_report.add_listener(self._on_report)
        runner.register_message(DRAINED_MESSAGE, self._on_drained)

    def _on_report(self, client_id: str, data: Mapping[str, Any], **_: Any) -> None:
        self.reported[client_id] = time.monotonic()

    def _on_drained(self, environment: Any, msg: Any, **_: Any) -> None:
        self.drained[str(msg.node_id)] = (int(msg.data["drain"]), bool(msg.data["drained"]))

    def set_rate(self, rate: ArrivalRate) -> None:
        # The whole run's rate: each worker takes its share, as of --arrival-rate.
        self.runner.send_message(RATE_MESSAGE, {"rate": rate.rate, "process": rate.process})

    def drain(self, timeout_s: float) -> bool:
        """Every worker drains its arrivals; True once each said every user of it got free within
        `timeout_s`. A worker that does not answer (lost) cuts the wait at `timeout_s` and a report's
        wait more."""
        self.drains += 1
        number = self.drains
        self.runner.send_message(RATE_MESSAGE, {"rate": None, "drain": number, "timeout_s": timeout_s})
        deadline = time.monotonic() + timeout_s + self.report_wait_s
        while time.monotonic() < deadline:
            answers = [self.drained.get(client.id) for client in self.runner.clients.all]
            if all(answer is not None and answer[0] == number for answer in answers):
                return all(answer[1] for answer in answers if answer is not None)
            gevent.sleep(REPORT_POLL_S)
        return False

    def settle(self) -> None:
        due = time.monotonic()
        deadline = due + self.report_wait_s
        while time.monotonic() < deadline:
            workers = [client.id for client in self.runner.clients.all]
            if all(self.reported.get(worker, 0.0) > due for worker in workers):
                return
            gevent.sleep(REPORT_POLL_S)
        logger.warning(
            "loadtest: a worker did not report within %.0f s: a step's window is cut", self.report_wait_s
        )


Control = LocalControl | MasterControl


# -- a step's own data -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The run's figures at one moment: every histogram but the time series', encoded, every count,
    and the client-health histograms and per-process tallies."""

    at: float  # time.monotonic()
    histograms: dict[str, str]
    counts: dict[str, int]
    health_histograms: dict[str, str]
    processes: dict[str, dict[str, list[int]]]

    @classmethod
    def take(cls, metrics: Metrics, health: HealthMonitor) -> Snapshot:
        return cls(
            at=time.monotonic(),
            histograms={k: h.encode() for k, h in metrics.histograms.items() if "@" not in k and h.count},
            counts={k: int(n) for k, n in metrics.counts.items() if "@" not in k},
            health_histograms={k: h.encode() for k, h in health.histograms.items() if h.count},
            processes={source: p.to_data() for source, p in health.all_processes().items()},
        )


def difference(after: str, before: str | None) -> Histogram:
    """The values recorded into a histogram between two encodings of it (`before` None: none yet)."""
    later = Histogram.decode(after)
    if before is None:
        return later
    a, b = later.hdr, Histogram.decode(before).hdr
    out = Histogram()
    if a.get_total_count() == b.get_total_count():
        return out
    first = a.get_counts_array_index(a.get_min_value())
    last = min(a.get_counts_array_index(a.get_max_value()), a.counts_len - 1)
    record = out.hdr.record_value
    for offset, (now, then) in enumerate(
        zip(a.counts[first : last + 1], b.counts[first : last + 1], strict=True)
    ):
        if now > then:
            record(a.get_value_from_index(first + offset), now - then)
    return out


def between(before: Snapshot, after: Snapshot) -> tuple[Metrics, HealthMonitor]:
    """What the run recorded from `before` to `after`: its figures and its client health."""
    metrics = Metrics()
    for key, encoded in after.histograms.items():
        hist = difference(encoded, before.histograms.get(key))
        if hist.count:
            metrics.histograms[key] = hist
    for key, n in after.counts.items():
        if n - before.counts.get(key, 0) > 0:
            metrics.counts[key] = n - before.counts.get(key, 0)
    health = HealthMonitor()
    for key, encoded in after.health_histograms.items():
        health.histograms[key] = difference(encoded, before.health_histograms.get(key))
    for source, tallies in after.processes.items():
        earlier = before.processes.get(source, {})
        step = ProcessHealth()
        for key, (n, over, top) in tallies.items():
            n0, over0, _ = earlier.get(key, [0, 0, 0])
            step.tallies[key] = Tally(n - n0, over - over0, top)
        if step.samples:
            health.processes[source] = step
    return metrics, health


def step_record(
    load: float,
    started_s: float,
    metrics: Metrics,
    health: HealthMonitor,
    seconds: float,
    rules: Sequence[thresholds.Threshold],
) -> dict[str, Any]:
    """One step of summary.json's `capacity.steps`: its load, when it began (seconds into the run), how
    long it was measured, its turns, error rate and goodput, p50/p95/p99 of TTFT and turn latency,
    the client's health, each threshold's outcome, and whether all held."""
    summary: dict[str, Any] = {
        "metrics": metrics.summary_metrics(),
        "counts": metrics.summary_counts(),
        "by_turn": metrics.summary_breakdown(catalog.TURN),
        "by_scenario": metrics.summary_breakdown(catalog.SCENARIO),
    }
    outcomes = thresholds.evaluate(rules, summary)
    counts = summary["counts"]
    finished = counts["turns_ok"] + counts["turns_failed"]
    client = health.summary()
    record: dict[str, Any] = {
        "load": load,
        "started_s": round(started_s, 1),
        "duration_s": round(seconds, 1),
        "turns": finished,
        "turns_ok": counts["turns_ok"],
        "turns_failed": counts["turns_failed"],
        "turns_per_s": round(finished / seconds, 3) if seconds > 0 else None,
        "error_rate": ERROR_RATE.of(counts),
        "goodput": GOODPUT.of(counts),
        "conversations_completed": counts["conversations_completed"],
    }
    for metric in STEP_METRICS:
        record[metric.summary_key] = {s.key: stat_of(summary["metrics"], metric, s) for s in STEP_STATS}
    record["client"] = {
        "bottleneck": bool(client["bottleneck"]),
        "judged": bool(client["judged"]),
        "reasons": list(client["reasons"]),
        **{
            f"{g.summary_key}_p{g.percentile:g}": client[g.summary_key].get(f"p{g.percentile:g}")
            for g in GAUGES
        },
    }
    record["thresholds"] = [o.to_json() for o in outcomes]
    record["passed"] = all(o.passed for o in outcomes)
    return record


def describe_step(number: int, step: Mapping[str, Any], unit: str) -> str:
    """`step 3: 40 concurrent conversations, 812 turns, ttft.p95 742 ms: pass`."""
    seen = ", ".join(
        f"{capacity.left_side(o['expr'])} {thresholds.format_observed(o['observed'], o['unit'])}"
        for o in step["thresholds"]
    )
    verdict = "pass" if step["passed"] else "FAIL"
    if step["client"]["bottleneck"]:
        verdict += " (the load generator was the bottleneck)"
    return (
        f"step {number}: {capacity.format_load(step['load'], unit)}, {step['turns']} turns, {seen}: {verdict}"
    )


# -- the search ----------------------------------------------------------------------------------------


class CapacitySearch(Watcher):
    """Runs the steps of `plan` one after another until `capacity.next_load` says the search is over,
    then ends the test (`target()` turns None, which the shape hands to Locust)."""

    def __init__(
        self,
        run: Run,
        plan: SearchPlan,
        rules: Sequence[thresholds.Threshold],
        figures: Callable[[], tuple[Metrics, HealthMonitor]],
        *,
        users: int,
        user_count: Callable[[], int],
        control: Control,
        spawn_wait_s: float = SPAWN_WAIT_S,
    ) -> None:
        super().__init__()
        self.run = run
        self.plan = plan
        self.rules = tuple(rules)
        self.figures = figures
        self.users = users  # a rate search's users: the most conversations at once
        self.user_count = user_count
        self.control = control
        self.spawn_wait_s = spawn_wait_s
        self.load = plan.low
        self.steps: list[dict[str, Any]] = []
        self.complete = False

    def target(self) -> tuple[int, float] | None:
        """The users Locust should run now, and how fast to get there; None once the search is over."""
        if self.complete:
            return None
        users = self.users if self.plan.mode == RATE else int(self.load)
        # Quickly: the warm-up is for the server to settle, not for the users to arrive.
        return users, float(max(users, 1))

    def section(self) -> dict[str, Any]:
        return capacity.section(self.plan, self.steps, complete=self.complete)

    def _loop(self) -> None:
        while (load := capacity.next_load(self.plan, self.outcomes())) is not None:
            self.step(load)
        self.complete = True
        self.run.stop(StoppedBy.CAPACITY_SEARCH)
        logger.info("loadtest: %s", capacity.console_line(self.section()))

    def outcomes(self) -> list[Outcome]:
        return [capacity.outcome_of(step) for step in self.steps]

    def step(self, load: float) -> dict[str, Any]:
        """Run one step at `load`, record and return what it measured."""
        self.load = load
        if self.plan.mode == RATE:
            self._prepare_rate()
        started_s = self.run.elapsed_s()
        if self.plan.mode == RATE:
            self.control.set_rate(ArrivalRate(load, self.plan.process))
        else:
            self._wait_for_users(int(load))
        gevent.sleep(self.plan.warmup_s)
        self.control.settle()
        before = Snapshot.take(*self.figures())
        gevent.sleep(self.plan.step_s - self.plan.warmup_s)
        self.control.settle()
        after = Snapshot.take(*self.figures())
        metrics, health = between(before, after)
        shown = self.plan.shown(load)
        assert shown is not None
        record = step_record(shown, started_s, metrics, health, after.at - before.at, self.rules)
        self.steps.append(record)
        logger.info("loadtest: %s", describe_step(len(self.steps), record, self.plan.unit))
        return record

    def _prepare_rate(self) -> None:
        """The first rate step starts once Locust runs every user of -u; it and a step below one that
        failed, once every user is free (see the module), waiting at most a step's time."""
        if not self.steps:
            self._wait_for_users(self.users)
        elif self.steps[-1]["passed"]:
            return
        if not self.control.drain(self.plan.step_s):
            logger.warning(
                "loadtest: not every user was free after %.0f s without arrivals: step %d starts with "
                "conversations still running",
                self.plan.step_s,
                len(self.steps) + 1,
            )

    def _wait_for_users(self, users: int) -> None:
        deadline = time.monotonic() + self.spawn_wait_s
        while self.user_count() != users and time.monotonic() < deadline:
            gevent.sleep(SPAWN_POLL_S)


class CapacityShape(LoadTestShape):
    """The load of a capacity search: the locustfile declares one (`locustfiles/capacity.py`) and the
    search the reporting process runs (`search`) says what it is."""

    abstract = True
    # -u is read: a rate search's most conversations at once.
    use_common_options = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.search: CapacitySearch | None = None
        # Before the test starts (Locust asks once before it has), the first step's users.
        self.first: tuple[int, float] | None = None

    def tick(self) -> tuple[int, float] | None:
        if self.search is not None:
            return self.search.target()
        return self.first

    def begin(self, search: CapacitySearch | None) -> None:
        self.search = search
        self.first = None

    def prepare(self, plan: SearchPlan, users: int) -> None:
        """The users of the first step, for Locust's first tick, before the search exists."""
        first = users if plan.mode == RATE else int(plan.low)
        self.first = (first, float(max(first, 1)))
        self.search = None
