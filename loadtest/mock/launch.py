"""Start the mock server in a child process and learn its URL from its first line of output."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from loadtest.errors import LoadtestError
from loadtest.mock.contract import READY_PREFIX


@dataclass
class MockProcess:
    url: str
    process: subprocess.Popen[str]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_mock(args: Sequence[str] | str = (), *, env: Mapping[str, str] | None = None) -> MockProcess:
    """Run `python -m loadtest.mock --port 0 ARGS` and wait until it says where it listens."""
    argv = shlex.split(args) if isinstance(args, str) else list(args)
    process = subprocess.Popen(
        [sys.executable, "-m", "loadtest.mock", "--host", "127.0.0.1", "--port", "0", *argv],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ if env is None else env),
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(READY_PREFIX):
        process.kill()
        process.wait()
        raise LoadtestError(f"the mock server did not start (exit code {process.returncode}): {line.strip()}")
    return MockProcess(url=line[len(READY_PREFIX) :].strip(), process=process)
