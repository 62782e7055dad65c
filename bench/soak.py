"""Soak: a long run against the built-in mock with faults on; the generator's memory must stay flat.

    python bench/soak.py                 # 30 minutes (make soak)
    python bench/soak.py --minutes 3     # a short look

Prints the generator's resident memory every `--sample-seconds`, then compares the last third of the
run with the first third after warm-up; exits 1 when memory grew by more than `--max-growth`.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loadtest.calibrate import sample_process

ROOT = Path(__file__).resolve().parents[1]
LOCUST = str(Path(sys.executable).with_name("locust"))
FAULTS = "http_500=2%,http_429=2%,truncate=1%,stall=0.5%,bad_json=0.5%,error_event=1%,reset=0.5%"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--sample-seconds", type=float, default=30.0)
    parser.add_argument("--max-growth", type=float, default=0.10, help="allowed growth, a fraction (0.10)")
    ns = parser.parse_args()
    run_s = int(ns.minutes * 60)
    with tempfile.TemporaryDirectory() as reports:
        cmd = [
            LOCUST, "-f", str(ROOT / "locustfiles" / "chat.py"), "--headless", "--only-summary",
            "-u", str(ns.users), "-r", str(ns.users), "-t", f"{run_s}s", "--think-time", "0.5-2",
            "--on-turn-error", "continue", "--read-timeout", "2", "--report-dir", reports,
            "--mock-options", f"--faults {FAULTS} --stall-seconds 5 --ttft lognormal:200ms:0.3",
        ]  # fmt: skip
        # stderr goes to a file: a pipe nobody reads for 30 minutes would fill and block locust.
        log_path = Path(reports) / "locust.log"
        log = log_path.open("w")
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True)
        samples: list[tuple[float, int]] = []
        start = time.monotonic()
        print(f"{'minute':>8}{'rss MiB':>10}")
        while proc.poll() is None:
            sample = sample_process(proc.pid)
            if sample is None:
                break
            rss = sample.rss_bytes // 1024
            elapsed = time.monotonic() - start
            samples.append((elapsed, rss))
            print(f"{elapsed / 60:>8.1f}{rss / 1024:>10.1f}", flush=True)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=ns.sample_seconds)
        log.close()
        stderr = log_path.read_text()
        summary_lines = [
            line for line in stderr.split("\n") if line.startswith(("turns ", "error ", "summary:"))
        ]
        print("\n".join(summary_lines))
    warm = [rss for t, rss in samples if t > run_s * 0.1]
    if len(warm) < 6:
        print("too few samples to judge: run longer")
        return 0
    third = len(warm) // 3
    first, last = statistics.fmean(warm[:third]), statistics.fmean(warm[-third:])
    growth = (last - first) / first
    verdict = "flat" if growth <= ns.max_growth else "GROWING"
    print(f"memory: first third {first / 1024:.1f} MiB, last third {last / 1024:.1f} MiB", end=", ")
    print(f"{growth:+.1%}: {verdict}")
    return 0 if growth <= ns.max_growth else 1


if __name__ == "__main__":
    raise SystemExit(main())
