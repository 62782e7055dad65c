"""One `--threshold-abort` check on a master: the CPU of building the run's summary to judge the
thresholds (before) and of reading their values straight from the merged metrics (after).

    python bench/threshold_abort.py [--scenarios 5] [--turns 20] [--conversations 2000]
                                    [--workers 4] [--intervals 8] [--repeat 5]

The run: --scenarios scenarios of --turns turns each, --conversations conversations played through
loadtest's TurnRecorder by --workers simulated workers (TTFT lognormal around 300 ms, 5-20 chunks
10-40 ms apart, 1 % of turns failing), their drained data merged as the master merges it, over
--intervals 5 s intervals of the time series (those older than 30 s settled, as the master does).
Every histogram is then kept by turn and by scenario, as in a real run.

The thresholds: a realistic set, over the whole run, per turn and per scenario, latency and rates
(goodput included), all passing, so that a check reads every one of them (it stops at the first that
fails). Before is what the watcher did: `RunOutput.summary` (the summary.json document of the run,
every histogram of every scope encoded), then each threshold read from it. After is
`thresholds.evaluate_live`. Both give the same outcomes (checked here, and in
tests/test_thresholds.py); printed: the histograms held, the CPU of one check each way (the least of
--repeat), and the ratio.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import configargparse  # type: ignore[import-untyped]  # Locust's option parser
import yaml

# The simulated workers' turns of bench/master_scale.py (run from bench/, it is importable).
from master_scale import turn_result

from loadtest import thresholds
from loadtest.health import HealthMonitor
from loadtest.metrics import INTERVAL_S, Metrics, interval_of, scoped
from loadtest.options import add_arguments
from loadtest.output import RunOutput
from loadtest.recorder import TurnRecorder
from loadtest.run import Run
from loadtest.settings import Settings, from_options
from loadtest.watchers import SETTLE_AFTER_S

ROOT = Path(__file__).resolve().parents[1]
# Generous limits: every threshold passes, so a check reads them all.
THRESHOLDS = [
    "ttft.p95<10s",
    "turn.p99<30s",
    "itl.p99<1s",
    "conversation.p90<600s",
    "ttfb.p95<10s",
    "ttft{turn=1}.p95<10s",
    "turn{turn=20}.p99<30s",
    "ttft{scenario=s3}.p95<10s",
    "turn{scenario=s5}.max<60s",
    "error_rate<50%",
    "error_rate{scenario=s2}<50%",
    "error_rate{turn=1}<50%",
    "conversation_success>=10%",
    "goodput>10%",
    "conversation_goodput{scenario=s1}>=1%",
]


def worker_data(rng: random.Random, conversations: int, scenarios: int, turns: int) -> dict[str, Any]:
    """What a worker drains after playing `conversations` whole conversations."""
    recorder = TurnRecorder()
    for n in range(conversations):
        name, conversation_id = f"s{rng.randint(1, scenarios)}", f"c{n}"
        recorder.conversation_started(name, conversation_id)
        failed = False
        for index in range(1, turns + 1):
            result = turn_result(rng)
            recorder.turn(result, name, index, conversation_id, intended_ns=0)
            failed = failed or not result.ok
        outcome = "failed" if failed else "completed"
        recorder.conversation_ended(name, outcome, int(rng.uniform(20e9, 90e9)), conversation_id)
    return recorder.drain()


def at_interval(data: dict[str, Any], interval: int) -> dict[str, Any]:
    """`data` with its time-series keys (`ttft@{start}`) moved to the interval starting at `interval`."""

    def move(table: dict[str, Any]) -> dict[str, Any]:
        return {(k.rpartition("@")[0] + f"@{interval}" if "@" in k else k): v for k, v in table.items()}

    return {**data, "histograms": move(data["histograms"]), "counts": move(data["counts"])}


def master_metrics(args: argparse.Namespace) -> Metrics:
    """The master's merged metrics: each worker's share of each interval, merged as it arrives."""
    rng = random.Random(1)
    merged = Metrics()
    now = interval_of(time.time())
    per_report = max(args.conversations // (args.workers * args.intervals), 1)
    for i in range(args.intervals):
        interval = now - (args.intervals - 1 - i) * INTERVAL_S
        for _ in range(args.workers):
            data = worker_data(rng, per_report, args.scenarios, args.turns)
            merged.merge_data(at_interval(data, interval))
        merged.settle_intervals(interval - SETTLE_AFTER_S)
    return merged


def run_settings(args: argparse.Namespace, folder: Path) -> Settings:
    """Settings as Locust's parser gives them for a run of these thresholds against the mock, with a
    conversations file of the scenarios the metrics have (the thresholds' scopes are checked on it)."""
    scenarios = [
        {"name": f"s{n}", "turns": [f"turn {i}" for i in range(1, args.turns + 1)]}
        for n in range(1, args.scenarios + 1)
    ]
    conversations = folder / "conversations.yaml"
    conversations.write_text(yaml.safe_dump({"scenarios": scenarios}), encoding="utf-8")
    parser = configargparse.ArgumentParser(add_help=False, default_config_files=[])
    add_arguments(parser)
    argv = ["--conversations", str(conversations), "--report-dir", str(folder)]
    argv += [arg for expr in THRESHOLDS for arg in ("--threshold", expr)]
    options = parser.parse_args(argv, env_vars={})
    options.locustfile = str(ROOT / "locustfiles" / "chat.py")
    return from_options(options, "http://127.0.0.1:1", uses_mock=True)


def cpu_ms(ways: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """The least CPU time of each way, in ms, over `repeat` rounds that take turns: the machine's
    other load then weighs on both alike."""
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(repeat):
        for name, work in ways.items():
            start = time.process_time()
            work()
            best[name] = min(best[name], (time.process_time() - start) * 1000)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenarios", type=int, default=5)
    parser.add_argument("--turns", type=int, default=20, help="turns of each scenario")
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--intervals", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.turns < 20 or args.scenarios < 5:
        print("bench: the thresholds name turn 20 and scenario s5: use --turns >= 20 and --scenarios >= 5")
        return 2

    metrics = master_metrics(args)
    recorder = TurnRecorder()
    recorder.metrics = metrics
    output = RunOutput(recorder, HealthMonitor())
    with tempfile.TemporaryDirectory() as tmp:
        settings = run_settings(args, Path(tmp))
        rules = settings.thresholds
        run = Run()

        def before() -> list[thresholds.Outcome]:
            summary = output.summary(
                run, settings, host="http://127.0.0.1:1", uses_mock=True, users=0, workers=args.workers
            )
            return thresholds.evaluate(rules, summary)

        def after() -> list[thresholds.Outcome]:
            return thresholds.evaluate_live(rules, metrics)

        live = after()
        if live != before():
            print("bench: the live outcomes differ from the summary's", file=sys.stderr)
            return 1
        cpu = cpu_ms({"before": before, "after": after}, args.repeat)
        before_ms, after_ms = cpu["before"], cpu["after"]

    held = sum(1 for hist in metrics.histograms.values() if hist.count)
    read = {th.metric if th.scope is None else scoped(th.metric, *th.scope) for th in rules if not th.is_rate}
    turns = metrics.counts["turns"]
    print(f"run: {turns:,} turns, {args.scenarios} scenarios x {args.turns} turns, {args.workers} workers")
    print(f"histograms with samples: {held}; the thresholds read {len(read)} of them")
    print(f"thresholds: {len(rules)}, all passing: {all(o.passed for o in live)}")
    print(f"one check, CPU: before (summary) {before_ms:,.1f} ms, after (live) {after_ms:,.1f} ms")
    print(f"ratio: {before_ms / after_ms:,.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
