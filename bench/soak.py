"""Soak: long runs against the built-in mock with faults on; memory must stay flat.

    python bench/soak.py                 # 30 minutes (make soak)
    python bench/soak.py --minutes 4     # a short look

Two runs side by side, each with its own mock: a local run (one process generates the load and keeps
the figures) and a distributed one (`--processes 1`: a master that keeps the figures and one worker
that generates the load). Every `--sample-seconds` it prints the resident memory of the local
process, the master, the worker and the local run's mock; at the end, after a warm-up, the slope of a
least-squares line through each one's samples is its growth in MB a minute, judged against `BOUNDS`.
Exit code 1 when one grew faster than its bound.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.calibrate import sample_process

ROOT = Path(__file__).resolve().parents[1]
LOCUST = str(Path(sys.executable).with_name("locust"))
FAULTS = "http_500=2%,http_429=2%,truncate=1%,stall=0.5%,bad_json=0.5%,error_event=1%,reset=0.5%"
# Reached within the warm-up at the soak's pace (about 28 turns a second, 4 turns a conversation), so
# the mock's memory is judged once it holds all it may.
MOCK_MAX_CONVERSATIONS = 1000
MB = 1_000_000

# Allowed growth in MB a minute, and why: what a run must keep to its end, and room for the
# allocator's noise over 25 minutes of samples (the worker, which keeps nothing, measured -0.035 and
# +0.024 in two soaks).
#   The local process and the master hold the statistics: a point of Locust's charts every 5 s (1 KB:
#   12 KB a minute) and of loadtest's time series (340 bytes with the users: 4 KB a minute). Locust's
#   per-second counts of each request name are cut to their last 30 s (loadtest.trim). About 0.02 MB
#   a minute; measured +0.043 (local) and +0.025 (master).
#   The worker ships its figures every 3 s and keeps none of them.
#   The mock keeps at most MOCK_MAX_CONVERSATIONS conversations and its pool of reply texts, both
#   full within the warm-up; with its garbage collector off, a closed connection leaves about a
#   kilobyte (asyncio's transport holds itself through a bound method), and the faults close about
#   35 connections a minute here: about 0.04 MB a minute, measured +0.044.
BOUNDS = {"local": 0.10, "master": 0.10, "worker": 0.05, "mock": 0.10}


@dataclass
class Watched:
    """One process sampled: its pid once found, and (seconds since the start, RSS bytes) samples."""

    name: str
    pid: int | None = None
    samples: list[tuple[float, int]] = field(default_factory=list)

    def sample(self, elapsed_s: float) -> int | None:
        found = sample_process(self.pid) if self.pid is not None else None
        if found is None or found.rss_bytes == 0:
            return None
        self.samples.append((elapsed_s, found.rss_bytes))
        return found.rss_bytes

    def judged(self, warmup_s: float, end_s: float) -> list[tuple[float, int]]:
        return [(t, rss) for t, rss in self.samples if warmup_s <= t <= end_s]

    def growth_mb_per_min(self, warmup_s: float, end_s: float) -> float | None:
        """The slope of the least-squares line through the samples from the warm-up to `end_s`, in
        MB a minute."""
        warm = self.judged(warmup_s, end_s)
        if len(warm) < 6:
            return None
        slope, _ = statistics.linear_regression([t for t, _ in warm], [rss for _, rss in warm])
        return slope * 60 / MB


def locust_command(args: argparse.Namespace, reports: str, *extra: str) -> list[str]:
    run_s = int(args.minutes * 60)
    return [
        LOCUST, "-f", str(ROOT / "locustfiles" / "chat.py"), "--headless", "--only-summary",
        "-u", str(args.users), "-r", str(args.users), "-t", f"{run_s}s", "--think-time", "0.5-2",
        "--on-turn-error", "continue", "--read-timeout", "2", "--report-dir", reports,
        "--mock-options", f"--faults {FAULTS} --stall-seconds 5 --ttft lognormal:200ms:0.3 "
        f"--max-conversations {MOCK_MAX_CONVERSATIONS}",
        *extra,
    ]  # fmt: skip


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append((int(stat.parent.name), (stat.parent / "cmdline").read_bytes().decode()))
    return found


def find_pids(
    local: subprocess.Popen[str], master: subprocess.Popen[str], watched: dict[str, Watched]
) -> None:
    """The worker is forked by the master (the same command line); the mock runs `-m loadtest.mock`."""
    if watched["worker"].pid is None:
        own = Path(f"/proc/{master.pid}/cmdline").read_bytes().decode() if master.poll() is None else ""
        watched["worker"].pid = next((pid for pid, cmd in children(master.pid) if cmd == own), None)
    if watched["mock"].pid is None:
        watched["mock"].pid = next((pid for pid, cmd in children(local.pid) if "loadtest.mock" in cmd), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def turns_line(log: Path) -> str:
    """The run's `turns ...` line (how many turns, failed, conversations) from its stderr."""
    return next((line for line in log.read_text().split("\n") if line.startswith("turns ")), "no summary")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--users", type=int, default=50, help="users of each run (default: 50)")
    parser.add_argument("--sample-seconds", type=float, default=30.0)
    parser.add_argument(
        "--warmup-minutes",
        type=float,
        help="judge the samples after this (default: 5, or a sixth of a shorter run)",
    )
    ns = parser.parse_args()
    warmup_s = 60 * (ns.warmup_minutes if ns.warmup_minutes is not None else min(5.0, ns.minutes / 6))
    watched = {name: Watched(name) for name in BOUNDS}
    with tempfile.TemporaryDirectory() as reports:
        logs = {name: Path(reports) / f"{name}.log" for name in ("local", "distributed")}
        with logs["local"].open("w") as local_log, logs["distributed"].open("w") as distributed_log:
            # stderr goes to files: a pipe nobody reads for 30 minutes would fill and block locust.
            local = subprocess.Popen(
                locust_command(ns, reports), stdout=subprocess.DEVNULL, stderr=local_log, text=True
            )
            # A port of its own: another distributed run on this machine may hold Locust's 5557.
            port = str(free_port())
            master = subprocess.Popen(
                locust_command(
                    ns, reports, "--processes", "1", "--master-bind-port", port, "--master-port", port
                ),
                stdout=subprocess.DEVNULL,
                stderr=distributed_log,
                text=True,
            )
            watched["local"].pid, watched["master"].pid = local.pid, master.pid
            sample_until_done(local, master, watched, ns.sample_seconds)
        for name, log in logs.items():
            print(f"{name}: {turns_line(log)}")
    # Up to the planned end: writing the outputs afterwards takes memory for a moment.
    return judge(watched, warmup_s, ns.minutes * 60 - ns.sample_seconds / 2)


def sample_until_done(
    local: subprocess.Popen[str], master: subprocess.Popen[str], watched: dict[str, Watched], every_s: float
) -> None:
    """Sample and print every process's memory every `every_s` until both runs have ended."""
    start = time.monotonic()
    print(f"{'minute':>8}" + "".join(f"{name + ' MB':>12}" for name in watched))
    while local.poll() is None or master.poll() is None:
        find_pids(local, master, watched)
        elapsed = time.monotonic() - start
        rss = [w.sample(elapsed) for w in watched.values()]
        print(
            f"{elapsed / 60:>8.1f}" + "".join(f"{r / MB:>12.1f}" if r else f"{'-':>12}" for r in rss),
            flush=True,
        )
        next_sample = start + elapsed + every_s
        while (local.poll() is None or master.poll() is None) and time.monotonic() < next_sample:
            time.sleep(0.5)


def judge(watched: dict[str, Watched], warmup_s: float, end_s: float) -> int:
    """Print each process's growth against its bound; 1 if one grew faster, else 0."""
    print(f"growth after {warmup_s / 60:g} minutes of warm-up, MB a minute (bound):")
    growing = []
    for name, w in watched.items():
        growth = w.growth_mb_per_min(warmup_s, end_s)
        if growth is None:
            print(f"  {name}: too few samples to judge: run longer")
            continue
        verdict = "flat" if growth <= BOUNDS[name] else "GROWING"
        judged = w.judged(warmup_s, end_s)
        first, last = judged[0][1] / MB, judged[-1][1] / MB
        print(f"  {name}: {growth:+.3f} ({BOUNDS[name]:g}), {first:.1f} to {last:.1f} MB: {verdict}")
        if verdict != "flat":
            growing.append(name)
    return 1 if growing else 0


if __name__ == "__main__":
    raise SystemExit(main())
