"""Locust master and real worker processes: histograms merge exactly, nothing recorded at the end is lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from hdrh.histogram import HdrHistogram

from loadtest.metrics import HIGHEST_US, LOWEST_US, SIGNIFICANT_DIGITS
from loadtest.report.turns import read_turns
from tests.conftest import (
    TEST_KEY,
    Finish,
    LocustRun,
    background,
    free_port,
    locust_env,
    start_background_mock,
    start_locust,
)

FAST = ("--ttft", "uniform:20ms:60ms", "--itl", "uniform:1ms:5ms", "--chunks", "uniform:2:8")
CHANNEL = ["--nlx-deployment", "dep1", "--nlx-channel", "web-en-US"]


@background
def workers_run(folder: Path) -> Finish:
    """A master and two worker processes against a mock, every process logging its turns."""
    mock = start_background_mock(*FAST)
    port = free_port()
    common = ["--think-time", "0", "--stop-timeout", "30", "--turn-log", *CHANNEL]
    env = locust_env(NLX_API_KEY=TEST_KEY)
    master = start_locust(
        [*common, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]
        + ["--expect-workers", "2", "-u", "10", "-r", "10", "-t", "4s", "--host", mock.url],
        folder / "master",
        env=env,
        report_dir=folder / "reports",
    )  # fmt: skip
    workers = [
        start_locust(
            [*common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
            folder / f"worker{i}",
            env=env,
            headless=False,
            report_dir=folder / "reports",
        )
        for i in range(2)
    ]

    def finish() -> tuple[LocustRun, dict[str, Any]]:
        try:
            run = master()
            for worker in workers:
                worker()
            return run, mock.stats()
        finally:
            mock.process.stop()

    return finish


def test_master_and_two_workers_merge_histograms_exactly(
    workers_run: tuple[LocustRun, dict[str, Any]],
) -> None:
    run, served = workers_run
    assert run.returncode == 0, run.stderr[-3000:]
    run_dir = (run.report_dir / "latest").resolve()
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    counts = summary["counts"]
    assert summary["run"]["workers"] == 2
    assert "workers_without_final_report" not in summary["run"]
    assert counts["turns"] == counts["turns_ok"] == served["turns"] > 20
    assert counts["chunks"] == served["chunks"] and counts["chars"] == served["chars"]
    ttft = summary["metrics"]["ttft_ms"]
    assert ttft["count"] == served["turns"]
    # The raw samples every process logged, in one histogram, give the very same percentiles.
    turns = read_turns(run_dir)
    assert len({path.name for path in run_dir.glob("turns-*.jsonl")}) == 2  # one file per worker
    reference = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
    for turn in turns:
        reference.record_value(turn["ttft_us"])
    assert reference.get_total_count() == ttft["count"]
    for key, pct in (("p50", 50.0), ("p99", 99.0), ("p999", 99.9)):
        assert ttft[key] == round(reference.get_value_at_percentile(pct) / 1000, 3)
    assert ttft["max"] == round(reference.get_max_value() / 1000, 3)
    by_turn = summary["by_turn"]
    assert sum(entry["ttft_ms"]["count"] for entry in by_turn.values()) == ttft["count"]
    # The time series merges across workers like the totals.
    points = summary["timeline"]["points"]
    assert sum(p["turns_ok"] for p in points) == counts["turns_ok"]
    assert sum(p["ttft_ms"]["count"] for p in points) == ttft["count"]
    assert sum(p["chunks"] for p in points) == counts["chunks"]
    assert max(p["users"] or 0 for p in points) == 10


@background
def processes_run(folder: Path) -> Finish:
    """`--processes 2` against the built-in mock: the master starts it, its workers use it."""
    args = ["--processes", "2", "-u", "4", "-r", "4", "-t", "3s", "--think-time", "0", "--stop-timeout", "30"]
    return start_locust([*args, "--mock-options", " ".join(FAST)], folder, env=locust_env())


def test_processes_mode_against_the_built_in_mock(processes_run: LocustRun) -> None:
    run = processes_run
    assert run.returncode == 0, run.output[-3000:]
    summary = run.summary()
    assert summary["run"]["workers"] == 2 and summary["run"]["mock"] is True
    counts = summary["counts"]
    assert counts["turns_ok"] > 0 and counts["turns"] == counts["turns_ok"]
    assert summary["metrics"]["ttft_ms"]["count"] == counts["turns_ok"]
