"""Locust glue: loadtest's options, its jobs wired to Locust's events, and the chat user class.

Use it from a locustfile:

    from locust import events
    from loadtest.plugin import NLXChatUser, register

    register(events)

    class ChatUser(NLXChatUser):
        pass

Each job has its own object: `recorder.TurnRecorder` (what a turn adds to the metrics),
`gcgovernor.GcGovernor` (`--gc`), `openmodel.ArrivalQueue` (`--arrival-rate`), and the role of this
process (`roles.LocalRole`, `MasterRole`, `WorkerRole`), which starts and stops them and writes the
run output. In master/worker mode every worker ships its HDR histograms to the master (with Locust's
periodic report, and once more when its users have stopped: `handshake`), and the master writes the
run output from the merged data.
"""

from __future__ import annotations

# ruff: noqa: I001  (locust is imported first on purpose)

import locust  # noqa: F401  (first: gevent must patch sockets before httpx is imported)

import dataclasses
import functools
import logging
import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import gevent
import httpx
from locust import User, task

from loadtest import nlx, webui, webui_form
from loadtest.catalog import Failure, excerpt
from loadtest.client import TurnResult, make_client, stream_turn
from loadtest.conversation import Conversation, choose
from loadtest.errors import LoadtestError
from loadtest.gcgovernor import GcGovernor
from loadtest.health import HealthMonitor
from loadtest.metrics import Metrics
from loadtest.mock.contract import API_KEY_ENV, DEFAULT_API_KEY
from loadtest.mock.launch import MockAddress, MockProcess, for_workers, is_loopback, start_mock
from loadtest.openmodel import ArrivalQueue
from loadtest.options import MOCK_OPTIONS, add_arguments
from loadtest.pacing import abandon_after
from loadtest.recorder import TurnRecorder
from loadtest.roles import Role, role_for
from loadtest.settings import Settings, check_reachable, from_options
from loadtest.shapes import StagesShape

logger = logging.getLogger("loadtest")
# One INFO line per request from httpx drowns the run output.
logging.getLogger("httpx").setLevel(logging.WARNING)

EXIT_CONFIG_ERROR = 2
# How much of a reply that failed an answer check its error example quotes.
REPLY_IN_EXAMPLE_CHARS = 80


class TurnFailed(Exception):
    """What Locust's error table shows for a failed turn: its kind."""


class Loadtest:
    """loadtest in one Locust process: its jobs, wired to Locust's events by `register`."""

    def __init__(self) -> None:
        self.environment: Any = None
        self.recorder = TurnRecorder()
        # Load-generating processes sample their own health; the master merges what workers send.
        self.health = HealthMonitor()
        self.gc = GcGovernor()
        self.arrivals = ArrivalQueue(self.recorder)
        self.role: Role | None = None
        self.mock: MockProcess | None = None
        self.uses_mock = False
        self._settings: Settings | None = None

    @property
    def metrics(self) -> Metrics:
        """What this process measured in the current test (merged from the workers on a master)."""
        return self.recorder.metrics

    @property
    def runner(self) -> Any:
        return self.environment.runner

    # -- settings ------------------------------------------------------------------------------

    def refresh_settings(self) -> Settings:
        self._settings = from_options(
            self.environment.parsed_options, self.environment.host, uses_mock=self.uses_mock
        )
        return self._settings

    def current_settings(self) -> Settings:
        if self._settings is None or self._settings.host != self.environment.host:
            return self.refresh_settings()
        return self._settings

    def forget_settings(self) -> None:
        self._settings = None

    # -- Locust events -----------------------------------------------------------------------------

    def on_init(self, environment: Any, runner: Any = None, **_: Any) -> None:
        if self.role is not None:
            return  # started already: see on_test_start
        self.environment = environment
        environment.loadtest = self
        if environment.web_ui is not None:
            webui.install(
                environment.web_ui,
                lambda: webui.rows_from_metrics(self.metrics),
                charts=lambda: webui.charts_from_metrics(self.metrics),
            )
            webui_form.install(environment.web_ui, lambda: self.mock.url if self.mock is not None else None)
            warning = webui.exposure_warning(environment.parsed_options)
            if warning:
                logger.warning("loadtest: %s", warning)
        self.role = role_for(self, runner)
        self.role.on_init()

    def prepare(self) -> None:
        """Before any test: the built-in mock when no host is given, then every option checked; bad
        input stops the process here with one line and exit code 2."""
        environment = self.environment
        try:
            if not environment.host:
                self._start_mock()
            self._role().load_conversations()
            settings = self.refresh_settings()
            if not self.uses_mock:
                check_reachable(settings.host, settings.connect_timeout)
            if isinstance(environment.shape_class, StagesShape):
                environment.shape_class.stages()  # a missing or bad --stages stops the run here
        except LoadtestError as exc:
            self.close()
            print(f"loadtest: error: {exc}", file=sys.stderr)
            sys.exit(EXIT_CONFIG_ERROR)

    def on_test_start(self, environment: Any = None, **_: Any) -> None:
        if self.role is None and environment is not None:
            # A worker that joins a running test gets its first spawn message, and so this event,
            # before Locust fires init on it.
            self.on_init(environment, environment.runner)
        self._role().on_test_start()

    def on_spawning_complete(self, user_count: int, **_: Any) -> None:
        self._role().on_spawning_complete(user_count)

    def on_test_stop(self, **_: Any) -> None:
        self._role().on_test_stop()

    def on_quitting(self, **_: Any) -> None:
        self._role().on_quitting()

    def on_reset_stats(self, **_: Any) -> None:
        self._role().on_reset()

    def on_quit(self, **_: Any) -> None:
        self._role().print_console()
        self.close()

    def close(self) -> None:
        self.recorder.close_turn_log()
        if self.mock is not None:
            self.mock.stop()
            self.mock = None

    def _role(self) -> Role:
        assert self.role is not None, "loadtest's init listener has not run"
        return self.role

    def _start_mock(self) -> None:
        # Settings need a host, which the mock gives: its own options are read before them.
        options = self.environment.parsed_options
        env = dict(os.environ)
        env.setdefault(API_KEY_ENV, DEFAULT_API_KEY)
        address = MockAddress()
        if getattr(options, "master", False) and not getattr(options, "processes", None):
            # Workers of a master may run on other machines and get the mock's URL with each spawn.
            # Served beyond loopback only because the master is (Locust's --master-bind-host, every
            # interface by default): that is the user's request to serve other machines; --processes
            # workers are this machine's own.
            address = for_workers(str(options.master_bind_host))
        self.mock = start_mock(MOCK_OPTIONS.read(options), env=env, address=address)
        self.uses_mock = True
        self.environment.host = self.mock.url
        logger.info("loadtest: no --host given, running against the built-in mock at %s", self.mock.url)
        if address.advertise is not None and is_loopback(urlsplit(self.mock.url).hostname or ""):
            logger.warning(
                "loadtest: the built-in mock's URL names a loopback address, which workers on other "
                "machines cannot reach: start the master with --master-bind-host ADDRESS_THEY_REACH"
            )


def _cache_locust_default_args() -> None:
    """A Locust worker rebuilds its whole argument parser for each option of each spawn message to
    tell Locust's options from custom ones (about 0.8 s with loadtest's, while its users and heartbeat
    wait: on a busy machine the master then marks the worker missing). Locust's own options do not
    change within a process: build them once."""
    from locust import argument_parser

    if not hasattr(argument_parser.default_args_dict, "cache_info"):
        cached = functools.cache(argument_parser.default_args_dict)
        argument_parser.default_args_dict = cached


def register(events: Any) -> Loadtest:
    """Attach loadtest to a Locust events object (`locust.events` in a locustfile)."""
    _cache_locust_default_args()
    lt = Loadtest()
    events.init_command_line_parser.add_listener(add_arguments)
    events.init.add_listener(lt.on_init)
    events.test_start.add_listener(lt.on_test_start)
    events.spawning_complete.add_listener(lt.on_spawning_complete)
    events.test_stop.add_listener(lt.on_test_stop)
    events.quitting.add_listener(lt.on_quitting)
    events.reset_stats.add_listener(lt.on_reset_stats)
    events.quit.add_listener(lt.on_quit)
    return lt


def _sleep_until(deadline_ns: int) -> None:
    """Sleep to the deadline; past it, still yield once before the turn goes out.

    Locust stops a user that is waiting between conversations by killing its greenlet, but the kill
    lands at the user's next switch: a user whose wait had just ended would send its next request
    first and be killed while reading the answer, a turn the server counts and the run cuts. The
    yield lets such a kill arrive before anything is sent.
    """
    gevent.sleep(max((deadline_ns - time.perf_counter_ns()) / 1e9, 0.0))


class NLXChatUser(User):
    """A user who holds multi-turn conversations, one conversation id per conversation."""

    abstract = True

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.loadtest: Loadtest = environment.loadtest
        self.rng = random.Random()
        self.client: httpx.Client | None = None

    def wait_time(self) -> float:
        settings = self.loadtest.current_settings()
        # In the open model the arrival schedule paces conversations, not the users.
        return 0.0 if settings.arrival_rate is not None else settings.pacing.between_conversations(self.rng)

    def on_start(self) -> None:
        settings = self.loadtest.current_settings()
        self.client = make_client(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            verify=not settings.insecure,
            transport=settings.transport,
        )

    def on_stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    @task
    def conversation(self) -> None:
        lt = self.loadtest
        settings = lt.current_settings()
        intended_ns = lt.arrivals.take()
        scenario = choose(settings.scenarios, self.rng)
        turns = scenario.pick(self.rng)
        conv = Conversation(scenario, nlx.new_conversation_id(), settings.history)
        lt.recorder.conversation_started(scenario.name)
        failed = False
        stop_after = abandon_after(self.rng, settings.abandon, len(turns))
        previous_reply: str | None = None
        for index, turn in enumerate(turns, start=1):
            text = turn.render(self.rng)
            pause_s = settings.pacing.before_turn(self.rng, previous_reply, text)
            # The intended start counts from the previous turn's end (or the arrival), so a late
            # wake-up of this greenlet shows as lateness, not as a shorter pause.
            intended_ns = (intended_ns if index == 1 else time.perf_counter_ns()) + int(pause_s * 1e9)
            if index == 1:
                t_start = intended_ns  # conversation_ms runs from the first request, not the pause before it
            _sleep_until(intended_ns)
            result = self._turn(settings, conv, text, scenario.name, index, intended_ns)
            if result.ok:
                problem = turn.check(result.content) or (
                    settings.fallback and settings.fallback(result.content)
                )
                if problem:
                    # What was expected, and what came: the example a failed check leaves behind.
                    detail = f'{problem}; the reply: "{excerpt(result.content, REPLY_IN_EXAMPLE_CHARS)}"'
                    result = dataclasses.replace(result, ok=False, kind=Failure.ASSERTION, detail=detail)
            lt.recorder.turn(result, scenario.name, index, conv.conversation_id, intended_ns)
            self.environment.events.request.fire(
                request_type="CHAT",
                name=f"turn {index}",
                response_time=result.latency_ns / 1e6,
                response_length=len(result.content),
                exception=None if result.ok else TurnFailed(result.kind),
                context={"scenario": scenario.name, "conversation_id": conv.conversation_id},
            )
            if result.ok or result.kind == Failure.ASSERTION:
                # A reply that failed a check was still given: it belongs in the history.
                conv.add_reply(result.content)
                previous_reply = result.content
            if not result.ok:
                failed = True
                if settings.on_turn_error == "stop":
                    break
            if index == stop_after:
                lt.recorder.conversation_ended(scenario.name, "abandoned", 0)
                return
        outcome = "failed" if failed else "completed"
        lt.recorder.conversation_ended(scenario.name, outcome, time.perf_counter_ns() - t_start)

    def _turn(
        self, settings: Settings, conv: Conversation, text: str, scenario: str, index: int, intended_ns: int
    ) -> TurnResult:
        """One streamed turn; a turn the end of the run cuts is recorded as it stops."""
        assert self.client is not None
        on_cut: Callable[[TurnResult], None] = lambda result: self.loadtest.recorder.turn(  # noqa: E731
            result, scenario, index, conv.conversation_id, intended_ns
        )
        return stream_turn(
            self.client,
            settings.url,
            settings.request_body(conv.conversation_id, conv.request_messages(text)),
            api_key=settings.api_key,
            on_cut=on_cut,
            first_byte_timeout=settings.first_byte_timeout,
            idle_timeout=settings.idle_timeout,
            on_pool_wait=self.loadtest.health.record_pool_wait,
        )
