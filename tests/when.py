"""Run a command once a run has logged enough turns: `python tests/when.py GLOB N TIMEOUT -- CMD...`.

Background runs (tests/conftest.py) start with the test session, but the test that reads one may come
minutes later: an action that must land mid-run (a signal, a killed worker) cannot wait for it. This
process watches the turn logs matching GLOB (relative to the working directory) and, once they hold N
lines in all, replaces itself with CMD; after TIMEOUT seconds without them it exits 3.
"""

from __future__ import annotations

import glob
import os
import sys
import time


def logged(pattern: str) -> int:
    total = 0
    for path in glob.glob(pattern):
        with open(path, "rb") as file:
            total += file.read().count(b"\n")
    return total


def main() -> None:
    pattern, lines, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    command = sys.argv[sys.argv.index("--") + 1 :]
    deadline = time.monotonic() + timeout
    while logged(pattern) < lines:
        if time.monotonic() > deadline:
            print(f"when: {pattern} did not reach {lines} lines in {timeout:.0f} s", file=sys.stderr)
            sys.exit(3)
        time.sleep(0.05)  # between polls of the condition
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
