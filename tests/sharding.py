"""The suite in shards: `python -m tests.sharding` (what `make test` runs) runs the tests on two
processes at once, each a plain pytest over half of them (`--shard I/N`), then the timing and alone
tests on one process, with the machine quiet.

A shard keeps every test that reads a background run (tests/conftest.py) with the run, so each run
goes on once, in one process, beside that process's other tests; the other tests are shared out file by
file. Plain processes rather than pytest-xdist: its workers take their tests from a thread of execnet's,
and in a process that Locust has patched for gevent one of them crashed in the garbage collector.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

SHARDS = 2
LAST = "timing or alone"
# A test that starts processes of its own weighs this many quick ones in the share-out.
_PROCESS_WEIGHT = 10
_PROCESS_FIXTURES = frozenset({"run_locust", "in_process", "mock_server", "thread_mock"})


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` as (I, N), 0 <= I < N."""
    try:
        index, _, count = text.partition("/")
        shard = int(index), int(count)
    except ValueError:
        raise pytest.UsageError(f"--shard takes I/N, e.g. 0/2 (got {text!r})") from None
    if not 0 <= shard[0] < shard[1]:
        raise pytest.UsageError(f"--shard I/N needs 0 <= I < N (got {text!r})")
    return shard


def shard_of(items: Sequence[pytest.Item], reads: Callable[[pytest.Item], set[str]], count: int) -> list[int]:
    """The shard of each item: the readers of the background runs that any one test reads together go
    to one shard; then whole files, the heaviest first, each to the lightest shard so far."""
    group = {name: name for item in items for name in reads(item)}

    def root(name: str) -> str:
        while group[name] != name:
            name = group[name]
        return name

    for item in items:
        first, *rest = sorted(reads(item)) or [""]
        for name in rest:
            group[root(name)] = root(first)
    # What goes to a shard whole: a group of background runs with their readers, or a file.
    keys = [
        f"run:{root(min(names))}" if (names := reads(item)) else f"file:{item.nodeid.split('::')[0]}"
        for item in items
    ]
    weight: collections.Counter[str] = collections.Counter()
    for item, key in zip(items, keys, strict=True):
        fixtures = set(getattr(item, "fixturenames", ()))
        weight[key] += _PROCESS_WEIGHT if fixtures & _PROCESS_FIXTURES else 1
    load = [0] * count
    shard_of_key: dict[str, int] = {}
    for key, w in sorted(weight.items(), key=lambda pair: (-pair[1], pair[0])):
        shard_of_key[key] = load.index(min(load))
        load[shard_of_key[key]] += w
    return [shard_of_key[key] for key in keys]


def main(args: Sequence[str]) -> int:
    """Run the shards side by side, print what each wrote, then the timing and alone tests."""
    pytest_argv = [sys.executable, "-m", "pytest", *args]
    with tempfile.TemporaryDirectory(prefix="loadtest-shards-") as tmp:
        logs = [Path(tmp) / f"shard-{i}.log" for i in range(SHARDS)]
        running = []
        for i, log in enumerate(logs):
            with log.open("wb") as out:
                argv = [*pytest_argv, f"--shard={i}/{SHARDS}", "-m", f"not ({LAST})"]
                running.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT))
        codes = [process.wait() for process in running]
        for i, (log, code) in enumerate(zip(logs, codes, strict=True)):
            print(f"--- shard {i + 1} of {SHARDS} (exit {code}) ---", flush=True)
            sys.stdout.buffer.write(log.read_bytes())
            sys.stdout.flush()
    print(f"--- the {LAST} tests ---", flush=True)
    codes.append(subprocess.call([*pytest_argv, "-m", LAST]))
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
