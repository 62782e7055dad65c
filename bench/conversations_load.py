"""Load time and memory of a large transcripts file: what a run pays before its users start.

    python bench/conversations_load.py [--transcripts 100000] [--keep FILE | --file FILE]

Writes a JSONL of N transcripts of 5 user and 5 assistant turns (about 1.4 KB a line, like
locustfiles/transcripts.jsonl, in 20 groups, one user message in ten a common one such as "thanks")
to a temporary folder (or reads FILE with --file), then loads it in a fresh Python process for each
way a run reads it, and prints the time (and the CPU time, which other processes on a busy machine
change less) and the resident memory (RSS before and after, and the process's peak):

  - full: `load_scenarios`, what a local run or a worker holds for its users;
  - outline: `scenario_outline`, the whole file checked but only names and sizes kept (a master);
  - preload: `preload` in gevent's threadpool, with a greenlet ticking every 10 ms meanwhile: the
    longest gap between ticks says whether the event loop (Locust's heartbeats) kept running.

Goal for 100,000 transcripts (about 141 MB): under 3 s and under 300 MB for `full`, under 50 MB
above the interpreter's own for `outline`.
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GROUPS = 20
USER_TURNS = 5
COMMON = ["yes", "no", "thanks", "ok", "hi", "thank you!", "that's all", "great, thanks"]
WORDS = [
    "order",
    "parcel",
    "refund",
    "delivery",
    "address",
    "invoice",
    "account",
    "password",
    "card",
    "payment",
    "shoes",
    "jacket",
    "size",
    "return",
    "exchange",
    "week",
    "today",
    "tomorrow",
    "please",
    "could",
    "would",
    "where",
    "when",
    "why",
    "how",
    "my",
    "the",
    "a",
    "an",
    "is",
    "it",
    "not",
    "yet",
    "still",
    "again",
    "since",
    "last",
    "next",
    "days",
    "number",
    "tracking",
    "email",
    "phone",
    "store",
    "open",
    "hours",
    "change",
    "cancel",
]
MODES = ("full", "outline", "preload")


def sentence(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < chars:
        words.append(rng.choice(WORDS))
    return " ".join(words).capitalize() + rng.choice(".?!")


def transcript(rng: random.Random, index: int) -> bytes:
    messages = []
    for _ in range(USER_TURNS):
        user = rng.choice(COMMON) if rng.random() < 0.1 else sentence(rng, rng.randint(40, 140))
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": sentence(rng, rng.randint(80, 160))})
    line = {"id": f"t-{index:07d}", "scenario": f"group{index % GROUPS:02d}", "messages": messages}
    return orjson.dumps(line) + b"\n"


def write_file(path: Path, count: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with path.open("wb") as file:
        for index in range(count):
            file.write(transcript(rng, index))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    # Linux reports ru_maxrss in kilobytes.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(path: Path, mode: str) -> None:
    """In a fresh process: load `path` as `mode` does and print one line of figures."""
    if mode == "preload":
        import gevent

    from loadtest import conversation

    before = rss_mb()
    gaps = ""
    start, cpu = time.perf_counter(), time.process_time()
    if mode == "full":
        held: object = conversation.load_scenarios(path)
    elif mode == "outline":
        held = conversation.scenario_outline(path)
    else:
        ticks: list[float] = []

        def tick() -> None:
            while True:
                ticks.append(time.perf_counter())
                gevent.sleep(0.01)

        ticker = gevent.spawn(tick)
        gevent.sleep(0)
        conversation.preload(path)
        ticker.kill()
        held = conversation.load_scenarios(path)
        longest = max((b - a for a, b in zip(ticks, ticks[1:], strict=False)), default=float("nan"))
        gaps = f", {len(ticks)} ticks, longest gap {longest * 1000:.0f} ms"
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    after = rss_mb()
    assert held
    print(
        f"{mode:8s} {seconds:5.2f} s (CPU {cpu:4.2f} s)  RSS {before:5.0f} -> {after:5.0f} MB "
        f"(+{after - before:.0f})  peak {peak_mb():5.0f} MB{gaps}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transcripts", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, default=None, help="write the file here and keep it")
    parser.add_argument("--file", type=Path, default=None, help="measure this file instead of writing one")
    parser.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, default="full", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        measure(args.measure, args.mode)
        return
    with tempfile.TemporaryDirectory() as folder:
        path = args.file or args.keep or Path(folder) / "transcripts.jsonl"
        if args.file is None:
            write_file(path, args.transcripts)
            print(f"{args.transcripts:,} transcripts of {USER_TURNS} user turns")
        print(f"{path.name}: {path.stat().st_size / 1e6:.0f} MB")
        for mode in MODES:
            command = [sys.executable, __file__, "--measure", str(path), "--mode", mode]
            subprocess.run(command, check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
