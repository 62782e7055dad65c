"""Processes for end-to-end tests, on 127.0.0.1: the mock server, `locust` itself, and the one standard
`locust` run that the tests which only read a run's outputs share; runs in this process (tests/harness.py).

Locust is imported first: it patches the test process for gevent, and this way it does so before
anything else opens sockets or starts threads, whichever test file is collected first.
"""

from __future__ import annotations

# ruff: noqa: I001  (locust is imported first on purpose)

import locust  # noqa: F401  (first: gevent patches the process before httpx is imported)

import contextlib
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from loadtest.mock.launch import MockProcess, start_mock
from tests.harness import LOCUSTFILE, ROOT, Run, Until, run_in_process  # noqa: F401  (ROOT: for other tests)
from tests.mockthread import ThreadedMock, mock_in_thread

LOCUST = str(Path(sys.executable).with_name("locust"))
TEST_KEY = "test-key-9f3a71c2"
# A quick mock for end-to-end runs, the NLX options that go with it, and an environment with the key.
FAST = ("--ttft", "uniform:20ms:40ms", "--itl", "uniform:1ms:5ms", "--chunks", "uniform:2:8")
NLX = "--nlx-deployment dep1 --nlx-channel web-en-US"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LocustRun:
    returncode: int
    stdout: str
    stderr: str
    report_dir: Path

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def summary(self) -> dict[str, Any]:
        path = self.report_dir / "latest" / "summary.json"
        assert path.exists(), f"no summary.json; locust said:\n{self.output[-3000:]}"
        data: dict[str, Any] = orjson.loads(path.read_bytes())
        return data


class Mock:
    def __init__(self, process: MockProcess) -> None:
        self.process = process
        self.url = process.url

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(self.url + "/_mock/stats", timeout=10).json()
        return data

    def conversation(self, cid: str) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(f"{self.url}/_mock/conversations/{cid}", timeout=10).json()
        return data


@pytest.fixture
def mock_server() -> Iterator[Callable[..., Mock]]:
    started: list[MockProcess] = []

    def start(*args: str, api_key: str = TEST_KEY) -> Mock:
        env = dict(os.environ, NLX_API_KEY=api_key)
        process = start_mock(list(args), env=env)
        started.append(process)
        return Mock(process)

    yield start
    for process in started:
        # Nothing is read from it any more: no need to let open streams drain for a second.
        process.process.kill()
        process.stop()


@pytest.fixture
def thread_mock() -> Iterator[Callable[..., ThreadedMock]]:
    """Like `mock_server`, in a thread of this process: for in-process runs that check what was served,
    not timing (the mock shares the interpreter with the run), it starts in milliseconds."""
    with contextlib.ExitStack() as stack:

        def start(*args: str, api_key: str = TEST_KEY) -> ThreadedMock:
            return stack.enter_context(mock_in_thread(*args, api_key=api_key))

        yield start


def locust_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NLX_", "LOADTEST_", "LOCUST_")) and k != "GITHUB_STEP_SUMMARY"
    }
    env.update(extra)
    return env


KEYED = locust_env(NLX_API_KEY=TEST_KEY)


@pytest.fixture
def run_locust(tmp_path: Path) -> Callable[..., LocustRun]:
    def run(
        cmdline: str,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        cpu: int | None = None,
    ) -> LocustRun:
        """Run `locust --headless` with the options in `cmdline` (split like a shell), then `args`;
        on CPU `cpu` alone when one is given."""
        report_dir = tmp_path / "reports"
        cmd = [LOCUST, "-f", str(LOCUSTFILE), "--headless", "--only-summary", "--report-dir", str(report_dir)]
        cmd += [*shlex.split(cmdline), *args]
        proc = subprocess.run(
            cmd,
            env=locust_env() if env is None else env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            preexec_fn=None if cpu is None else lambda: os.sched_setaffinity(0, {cpu}),
        )
        return LocustRun(proc.returncode, proc.stdout, proc.stderr, report_dir)

    return run


@pytest.fixture
def in_process(tmp_path: Path) -> Callable[..., Run]:
    """Run like `run_locust`, in this process (tests/harness.py), until a condition holds."""

    def run(
        cmdline: str, *args: str, until: Until, env: dict[str, str] | None = None, timeout: float = 30
    ) -> Run:
        argv = [*shlex.split(cmdline), *args]
        return run_in_process(argv, report_dir=tmp_path / "reports", until=until, env=env, timeout=timeout)

    return run


# The standard run: one real `locust --headless` whose outputs every reading test shares. It has what
# they look for: two scenarios, the key in the environment (a realistic one, for the secrets test),
# a turn log and DEBUG logging, and the mock rejects a fifth of the requests with 401, so the run has
# failed turns and its error-rate threshold fails: verdict fail, exit code 3, beside one that passes.
STANDARD_KEY = "sk-nlx-4f1c9e8a7b6d5c4b3a2f1e0d"
STANDARD_THRESHOLDS = ("ttft.p95<5s", "error_rate<1%")
STANDARD_FAILING = "error_rate<1%"
STANDARD_SCENARIOS = (
    "scenarios:\n"
    "  - name: greeting\n"
    "    turns: [hello, 'how are you?']\n"
    "  - name: order\n"
    "    turns: ['where is my order?', 'it is 58213', thanks]\n"
)


@dataclass
class StandardRun(LocustRun):
    mock_stats: dict[str, Any]  # what the mock served, read when the run had ended
    step_summary: Path  # $GITHUB_STEP_SUMMARY, in the report folder


@pytest.fixture(scope="session")
def standard_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandardRun]:
    folder = tmp_path_factory.mktemp("standard")
    scenarios = folder / "scenarios.yaml"
    scenarios.write_text(STANDARD_SCENARIOS, encoding="utf-8")
    report_dir = folder / "reports"
    step_summary = report_dir / "step_summary.md"  # in the folder, so the secrets test reads it too
    process = start_mock([*FAST, "--fault", "http_401=20%"], env=dict(os.environ, NLX_API_KEY=STANDARD_KEY))
    try:
        options = (
            f"--host {process.url} {NLX} -u 4 -r 4 -t 4s --think-time 0 --stop-timeout 30"
            " --turn-log --loglevel DEBUG"
        )
        cmd = [LOCUST, "-f", str(LOCUSTFILE), "--headless", "--only-summary", "--report-dir", str(report_dir)]
        cmd += [*shlex.split(options), "--conversations", str(scenarios)]
        for expr in STANDARD_THRESHOLDS:
            cmd += ["--threshold", expr]
        env = locust_env(NLX_API_KEY=STANDARD_KEY, GITHUB_STEP_SUMMARY=str(step_summary))
        proc = subprocess.run(
            cmd, env=env, cwd=folder, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
        stats = Mock(process).stats()
    finally:
        process.stop()
    yield StandardRun(proc.returncode, proc.stdout, proc.stderr, report_dir, stats, step_summary)
