"""Start the mock server in a child process and learn its URL from its first line of output.

The child's stderr comes through a pipe: when it cannot start, its one error line (`ERROR_PREFIX`)
becomes the ConfigError raised here, so the program that started it says it once, in its own words;
once it runs, a thread passes whatever it writes there on to this process's stderr.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from loadtest.errors import ConfigError, LoadtestError
from loadtest.mock.contract import ERROR_PREFIX, READY_PREFIX


@dataclass
class MockProcess:
    url: str
    process: subprocess.Popen[str]
    stderr_relay: threading.Thread | None = None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.stderr_relay is not None:
            # The pipe ends with the process: whatever it wrote last is out before stop returns.
            self.stderr_relay.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_mock(args: Sequence[str] | str = (), *, env: Mapping[str, str] | None = None) -> MockProcess:
    """Run `python -m loadtest.mock --port 0 ARGS` and wait until it says where it listens.

    ConfigError with the mock's own message when it refuses its options or address; LoadtestError
    when it fails otherwise (what it printed goes to stderr first).
    """
    argv = shlex.split(args) if isinstance(args, str) else list(args)
    process = subprocess.Popen(
        [sys.executable, "-m", "loadtest.mock", "--host", "127.0.0.1", "--port", "0", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ if env is None else env),
    )
    assert process.stdout is not None and process.stderr is not None
    line = process.stdout.readline()
    if not line.startswith(READY_PREFIX):
        raise _start_failure(process, line)
    relay = threading.Thread(target=_relay, args=(process.stderr,), name="loadtest-mock-stderr", daemon=True)
    relay.start()
    return MockProcess(url=line[len(READY_PREFIX) :].strip(), process=process, stderr_relay=relay)


def _relay(stream: IO[str]) -> None:
    with stream:
        for line in stream:
            sys.stderr.write(line)
            sys.stderr.flush()


def _start_failure(process: subprocess.Popen[str], line: str) -> LoadtestError:
    """The error for a mock that did not print its ready line; the process is gone afterwards."""
    if line:  # it printed something else and may still be running: it is of no use
        process.kill()
    assert process.stdout is not None and process.stderr is not None
    with process.stdout, process.stderr:
        err = process.stderr.read()
    process.wait()
    *before, last = err.rstrip("\n").split("\n")
    if last.startswith(ERROR_PREFIX):
        sys.stderr.write("".join(f"{text}\n" for text in before))
        return ConfigError(f"the built-in mock: {last.removeprefix(ERROR_PREFIX)}")
    sys.stderr.write(err)
    said = f": {line.strip()}" if line.strip() else ""
    return LoadtestError(f"the mock server did not start (exit code {process.returncode}){said}")
