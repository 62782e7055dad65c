"""Real processes for end-to-end tests: the mock server and `locust` itself, on 127.0.0.1."""

from __future__ import annotations

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

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "locustfiles" / "chat.py"
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
        process.stop()


def locust_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NLX_", "LOADTEST_", "LOCUST_"))}
    env.update(extra)
    return env


KEYED = locust_env(NLX_API_KEY=TEST_KEY)


@pytest.fixture
def run_locust(tmp_path: Path) -> Callable[..., LocustRun]:
    def run(cmdline: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> LocustRun:
        """Run `locust --headless` with the options in `cmdline` (split like a shell), then `args`."""
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
        )
        return LocustRun(proc.returncode, proc.stdout, proc.stderr, report_dir)

    return run
