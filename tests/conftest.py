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
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import gevent
import httpx
import orjson
import pytest
from gevent.event import AsyncResult
from gevent.lock import BoundedSemaphore

from loadtest.mock.launch import MockProcess, start_mock
from tests.harness import CLEARED, CLEARED_PREFIXES, LOCUSTFILE, ROOT, Run, Until, run_in_process, wait_for  # noqa: F401  (ROOT: for other tests)
from tests import sharding
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
    """This process's environment without what configures loadtest or Locust (as in-process runs
    clear it: tests/harness.py), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED_PREFIXES) and k not in CLEARED}
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


# --- real runs that tests only read: started with the session, beside the in-process tests ------------

# A background run: given its own folder, it starts its processes and returns what waits for them.
Finish = Callable[[], Any]
T = TypeVar("T")
_STARTERS: dict[str, Callable[[Path], Finish]] = {}
_RESULTS: dict[str, AsyncResult] = {}
_FOLDERS: list[Path] = []
_LEFT_RUNNING: list[subprocess.Popen[Any]] = []
# How many background runs go on at once. Each is a few processes that import Locust (1.4 s of CPU
# each) and then mostly wait: a few at a time keep the CPU that the tests in this process leave busy,
# where all at once would hold those tests up at the start and leave that CPU idle later on.
AT_ONCE = 2


def background(starter: Callable[[Path], Finish]) -> Any:
    """Make `starter` a session fixture of the same name whose run goes on in a greenlet of this process
    once the session has collected a test that reads it, a few at a time (`AT_ONCE`), while other tests
    run; each run is waited for as soon as it ends, and a test that reads it gets its result then."""
    name = starter.__name__
    _STARTERS[name] = starter

    @pytest.fixture(scope="session", name=name)
    def fixture() -> Any:
        return finish_background(name)

    return fixture


def _run_background(name: str) -> None:
    """Start the run and wait for its end; every reader gets its result, or fails the same way without
    running it again."""
    result = _RESULTS[name]
    try:
        folder = Path(tempfile.mkdtemp(prefix=f"loadtest-{name}-"))
        _FOLDERS.append(folder)
        result.set(_STARTERS[name](folder)())
    except BaseException as exc:
        result.set_exception(exc)


def _run_all_background(names: list[str]) -> None:
    slots = BoundedSemaphore(AT_ONCE)
    for name in names:
        slots.acquire()
        gevent.spawn(_run_background, name).link(lambda _: slots.release())


def finish_background(name: str) -> Any:
    if name not in _RESULTS:  # not collected with the session: run it now
        _RESULTS[name] = AsyncResult()
        gevent.spawn(_run_background, name)
    return _RESULTS[name].get()


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    wanted = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    names = [name for name in _STARTERS if name in wanted and name not in _RESULTS]
    for name in names:
        _RESULTS[name] = AsyncResult()
    gevent.spawn(_run_all_background, names)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--shard", default=None, metavar="I/N", help="run shard I of N only (tests/sharding.py)")


def _reads_background(item: pytest.Item) -> set[str]:
    return {name for name in getattr(item, "fixturenames", ()) if name in _STARTERS}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    shard = config.getoption("shard")
    if shard is not None:
        index, count = sharding.parse_shard(shard)
        shards = sharding.shard_of(items, _reads_background, count)
        config.hook.pytest_deselected(
            items=[item for item, s in zip(items, shards, strict=True) if s != index]
        )
        items[:] = [item for item, s in zip(items, shards, strict=True) if s == index]

    # The readers of background runs come after the other tests, so their runs have had all that time
    # to end; timing tests run last, once every background run has ended: on a machine as quiet as it
    # gets.
    def order(item: pytest.Item) -> tuple[bool, bool]:
        return _runs_last(item), bool(_reads_background(item))

    items.sort(key=order)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if _runs_last(item):
        _wait_for_background()
    else:
        # Between tests, the greenlets of the background runs get their turn: start the next run, wait
        # for one that ended, even after a test that never waited on anything.
        gevent.sleep(0)


def _runs_last(item: pytest.Item) -> bool:
    """Timing tests, and those that must not have a background run's greenlets beside them (`alone`)."""
    return any(item.get_closest_marker(name) is not None for name in ("timing", "alone"))


def _wait_for_background() -> None:
    for result in list(_RESULTS.values()):
        result.wait()


def stop_at_session_end(process: subprocess.Popen[Any]) -> None:
    """For a process that a background run leaves running for the test that reads it (a web UI that
    waits for its clicks): killed at the end of the session if that test did not stop it."""
    _LEFT_RUNNING.append(process)


def pytest_sessionfinish() -> None:
    _wait_for_background()
    for process in _LEFT_RUNNING:
        if process.poll() is None:
            process.kill()
            process.wait()
    for folder in _FOLDERS:
        shutil.rmtree(folder, ignore_errors=True)


def start_locust(
    args: list[str],
    folder: Path,
    *,
    env: dict[str, str],
    locustfile: Path = LOCUSTFILE,
    headless: bool = True,
    report_dir: Path | None = None,
) -> Callable[[], LocustRun]:
    """Start `locust -f LOCUSTFILE --headless ARGS` with its output in `folder` (files, not pipes:
    nobody reads a pipe while the run goes on), and its report folder there unless given; the result
    waits for its end."""
    proc, report_dir = popen_locust(
        args, folder, env=env, locustfile=locustfile, headless=headless, report_dir=report_dir
    )
    return lambda: wait_locust(proc, folder, report_dir)


def popen_locust(
    args: list[str],
    folder: Path,
    *,
    env: dict[str, str],
    locustfile: Path = LOCUSTFILE,
    headless: bool = True,
    report_dir: Path | None = None,
) -> tuple[subprocess.Popen[str], Path]:
    folder.mkdir(parents=True, exist_ok=True)
    report_dir = report_dir or folder / "reports"
    cmd = [LOCUST, "-f", str(locustfile), "--report-dir", str(report_dir)]
    cmd += ["--headless", "--only-summary"] if headless else []
    with (folder / "stdout").open("w") as out, (folder / "stderr").open("w") as err:
        proc = subprocess.Popen(
            [*cmd, *args], env=env, cwd=folder, stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True
        )
    return proc, report_dir


def wait_locust(proc: subprocess.Popen[str], folder: Path, report_dir: Path) -> LocustRun:
    try:
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stdout, stderr = ((folder / name).read_text(errors="replace") for name in ("stdout", "stderr"))
    return LocustRun(proc.returncode, stdout, stderr, report_dir)


def start_background_mock(*args: str, api_key: str = TEST_KEY) -> Mock:
    """A mock for a background run (stopped by the run's own finish)."""
    return Mock(start_mock(list(args), env=dict(os.environ, NLX_API_KEY=api_key)))


def stopping_mock(mock: Mock, finish: Callable[[], T]) -> Callable[[], T]:
    """A background run's `finish`, with its mock stopped after it, whatever became of it."""

    def finished() -> T:
        try:
            return finish()
        finally:
            mock.process.stop()

    return finished


def start_child(args: list[str], **options: Any) -> Callable[[], subprocess.CompletedProcess[str]]:
    """Start a child process of this process (for a background run); the result waits for its end and
    gives what it printed."""
    process = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options
    )

    def finish() -> subprocess.CompletedProcess[str]:
        try:
            stdout, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)

    return finish


@background
def standard_run(folder: Path) -> Finish:
    scenarios = folder / "scenarios.yaml"
    scenarios.write_text(STANDARD_SCENARIOS, encoding="utf-8")
    step_summary = folder / "reports" / "step_summary.md"  # in the run folder: the secrets test reads it
    mock = start_background_mock(*FAST, "--fault", "http_401=20%", api_key=STANDARD_KEY)
    options = f"--host {mock.url} {NLX} -u 4 -r 4 -t 4s --think-time 0 --stop-timeout 30"
    args = [*shlex.split(options), "--turn-log", "--loglevel", "DEBUG", "--conversations", str(scenarios)]
    for expr in STANDARD_THRESHOLDS:
        args += ["--threshold", expr]
    env = locust_env(NLX_API_KEY=STANDARD_KEY, GITHUB_STEP_SUMMARY=str(step_summary))
    run = start_locust(args, folder, env=env)

    def finish() -> StandardRun:
        try:
            done = run()
            stats = mock.stats()
        finally:
            mock.process.stop()
        return StandardRun(done.returncode, done.stdout, done.stderr, done.report_dir, stats, step_summary)

    return finish


@background
def interrupted_run(folder: Path) -> Finish:
    """`-t 60s` cut by Ctrl-C (SIGINT) once 10 turns have finished: the outputs of an interrupted run."""
    mock_options = " ".join(FAST)
    args = [*shlex.split("-u 2 -r 2 --think-time 0.05 --turn-log --threshold ttft.p95<5s -t 60s")]
    args += ["--mock-options", mock_options]
    return start_signalled_locust(args, folder, env=locust_env(), signal_name="INT", turns=10)


def start_signalled_locust(
    args: list[str], folder: Path, *, env: dict[str, str], signal_name: str, turns: int
) -> Callable[[], LocustRun]:
    """Like `start_locust`, and signal the run (`kill -SIGNAL_NAME`) once its turn log (ARGS have
    --turn-log) holds `turns` lines: mid-run, whenever the test that reads the run comes (tests/when.py)."""
    proc, report_dir = popen_locust(args, folder, env=env)
    pattern = str(report_dir / "*" / "turns-*.jsonl")
    when = [sys.executable, str(ROOT / "tests" / "when.py"), pattern, str(turns), "60"]
    signaller = subprocess.Popen(
        [*when, "--", "kill", f"-{signal_name}", str(proc.pid)], stdin=subprocess.DEVNULL
    )

    def finish() -> LocustRun:
        try:
            return wait_locust(proc, folder, report_dir)
        finally:
            if signaller.poll() is None:
                signaller.kill()
            signaller.wait()

    return finish
