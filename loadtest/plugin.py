"""Locust glue: loadtest's options, its jobs wired to Locust's events, and the chat user class.

Use it from a locustfile:

    from locust import events
    from loadtest.plugin import NLXChatUser, register

    register(events)

    class ChatUser(NLXChatUser):
        pass                      # plays the conversations file; or write tasks: see loadtest.chat

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

import functools
import logging
import os
import random
import shlex
import sys
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx
from locust import User

from loadtest import webui, webui_form
from loadtest.chat import Chat, ConversationOver, Reply, TurnFailed, play_scenario
from loadtest.client import make_client
from loadtest.conversation import Scenario
from loadtest.errors import ConfigError, LoadtestError
from loadtest.gcgovernor import GcGovernor
from loadtest.health import HealthMonitor
from loadtest.metrics import Metrics
from loadtest.mock.contract import API_KEY_ENV, DEFAULT_API_KEY
from loadtest.mock.launch import MockAddress, MockProcess, for_workers, is_loopback, start_mock
from loadtest.openmodel import ArrivalQueue
from loadtest.options import INSECURE, MOCK_OPTIONS, add_arguments
from loadtest.recorder import TurnRecorder
from loadtest.roles import Role, role_for
from loadtest.settings import Plays, Settings, check_reachable, from_options, wanted_conversations
from loadtest.shapes import StagesShape

__all__ = ["Chat", "ConversationOver", "Loadtest", "NLXChatUser", "Reply", "TurnFailed", "plays", "register"]

logger = logging.getLogger("loadtest")
# One INFO line per request from httpx drowns the run output.
logging.getLogger("httpx").setLevel(logging.WARNING)

EXIT_CONFIG_ERROR = 2


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
        # What the locustfile's users play (known at init): whether a conversations file is needed.
        self.plays = Plays()
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
            self.environment.parsed_options, self.environment.host, uses_mock=self.uses_mock, plays=self.plays
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
            self.role.on_init_again()  # started already: see on_test_start
            return
        self.environment = environment
        environment.loadtest = self
        self.plays = plays(environment.user_classes)
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
            if wanted_conversations(environment.parsed_options, self.plays) is not None:
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
        mock_options = MOCK_OPTIONS.read(options)
        if "--tls" in shlex.split(mock_options) and not INSECURE.read(options):
            # Its certificate is one it made itself: nobody vouches for it, and every turn would fail.
            raise ConfigError("the built-in mock serves --tls with a certificate of its own: add --insecure")
        self.mock = start_mock(mock_options, env=env, address=address)
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


class NLXChatUser(User):
    """A user who holds multi-turn conversations, one conversation id per conversation.

    A subclass with no task of its own plays the conversations file (`scripted_conversation`, by
    scenario weight); one with `@task` methods plays those, each holding its conversations with
    `self.conversation(name)`. To mix both, list the built-in task beside them:
    `tasks = {NLXChatUser.scripted_conversation: 1}`.
    """

    abstract = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.abstract and not cls.tasks:
            cls.tasks = [NLXChatUser.scripted_conversation]

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

    def conversation(self, name: str, *, system: str | None = None) -> Chat:
        """A new conversation, for a `with` block: `with self.conversation("order_status") as chat:`.
        `name` is its scenario in every report; `system` a system message sent first (as a
        scenario's `system:`)."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"conversation({name!r}): give it a name, used in the reports")
        return Chat(self, Scenario.of(name, (), system=system))

    def scripted_conversation(self) -> None:
        """One conversation of the conversations file (the built-in task)."""
        play_scenario(self)


def plays(user_classes: Iterable[type]) -> Plays:
    """What the users of a locustfile play: the conversations file (the built-in task), flows of
    their own (any other task of an NLXChatUser), or both."""
    scripts = flows = False
    for cls in user_classes:
        if issubclass(cls, NLXChatUser):
            for task in cls.tasks:
                if task is NLXChatUser.scripted_conversation:
                    scripts = True
                else:
                    flows = True
    return Plays(scripts=scripts, flows=flows)
