"""Locust master and real worker processes: histograms merge exactly, nothing recorded at the end is lost."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from loadtest.metrics import HIGHEST_US, LOWEST_US, SIGNIFICANT_DIGITS
from loadtest.report.turns import read_turns
from tests.conftest import (
    LOCUST,
    LOCUSTFILE,
    ROOT,
    TEST_KEY,
    Finish,
    LocustRun,
    background,
    free_port,
    locust_env,
    popen_locust,
    start_background_mock,
    start_locust,
    wait_locust,
)

SHORT_HEARTBEAT = ROOT / "tests" / "locustfiles" / "short_heartbeat.py"
WHEN = ROOT / "tests" / "when.py"
CONVERSATIONS = ROOT / "locustfiles" / "conversations.yaml"

FAST = ("--ttft", "uniform:20ms:60ms", "--itl", "uniform:1ms:5ms", "--chunks", "uniform:2:8")
CHANNEL = ["--nlx-deployment", "dep1", "--nlx-channel", "web-en-US"]


def assert_merged_exactly(
    summary: dict[str, Any], run_dir: Path, served: dict[str, Any], processes: int
) -> list[dict[str, Any]]:
    """The merged counts are what the mock served, and the merged TTFT, turn-latency and TTFB
    percentiles are those of one histogram of every raw sample the `processes` logged; returns the
    samples."""
    counts = summary["counts"]
    assert counts["turns"] == counts["turns_ok"] == served["turns"] > 0
    assert counts["chunks"] == served["chunks"] and counts["chars"] == served["chars"]
    turns = read_turns(run_dir)
    assert len({path.name for path in run_dir.glob("turns-*.jsonl")}) == processes  # one file each
    assert len(turns) == counts["turns"]
    for key, field in (("ttft_ms", "ttft_us"), ("turn_ms", "latency_us"), ("ttfb_ms", "ttfb_us")):
        merged = summary["metrics"][key]
        reference = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        for turn in turns:
            reference.record_value(turn[field])
        assert merged["count"] == reference.get_total_count() == served["turns"]
        for stat, pct in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9)):
            assert merged[stat] == round(reference.get_value_at_percentile(pct) / 1000, 3), (key, stat)
        assert merged["max"] == round(reference.get_max_value() / 1000, 3)
    return turns


@background
def processes_run(folder: Path) -> Finish:
    """`--processes 2` against the built-in mock: the master starts it, its workers use it."""
    port = str(free_port())  # not Locust's 5557: other runs of the session have masters too
    args = ["--processes", "2", "--master-bind-port", port, "--master-port", port]
    args += ["-u", "4", "-r", "4", "-t", "3s", "--think-time", "0", "--stop-timeout", "30"]
    return start_locust([*args, "--mock-options", " ".join(FAST)], folder, env=locust_env())


def test_processes_mode_against_the_built_in_mock(processes_run: LocustRun) -> None:
    run = processes_run
    assert run.returncode == 0, run.output[-3000:]
    summary = run.summary()
    assert summary["run"]["workers"] == 2 and summary["run"]["mock"] is True
    counts = summary["counts"]
    assert counts["turns_ok"] > 0 and counts["turns"] == counts["turns_ok"]
    assert summary["metrics"]["ttft_ms"]["count"] == counts["turns_ok"]


# --- workers that die, join late, or outlive their master ---------------------------------------------


def _turn_logs(report_dir: Path) -> dict[int, int]:
    """Turns each process logged, by its pid (the turn log is `turns-{host}-{pid}.jsonl`)."""
    counts: dict[int, int] = {}
    for path in report_dir.glob("*/turns-*.jsonl"):
        pid = int(path.stem.rsplit("-", 1)[1])
        counts[pid] = sum(1 for line in path.read_bytes().split(b"\n") if line)
    return counts


def _logged_turns(report_dir: Path, at_least: int = 1) -> Callable[[], bool]:
    return lambda: sum(_turn_logs(report_dir).values()) >= at_least


@dataclass
class Cluster:
    master: subprocess.Popen[str]
    workers: list[subprocess.Popen[str]]
    folder: Path
    report_dir: Path
    port: int
    env: dict[str, str]

    def worker_command(self, locustfile: Path = LOCUSTFILE) -> list[str]:
        """The command line of one more worker, as `add_worker` starts it."""
        return [LOCUST, "-f", str(locustfile), "--report-dir", str(self.report_dir), *self.worker_args()]

    def worker_args(self) -> list[str]:
        args = [
            "--think-time",
            "0.05",
            "--turn-log",
            *CHANNEL,
            "--worker",
            "--conversations",
            str(CONVERSATIONS),
        ]
        return [*args, "--master-host", "127.0.0.1", "--master-port", str(self.port)]

    def add_worker(self, name: str, locustfile: Path = LOCUSTFILE) -> subprocess.Popen[str]:
        args = self.worker_args()
        worker, _ = popen_locust(
            args, self.folder / name, env=self.env, locustfile=locustfile, headless=False,
            report_dir=self.report_dir,
        )  # fmt: skip
        self.workers.append(worker)
        return worker

    def when_turns(self, lines: int, *command: str, name: str = "when") -> subprocess.Popen[str]:
        """Run `command` once the run's turn logs hold `lines` lines (tests/when.py): an action that
        must land mid-run cannot wait for the test that reads the run."""
        folder = self.folder / name
        folder.mkdir(parents=True, exist_ok=True)
        pattern = str(self.report_dir / "*" / "turns-*.jsonl")
        with (folder / "stdout").open("w") as out, (folder / "stderr").open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, str(WHEN), pattern, str(lines), "60", "--", *command],
                env=self.env, cwd=folder, stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True,
            )  # fmt: skip
        self.workers.append(proc)
        return proc

    def finish(self) -> LocustRun:
        try:
            run = wait_locust(self.master, self.folder / "master", self.report_dir)
            for worker in self.workers:
                worker.wait(timeout=30)
            return run
        finally:
            for proc in (self.master, *self.workers):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


def _cluster(
    folder: Path, mock_url: str, *, workers: int, run_time: str, worker_file: Path = LOCUSTFILE
) -> Cluster:
    port = free_port()
    env = locust_env(NLX_API_KEY=TEST_KEY)
    report_dir = folder / "reports"
    # The master's options go to its workers with the spawn: --conversations too.
    args = ["--think-time", "0.05", "--turn-log", "--stop-timeout", "10", *CHANNEL, "--master"]
    args += ["--conversations", str(CONVERSATIONS)]
    args += [
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        str(port),
        "--expect-workers",
        str(workers),
    ]
    args += ["-u", "6", "-r", "6", "-t", run_time, "--host", mock_url]
    master, _ = popen_locust(args, folder / "master", env=env, report_dir=report_dir)
    cluster = Cluster(master, [], folder, report_dir, port, env)
    for i in range(workers):
        cluster.add_worker(f"worker{i}", worker_file)
    return cluster


@dataclass
class LostWorkerRun:
    run: LocustRun
    killed: int  # pid of the worker killed with SIGKILL
    late: int  # pid of the worker that joined mid-run
    logged: dict[int, int]  # turns each worker logged, by pid


@background
def lost_worker_run(folder: Path) -> Finish:
    """Two workers; once turns flow, one is killed with SIGKILL and a third joins the run."""
    mock = start_background_mock(*FAST)
    # 20 s: a loaded machine takes several seconds to start the late worker (imports alone are 1.4 s of
    # CPU), and it must still join before the end.
    cluster = _cluster(folder, mock.url, workers=2, run_time="20s")
    killed = cluster.workers[0]
    # Once turns flow: kill the first worker, and start another in its place (it becomes the late one).
    late_command = shlex.join(cluster.worker_command())
    late = cluster.when_turns(10, "sh", "-c", f"kill -9 {killed.pid} && exec {late_command}", name="late")

    def finish() -> LostWorkerRun:
        try:
            run = cluster.finish()
            return LostWorkerRun(run, killed.pid, late.pid, _turn_logs(cluster.report_dir))
        finally:
            mock.process.stop()

    return finish


def test_a_worker_killed_mid_run_loses_no_data_and_the_run_is_incomplete(
    lost_worker_run: LostWorkerRun,
) -> None:
    run, logged = lost_worker_run.run, lost_worker_run.logged
    summary = run.summary()
    assert (run.returncode, summary["verdict"], summary["exit_code"]) == (5, "incomplete", 5), run.stderr[
        -3000:
    ]
    # The killed worker is lost; on a busy machine Locust may also mark a live one missing for a while
    # (a heartbeat held back): it is back once it reports again, but a late one can still be listed.
    lost = summary["run"]["workers_lost"]
    assert 1 <= len(lost) <= 2 and all(entry["lost_after_s"] > 0 for entry in lost), lost
    [reason] = summary["reasons"]
    assert reason["kind"] == "workers_lost" and all(entry["id"] in reason["text"] for entry in lost)
    # Every turn of the workers that lived is counted, and what the killed one reported before it died.
    survivors = sum(n for pid, n in logged.items() if pid != lost_worker_run.killed)
    assert survivors <= summary["counts"]["turns"] <= survivors + logged.get(lost_worker_run.killed, 0)
    # The worker that joined mid-run took part (it gets users when Locust rebalances, which a loaded
    # machine may leave until after the end: its turns are in the survivors' count above when it did).
    assert summary["run"]["workers"] == 3
    run_dir = run.report_dir / "latest"
    assert "incomplete" in (run_dir / "summary.md").read_text(encoding="utf-8").splitlines()[0].lower()
    junit = (run_dir / "junit.xml").read_text(encoding="utf-8")
    assert 'name="workers_lost"' in junit and "<failure" in junit
    assert "INCOMPLETE" in (run_dir / "report.html").read_text(encoding="utf-8")


@background
def master_sigterm_run(folder: Path) -> Finish:
    """A master and one worker, `-t 60s`, the master stopped with SIGTERM once turns flow."""
    mock = start_background_mock(*FAST)
    cluster = _cluster(folder, mock.url, workers=1, run_time="60s")
    cluster.when_turns(1, "kill", "-TERM", str(cluster.master.pid))

    def finish() -> tuple[LocustRun, dict[int, int], dict[str, Any]]:
        try:
            run = cluster.finish()
            return run, _turn_logs(cluster.report_dir), mock.stats()
        finally:
            mock.process.stop()

    return finish


def test_sigterm_on_the_master_still_collects_every_turn_of_its_workers(
    master_sigterm_run: tuple[LocustRun, dict[int, int], dict[str, Any]],
) -> None:
    run, logged, served = master_sigterm_run
    summary = run.summary()
    assert (run.returncode, summary["verdict"]) == (5, "incomplete"), run.stderr[-3000:]
    assert summary["run"]["stopped_by"] == "signal" and summary["run"]["signal"] == "SIGTERM"
    assert "workers_lost" not in summary["run"] and "workers_without_final_report" not in summary["run"]
    counts = summary["counts"]
    assert counts["turns"] == sum(logged.values()) > 0
    assert counts["turns_ok"] + counts["turns_failed"] <= served["turns"]


@background
def master_killed_run(folder: Path) -> Finish:
    """The master killed with SIGKILL mid-run: its worker (with Locust's master heartbeat timeout cut to
    2 s by a test locustfile, as 60 s is too long for a test) must not go on alone."""
    mock = start_background_mock(*FAST)
    cluster = _cluster(folder, mock.url, workers=1, run_time="60s", worker_file=SHORT_HEARTBEAT)
    [worker] = cluster.workers
    cluster.when_turns(1, "kill", "-9", str(cluster.master.pid))

    def finish() -> tuple[int | None, str]:
        try:
            # The master's -t is 60 s: a worker that ends well before that ended for want of its master.
            returncode = worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                cluster.finish()
            mock.process.stop()
        return returncode, (folder / "worker0" / "stderr").read_text()

    return finish


def test_a_worker_does_not_outlive_its_master(master_killed_run: tuple[int | None, str]) -> None:
    returncode, stderr = master_killed_run
    assert returncode is not None, "the worker still ran long after its master was killed"
    assert "Didn't get heartbeat from master" in stderr
