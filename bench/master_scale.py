"""The Locust master at 10, 50 and 100 workers, simulated in-process: what merging their reports costs.

    python bench/master_scale.py [--workers 10,50,100] [--users 1000] [--intervals 5]
                                 [--long-intervals 40] [--distinct 10]

Each simulated worker holds --users users in conversations (the sample's scenarios, think time 1-3 s,
TTFT lognormal around 300 ms, 5-20 chunks 10-40 ms apart, 1 % of turns failing). Its periodic report,
every 3 s as Locust's, is made as a worker makes it: turns recorded through loadtest's TurnRecorder
(TTFT, turn latency, inter-chunk gaps, the response-time histograms, per-turn and per-scenario scopes,
the time series), its client-health gauges and Locust's own request statistics, serialized as
Locust's RPC message. The master, for each report, unserializes it and fires Locust's worker_report
event, on which Locust merges its statistics and loadtest's MasterLink merges the histograms; once a
second it settles old time-series intervals and takes the progress line's snapshot, as a headless
master does. Reports are made beforehand (--distinct different ones, reused): only the master's part
is timed.

Printed per worker count: the master's CPU per 3 s interval (share of one core) and per report, and
its resident memory; then a long run at the largest count, its memory every 10 intervals. The goal:
under 20 % of one core at 100 workers, and memory that stops growing.
"""

from __future__ import annotations

# ruff: noqa: I001  (locust is imported first on purpose)

import locust  # noqa: F401  (first: gevent patches the process)

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from locust.event import Events
from locust.rpc.protocol import Message
from locust.stats import RequestStats, setup_distributed_stats_event_listeners

from loadtest import progress
from loadtest.catalog import http_failure
from loadtest.client import TurnResult
from loadtest.handshake import HEALTH_KEY, REPORT_KEY, MasterLink
from loadtest.health import HealthMonitor
from loadtest.metrics import INTERVAL_S, interval_of
from loadtest.recorder import TurnRecorder
from loadtest.run import Run
from loadtest.watchers import SETTLE_AFTER_S

ROOT = Path(__file__).resolve().parents[1]
REPORT_S = 3  # Locust's worker report interval
THINK_MEAN_S = 2.0  # think time 1-3 s
TURN_MEAN_S = 0.8  # TTFT ~0.3 s and ~12 chunks 25 ms apart
FAIL_SHARE = 0.01
LAG_INTERVAL_S = 0.05  # loadtest.health's event-loop lag sampling


def scenarios() -> list[tuple[str, int]]:
    """(name, number of turns) of each scenario of the sample conversations."""
    data = yaml.safe_load((ROOT / "locustfiles" / "conversations.yaml").read_text(encoding="utf-8"))
    return [(s["name"], len(s.get("turns", [])) or 3) for s in data["scenarios"]]


def turn_result(rng: random.Random) -> TurnResult:
    """One streamed turn with realistic timings (perf_counter_ns offsets from 0)."""
    ttft = int(rng.lognormvariate(0, 0.3) * 300e6)
    itl = tuple(int(rng.uniform(10e6, 40e6)) for _ in range(rng.randint(5, 20)))
    end = ttft + sum(itl)
    if rng.random() < FAIL_SHARE:
        return TurnResult(False, http_failure(500), "HTTP 500: upstream failed", 500, 0, ttft)
    return TurnResult(
        True, None, "", 200, 0, end, t_headers_ns=ttft // 2, t_first_event_ns=ttft, t_first_content_ns=ttft,
        t_last_event_ns=end, content="x" * 40 * len(itl), chunks=len(itl), itl_ns=itl, done=True,
        finish_reason="stop", system_fingerprint="fp-1",
    )  # fmt: skip


def worker_report(users: int, seed: int) -> dict[str, Any]:
    """What one worker's periodic report carries after 3 s of `users` users."""
    rng = random.Random(seed)
    recorder = TurnRecorder()
    health = HealthMonitor()
    stats = RequestStats()
    events = Events()
    setup_distributed_stats_event_listeners(events, stats)
    plays = scenarios()
    turns = round(users * REPORT_S / (THINK_MEAN_S + TURN_MEAN_S))
    for _ in range(turns):
        name, length = rng.choice(plays)
        index = rng.randint(1, length)
        result = turn_result(rng)
        recorder.turn(result, name, index, "conv", intended_ns=0)
        health.record_pool_wait(rng.randint(0, 50_000))
        stats.log_request("CHAT", f"turn {index}", result.latency_ns / 1e6, len(result.content))
        if not result.ok:
            stats.log_error("CHAT", f"turn {index}", result.kind)
        if index == 1:
            recorder.conversation_started(name)
        elif index == length:
            recorder.conversation_ended(name, "completed", int(rng.uniform(5e9, 30e9)))
    for _ in range(int(REPORT_S / LAG_INTERVAL_S)):
        health.record_lag(rng.randint(50_000, 2_000_000))
    for _ in range(REPORT_S):
        health.record_cpu(int(rng.uniform(0.2e9, 0.6e9)), int(1e9))
    data: dict[str, Any] = {}
    events.report_to_master.fire(client_id=f"worker{seed}", data=data)
    data[REPORT_KEY] = recorder.drain()
    data[HEALTH_KEY] = health.drain()
    return data


def at_interval(data: dict[str, Any], interval: int) -> dict[str, Any]:
    """`data` with its time-series keys (`ttft@{start}`) moved to the interval starting at `interval`."""

    def move(table: dict[str, Any]) -> dict[str, Any]:
        return {(k.rpartition("@")[0] + f"@{interval}" if "@" in k else k): v for k, v in table.items()}

    report = dict(data[REPORT_KEY])
    report["histograms"] = move(report["histograms"])
    report["counts"] = move(report["counts"])
    return {**data, REPORT_KEY: report}


PARTS = ("unpack", "Locust stats", "loadtest merge", "each second")


class Master:
    """The master's side of the reports: Locust's statistics and loadtest's MasterLink, with the
    once-a-second work of a headless master; the CPU seconds of each part in `cpu`."""

    def __init__(self) -> None:
        # Two event hooks, so the CPU of Locust's merge and of loadtest's are told apart.
        self.locust_events = Events()
        self.stats = RequestStats()
        setup_distributed_stats_event_listeners(self.locust_events, self.stats)
        self.loadtest_events = Events()
        runner = SimpleNamespace(
            environment=SimpleNamespace(events=self.loadtest_events, parsed_options=None),
            register_message=lambda *args, **kwargs: None,
        )
        self.recorder = TurnRecorder()
        self.health = HealthMonitor()
        self.link = MasterLink(runner, self.recorder, self.health)
        run = Run(planned_s=None)
        self.snapshot: Callable[[], Any] = progress.snapshots(self.recorder, self.health, run, lambda: 0)
        self.cpu = dict.fromkeys(PARTS, 0.0)

    def receive(self, packed: bytes) -> None:
        t0 = time.process_time()
        msg = Message.unserialize(packed)
        t1 = time.process_time()
        self.locust_events.worker_report.fire(client_id=msg.node_id, data=msg.data)
        t2 = time.process_time()
        self.loadtest_events.worker_report.fire(client_id=msg.node_id, data=msg.data)
        t3 = time.process_time()
        for part, spent in zip(PARTS, (t1 - t0, t2 - t1, t3 - t2), strict=False):
            self.cpu[part] += spent

    def each_second(self, now_s: float) -> None:
        t0 = time.process_time()
        self.recorder.metrics.settle_intervals(interval_of(now_s) - SETTLE_AFTER_S)
        self.snapshot()
        self.cpu["each second"] += time.process_time() - t0

    def total_cpu(self) -> float:
        return sum(self.cpu.values())


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reports(templates: list[dict[str, Any]], workers: int, now_s: int) -> list[bytes]:
    interval = interval_of(now_s)
    return [
        Message("stats", at_interval(templates[w % len(templates)], interval), f"worker{w}").serialize()
        for w in range(workers)
    ]


def simulate(
    master: Master, templates: list[dict[str, Any]], workers: int, first: int, intervals: int
) -> None:
    """Feed `intervals` report intervals of `workers` workers, from the `first` one."""
    for k in range(first, first + intervals):
        now = 1_700_000_000 + k * REPORT_S
        for report in reports(templates, workers, now):
            master.receive(report)
        for second in range(REPORT_S):
            master.each_second(now + second)


def long_run(templates: list[dict[str, Any]], workers: int, intervals: int) -> None:
    print()
    print(f"long run, {workers} workers ({intervals * REPORT_S} s simulated):")
    master = Master()
    done = 0
    while done < intervals:
        step = min(10, intervals - done)
        before = master.total_cpu()
        simulate(master, templates, workers, done, step)
        done += step
        share = (master.total_cpu() - before) / (step * REPORT_S)
        metrics = master.recorder.metrics
        live = sum(1 for key in metrics.histograms if "@" in key)
        print(
            f"  {done * REPORT_S:>4} s: RSS {rss_mb():.0f} MB, CPU {share:.1%} of one core, "
            f"{live} time-series histograms live, {len(metrics.settled)} intervals settled"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="10,50,100", help="worker counts, comma-separated")
    parser.add_argument("--users", type=int, default=1000, help="users per worker")
    parser.add_argument("--intervals", type=int, default=5, help="report intervals timed per worker count")
    parser.add_argument("--long-intervals", type=int, default=40, help="intervals of the long run (0: none)")
    parser.add_argument("--distinct", type=int, default=10, help="different worker reports made and reused")
    ns = parser.parse_args()
    counts = [int(n) for n in ns.workers.split(",")]
    started = time.perf_counter()
    templates = [worker_report(ns.users, seed) for seed in range(ns.distinct)]
    sample = templates[0]
    report_kb = len(Message("stats", sample, "worker0").serialize()) / 1024
    print(
        f"one worker report: {len(sample[REPORT_KEY]['histograms'])} loadtest histograms, "
        f"{sum(e['num_requests'] for e in sample['stats'])} turns, {report_kb:.0f} KiB serialized "
        f"(made in {time.perf_counter() - started:.1f} s)"
    )
    print()
    print("| workers | reports/s | master CPU per 3 s | share of one core | per report | RSS |")
    print("|---|---|---|---|---|---|")
    parts: dict[int, dict[str, float]] = {}
    for workers in counts:
        master = Master()
        simulate(master, templates, workers, 0, 1)  # warm-up: the first merges create the histograms
        master.cpu = dict.fromkeys(PARTS, 0.0)
        simulate(master, templates, workers, 1, ns.intervals)
        per_interval = master.total_cpu() / ns.intervals
        parts[workers] = {part: spent / ns.intervals for part, spent in master.cpu.items()}
        print(
            f"| {workers} | {workers / REPORT_S:.0f} | {per_interval * 1000:.0f} ms | "
            f"{per_interval / REPORT_S:.1%} | {per_interval / workers * 1000:.2f} ms | {rss_mb():.0f} MB |"
        )
    print()
    print("where the CPU of a 3 s interval goes (ms):")
    print(f"| workers | {' | '.join(PARTS)} |")
    print(f"|---|{'---|' * len(PARTS)}")
    for workers, spent in parts.items():
        print(f"| {workers} | {' | '.join(f'{spent[part] * 1000:.0f}' for part in PARTS)} |")
    if ns.long_intervals:
        long_run(templates, max(counts), ns.long_intervals)
    took = time.perf_counter() - started
    print(f"\n(time series: {INTERVAL_S} s intervals, settled after {SETTLE_AFTER_S} s; took {took:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
