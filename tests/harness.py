"""Run loadtest's user class inside the test process: a Locust Environment and LocalRunner, no `locust`.

    run = run_in_process(f"--host {mock.url} {NLX} -u 2 -r 2 --think-time 0", report_dir=tmp_path,
                         env={"NLX_API_KEY": TEST_KEY}, until=turns_at_least(10))
    run.exit_code, run.summary(), run.output

The run goes as a headless `locust` run goes: options through Locust's own parser with loadtest's
added, `init`, `runner.start(-u, -r)`, and at the end `runner.quit()` and the shutdown events, with
the exit code Locust would pick. It ends when `until` holds (or the plugin stopped it, as
--threshold-abort does), never after a fixed time; a condition not met in `timeout` seconds fails the
test. Whatever the run changes in the process is put back: the environment variables, the garbage
collector, the SIGINT handler and the log handlers.
"""

from __future__ import annotations

# ruff: noqa: I001  (locust is imported first on purpose)

import locust  # noqa: F401  (first: gevent patches sockets before httpx is imported)

import contextlib
import gc
import io
import logging
import os
import shlex
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import orjson
from locust.argument_parser import get_parser
from locust.env import Environment
from locust.event import Events

from loadtest.errors import ConfigError
from loadtest.plugin import NLXChatUser, register
from loadtest.settings import from_options

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "locustfiles" / "chat.py"
# Variables that configure loadtest or Locust, or tell a run where to write: none leaks into a test.
CLEARED_PREFIXES = ("NLX_", "LOADTEST_", "LOCUST_", "OPENAI_")
CLEARED = ("GITHUB_STEP_SUMMARY",)
# A host for option checks that need one; nothing connects to it.
UNUSED_HOST = "http://127.0.0.1:9"

Until = Callable[[Any], bool]
# Locust's Events is not annotated: one typed name for making a fresh one per run.
new_events: Callable[[], Any] = Events


class ChatUser(NLXChatUser):
    """The user of locustfiles/chat.py (whose conversations.yaml is the default --conversations)."""

    abstract = False


@dataclass
class Run:
    exit_code: int
    # What the run printed to stderr (the console lines) and logged.
    output: str
    report_dir: Path
    environment: Any
    plugin: Any

    def summary(self) -> dict[str, Any]:
        path = self.latest("summary.json")
        assert path.exists(), f"no summary.json; the run said:\n{self.output[-3000:]}"
        data: dict[str, Any] = orjson.loads(path.read_bytes())
        return data

    def latest(self, name: str) -> Path:
        return self.report_dir / "latest" / name


def turns_at_least(count: int = 0, *, ok: int = 0, failed: int = 0) -> Until:
    """Until Locust has seen `count` turns, `ok` of them good and `failed` failed (each turn is one
    request event)."""

    def reached(environment: Any) -> bool:
        total = environment.runner.stats.total
        turns, failures = int(total.num_requests), int(total.num_failures)
        return turns >= count and turns - failures >= ok and failures >= failed

    return reached


def run_in_process(
    args: str | Sequence[str],
    *,
    report_dir: Path,
    until: Until,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Run:
    """Run `locust -f locustfiles/chat.py --headless` with `args` (split like a shell when a string)
    in this process."""
    argv = shlex.split(args) if isinstance(args, str) else list(args)
    argv = ["-f", str(LOCUSTFILE), "--headless", "--report-dir", str(report_dir), *argv]
    with environ(env or {}), restored_process_state(), captured_output() as output:
        events = new_events()
        plugin = register(events)
        options = parse(events, argv)
        logging.getLogger().setLevel(options.loglevel.upper())
        environment = Environment(
            user_classes=[ChatUser],
            events=events,
            host=options.host,
            parsed_options=options,
            stop_timeout=options.stop_timeout,
            reset_stats=options.reset_stats,
        )
        runner = environment.create_local_runner()
        try:
            events.init.fire(environment=environment, runner=runner, web_ui=None)
        except SystemExit as exc:
            raise AssertionError(
                f"the run stopped at start ({exc.code}): {output.getvalue()[-3000:]}"
            ) from None
        stopped: list[bool] = []
        events.test_stop.add_listener(lambda **_: stopped.append(True))
        try:
            runner.start(options.num_users or 1, spawn_rate=options.spawn_rate or 1)
            met = wait_for(lambda: until(environment) or bool(stopped), timeout)
        finally:
            runner.quit()  # as --run-time does; also when the condition failed, so no user outlives the test
        code = shutdown(environment, options)
    assert met, f"the run did not get there in {timeout} s; it said:\n{output.getvalue()[-3000:]}"
    return Run(code, output.getvalue(), report_dir, environment, plugin)


def config_error(args: str | Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """The one-line message with which the options `args` stop a run at start ('' if they do not).

    Parsing errors (an unknown choice) come from the parser, the rest from loadtest's settings, which
    the plugin turns into `loadtest: error: MESSAGE` and exit code 2.
    """
    argv = ["-f", str(LOCUSTFILE), *(shlex.split(args) if isinstance(args, str) else args)]
    with environ(env or {}):
        events = new_events()
        register(events)
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                options = parse(events, argv)
        except SystemExit as exc:
            assert exc.code == 2, exc.code
            [line] = [line for line in stderr.getvalue().splitlines() if "error:" in line]
            return line
        try:
            from_options(options, options.host or UNUSED_HOST, uses_mock=options.host is None)
        except ConfigError as exc:
            return str(exc)
    return ""


def parse(events: Any, argv: list[str]) -> Any:
    # No config files: a locust.conf or pyproject.toml where the tests run must not change a run.
    parser = get_parser(default_config_files=[])
    events.init_command_line_parser.fire(parser=parser)
    return parser.parse_args(argv)


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        gevent.sleep(0.01)
    return True


def shutdown(environment: Any, options: Any) -> int:
    """What `locust` does once the run is over (locust.main's shutdown): the events and the exit code."""
    runner = environment.runner
    environment.events.quitting.fire(environment=environment, reverse=True)
    if environment.process_exit_code is not None:
        code = int(environment.process_exit_code)
    elif runner.errors or runner.exceptions:
        code = int(options.exit_code_on_error)
    else:
        code = 0
    runner.quit()
    environment.events.quit.fire(exit_code=code)
    return code


@contextlib.contextmanager
def environ(extra: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(CLEARED_PREFIXES) or name in CLEARED:
            del os.environ[name]
    os.environ.update(extra)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def restored_process_state() -> Iterator[None]:
    """The plugin rests the garbage collector and freezes what lives during a run, and the local role
    sends Ctrl-C the way of SIGTERM: the test process gets its own back."""
    gc_enabled = gc.isenabled()
    sigint = signal.getsignal(signal.SIGINT)
    handlers: list[Any] = []
    install = gevent.signal_handler

    def recorded(*args: Any, **kwargs: Any) -> Any:
        handler = install(*args, **kwargs)
        handlers.append(handler)
        return handler

    gevent.signal_handler = recorded
    try:
        yield
    finally:
        gevent.signal_handler = install
        for handler in handlers:
            handler.cancel()
        signal.signal(signal.SIGINT, sigint)
        gc.unfreeze()
        if gc_enabled:
            gc.enable()
        else:
            gc.disable()


@contextlib.contextmanager
def captured_output() -> Iterator[io.StringIO]:
    """Collect what the run prints to stderr and logs (from INFO, or the level --loglevel sets)."""
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.setFormatter(logging.Formatter("%(levelname)s/%(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stderr(output):
            yield output
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
