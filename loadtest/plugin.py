"""Locust glue: command-line options, the chat user class, metrics collection and run output.

Use it from a locustfile:

    from locust import events
    from loadtest.plugin import NLXChatUser, register

    register(events)

    class ChatUser(NLXChatUser):
        pass
"""

from __future__ import annotations

# ruff: noqa: I001  (locust is imported first on purpose)

import locust  # noqa: F401  (first: gevent must patch sockets before httpx is imported)

import logging
import os
import random
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gevent
import httpx
from locust import User, task
from locust.runners import MasterRunner, WorkerRunner

from loadtest import nlx
from loadtest.client import TurnResult, make_client, stream_turn
from loadtest.conversation import Conversation, choose
from loadtest.errors import ConfigError, LoadtestError
from loadtest.metrics import Metrics
from loadtest.mock.launch import MockProcess, start_mock
from loadtest.report import build_summary, console_lines, write_run
from loadtest.settings import API_KEY_ENV, MOCK_API_KEY, Settings, from_options

logger = logging.getLogger("loadtest")
# One INFO line per request from httpx drowns the run output.
logging.getLogger("httpx").setLevel(logging.WARNING)

CONFIG_MESSAGE = "loadtest_config"
REPORT_KEY = "loadtest"
CONFIG_ERROR_EXIT = 2


class TurnFailed(Exception):
    """What Locust's error table shows for a failed turn: its kind."""


def add_arguments(parser: Any) -> None:
    # Not in an argument group: Locust's web UI leaves out grouped custom options (locust#2560).
    parser.add_argument(
        "--nlx-deployment",
        env_var="NLX_DEPLOYMENT",
        default=None,
        help="NLX deployment key (the path segment after the host). Default with the mock: demo",
    )
    parser.add_argument(
        "--nlx-channel",
        env_var="NLX_CHANNEL",
        default=None,
        help="NLX channel key with its language suffix, e.g. web-en-US. Default with the mock: web-en-US",
    )
    parser.add_argument(
        "--think-time",
        env_var="LOADTEST_THINK_TIME",
        default="1-3",
        help="Seconds a user waits between turns and conversations: 3, or a uniform range 2-8. Default 1-3",
    )
    parser.add_argument(
        "--history",
        env_var="LOADTEST_HISTORY",
        default="full",
        choices=["full", "last"],
        help="full: each request carries the whole conversation so far; last: only the new user message",
    )
    parser.add_argument(
        "--conversations",
        env_var="LOADTEST_CONVERSATIONS",
        default=None,
        help="Conversation scripts, .yaml or .jsonl. Default: conversations.yaml beside the locustfile",
    )
    parser.add_argument(
        "--report-dir",
        env_var="LOADTEST_REPORT_DIR",
        default="reports",
        help="Folder for run output: {report-dir}/{run-id}/summary.json, report.html; {report-dir}/latest",
    )
    parser.add_argument(
        "--connect-timeout",
        env_var="LOADTEST_CONNECT_TIMEOUT",
        type=float,
        default=10.0,
        help="Seconds to wait for a connection. Default 10",
    )
    parser.add_argument(
        "--read-timeout",
        env_var="LOADTEST_READ_TIMEOUT",
        type=float,
        default=60.0,
        help="Seconds to wait for the first byte, and between two reads of a stream. Default 60",
    )
    parser.add_argument(
        "--mock-options",
        env_var="LOADTEST_MOCK_OPTIONS",
        default="",
        help='Options for the built-in mock started when no --host is given, e.g. "--ttft const:200ms"',
    )


class LoadtestPlugin:
    """State of loadtest in one Locust process (local, master or worker)."""

    def __init__(self) -> None:
        self.environment: Any = None
        self.settings: Settings | None = None
        self.metrics = Metrics()
        self.mock: MockProcess | None = None
        self.uses_mock = False
        self.run_id: str | None = None
        self.started: datetime | None = None
        self.peak_users = 0
        self.last_run_dir: Path | None = None
        self.pending_console: list[str] = []

    # -- events ------------------------------------------------------------------------------------

    def on_init(self, environment: Any, runner: Any = None, **_: Any) -> None:
        self.environment = environment
        environment.loadtest = self
        if isinstance(runner, WorkerRunner):
            runner.register_message(CONFIG_MESSAGE, self._on_config_message)
            environment.events.report_to_master.add_listener(self.on_report_to_master)
            return
        if isinstance(runner, MasterRunner):
            environment.events.worker_report.add_listener(self.on_worker_report)
        try:
            if not environment.host:
                self._start_mock(environment)
            self.settings = self._settings()
        except ConfigError as exc:
            self.close()
            _exit_with(str(exc))
        except LoadtestError as exc:
            self.close()
            _exit_with(str(exc))

    def on_test_start(self, environment: Any, **_: Any) -> None:
        self.metrics = Metrics()
        self.peak_users = 0
        if isinstance(environment.runner, WorkerRunner):
            return
        self.run_id = datetime.now().strftime("%Y%m%d-%H%M%S-") + f"{random.getrandbits(16):04x}"
        self.started = datetime.now(UTC)
        try:
            # The web UI may have changed the host or options since start-up.
            self.settings = self._settings()
        except ConfigError as exc:
            logger.error("loadtest: %s", exc)
            raise
        if isinstance(environment.runner, MasterRunner):
            environment.runner.send_message(CONFIG_MESSAGE, {"uses_mock": self.uses_mock})

    def on_spawning_complete(self, user_count: int, **_: Any) -> None:
        self.peak_users = max(self.peak_users, user_count)

    def on_test_stop(self, environment: Any, **_: Any) -> None:
        if isinstance(environment.runner, WorkerRunner):
            return
        self.write_summary()

    def on_quit(self, **_: Any) -> None:
        self.print_console()
        self.close()

    def on_report_to_master(self, client_id: str, data: dict[str, Any]) -> None:
        data[REPORT_KEY] = self.metrics.drain()

    def on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        if REPORT_KEY in data:
            self.metrics.merge_data(data[REPORT_KEY])

    def _on_config_message(self, environment: Any, msg: Any, **_: Any) -> None:
        self.uses_mock = bool(msg.data.get("uses_mock"))
        self.settings = None

    # -- pieces ------------------------------------------------------------------------------------

    def _start_mock(self, environment: Any) -> None:
        options = environment.parsed_options
        env = dict(os.environ)
        env.setdefault(API_KEY_ENV, MOCK_API_KEY)
        self.mock = start_mock(getattr(options, "mock_options", "") or "", env=env)
        self.uses_mock = True
        environment.host = self.mock.url
        logger.info("loadtest: no --host given, running against the built-in mock at %s", self.mock.url)

    def _settings(self) -> Settings:
        return from_options(self.environment.parsed_options, self.environment.host, uses_mock=self.uses_mock)

    def current_settings(self) -> Settings:
        if self.settings is None or self.settings.host != self.environment.host:
            self.settings = self._settings()
        return self.settings

    def record(self, result: TurnResult) -> None:
        m = self.metrics
        m.count("turns")
        for key, n in result.protocol.items():
            m.protocol[key] += n
        if result.system_fingerprint:
            m.fingerprints.add(result.system_fingerprint)
        m.count("chunks", result.chunks)
        m.count("chars", len(result.content))
        if result.ok:
            # Latency figures describe turns that worked; failures are counted by kind instead.
            m.count("turns_ok")
            m.turn.record_ns(result.latency_ns)
            if result.ttft_ns is not None:
                m.ttft.record_ns(result.ttft_ns)
            for gap in result.itl_ns:
                m.itl.record_ns(gap)
        else:
            m.count("turns_cut" if result.kind == "cut" else "turns_failed")
            m.error(result.kind or "unknown", result.detail)

    def write_summary(self) -> Path | None:
        if self.run_id is None or self.started is None:
            return None
        settings = self.settings
        runner = self.environment.runner
        workers = len(runner.clients) if isinstance(runner, MasterRunner) else 1
        run = {
            "id": self.run_id,
            "started": self.started.isoformat(timespec="seconds"),
            "ended": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": self.environment.host,
            "deployment": settings.deployment if settings else None,
            "channel": settings.channel if settings else None,
            "mock": self.uses_mock,
            "users": self.peak_users or getattr(runner, "target_user_count", None) or 0,
            "workers": workers,
            "history": settings.history if settings else None,
            "system_fingerprints": sorted(self.metrics.fingerprints),
        }
        summary = build_summary(self.metrics, run)
        report_dir = settings.report_dir if settings else Path("reports")
        run_dir = write_run(report_dir, self.run_id, summary)
        self.last_run_dir = run_dir
        self.run_id = None
        self.pending_console = console_lines(summary, run_dir)
        if not getattr(self.environment.parsed_options, "headless", False):
            self.print_console()
        return run_dir

    def print_console(self) -> None:
        # Headless runs print this at quit, after Locust's own tables, so it is the last thing seen.
        for line in self.pending_console:
            print(line, file=sys.stderr)
        self.pending_console = []

    def close(self) -> None:
        if self.mock is not None:
            self.mock.stop()
            self.mock = None


def _exit_with(message: str) -> None:
    print(f"loadtest: error: {message}", file=sys.stderr)
    sys.exit(CONFIG_ERROR_EXIT)


def register(events: Any) -> LoadtestPlugin:
    """Attach loadtest to a Locust events object (`locust.events` in a locustfile)."""
    plugin = LoadtestPlugin()
    events.init_command_line_parser.add_listener(add_arguments)
    events.init.add_listener(plugin.on_init)
    events.test_start.add_listener(plugin.on_test_start)
    events.spawning_complete.add_listener(plugin.on_spawning_complete)
    events.test_stop.add_listener(plugin.on_test_stop)
    events.quit.add_listener(plugin.on_quit)
    return plugin


class NLXChatUser(User):
    """A user who holds multi-turn conversations, one conversation id per conversation."""

    abstract = True

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.plugin: LoadtestPlugin = environment.loadtest
        self.rng = random.Random()
        self.client: httpx.Client | None = None

    def wait_time(self) -> float:
        return self.plugin.current_settings().think_time.sample(self.rng)

    def on_start(self) -> None:
        settings = self.plugin.current_settings()
        self.client = make_client(
            connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout
        )

    def on_stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    @task
    def conversation(self) -> None:
        settings = self.plugin.current_settings()
        assert self.client is not None
        scenario = choose(settings.scenarios, self.rng)
        conv = Conversation(scenario, nlx.new_conversation_id(), settings.history)
        self.plugin.metrics.count("conversations_started")
        for index, text in enumerate(scenario.turns, start=1):
            if index > 1:
                gevent.sleep(settings.think_time.sample(self.rng))
            body = nlx.request_body(conv.conversation_id, conv.request_messages(text))
            result = stream_turn(
                self.client, settings.url, body, api_key=settings.api_key, on_cut=self.plugin.record
            )
            self.plugin.record(result)
            self.environment.events.request.fire(
                request_type="CHAT",
                name=f"turn {index}",
                response_time=result.latency_ns / 1e6,
                response_length=len(result.content),
                exception=None if result.ok else TurnFailed(result.kind),
                context={"scenario": scenario.name, "conversation_id": conv.conversation_id},
            )
            if not result.ok:
                return
            conv.add_reply(result.content)
        self.plugin.metrics.count("conversations_completed")
