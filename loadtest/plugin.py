"""Locust glue: command-line options, the chat user class, metrics collection and run output.

Use it from a locustfile:

    from locust import events
    from loadtest.plugin import NLXChatUser, register

    register(events)

    class ChatUser(NLXChatUser):
        pass

In master/worker mode every worker ships its HDR histograms to the master (with Locust's periodic
report, and once more when its users have stopped), and the master writes the run output from the
merged data.
"""

from __future__ import annotations

# ruff: noqa: I001  (locust is imported first on purpose)

import locust  # noqa: F401  (first: gevent must patch sockets before httpx is imported)

import dataclasses
import gc
import importlib.metadata
import logging
import os
import random
import signal
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.queue
import httpx
from locust import User, task
from locust.runners import MasterRunner, WorkerRunner

from loadtest import nlx, thresholds, webui
from loadtest.arrivals import LATE_NS, ArrivalRate, Schedule
from loadtest.client import TRANSPORTS, TurnResult, make_client, stream_turn
from loadtest.conversation import Conversation, choose
from loadtest.pacing import abandon_after
from loadtest.errors import LoadtestError
from loadtest.health import HealthMonitor
from loadtest.metrics import ERROR_COUNT_PREFIX, Metrics, at, interval_of, scoped
from loadtest.mock.launch import MockProcess, start_mock
from loadtest.report import build_summary, console_lines, write_run
from loadtest.report.turns import TurnLog
from loadtest.shapes import StagesShape
from loadtest.settings import (
    API_KEY_ENV,
    GC_CHECK_OBJECTS,
    GC_MODES,
    MOCK_API_KEY,
    Settings,
    check_reachable,
    from_options,
)

logger = logging.getLogger("loadtest")
# One INFO line per request from httpx drowns the run output.
logging.getLogger("httpx").setLevel(logging.WARNING)

CONFIG_MESSAGE = "loadtest_config"
FINAL_MESSAGE = "loadtest_final"
REPORT_KEY = "loadtest"
HEALTH_KEY = "loadtest_health"
# Cyclic garbage found when the collector resumes that is worth a warning: a few MB of objects.
GC_GARBAGE_WARN_OBJECTS = 10_000
# --gc auto: how often to look at how many more objects live than when the collector stopped.
GC_CHECK_SECONDS = 1.0

EXIT_CONFIG_ERROR = 2
EXIT_THRESHOLDS_FAILED = 3  # also when --strict-client finds the client was the bottleneck
# Time-series intervals older than this are reduced to their statistics (workers report every 3 s).
SETTLE_AFTER_S = 30
# How often --threshold-abort looks at the merged data (Locust workers report every 3 s).
ABORT_CHECK_SECONDS = 5.0


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
        "--api",
        env_var="LOADTEST_API",
        default="nlx",
        choices=["nlx", "openai"],
        help="nlx: NLX OpenAI Connect (deployment/channel URL, nlx:{conversationId}); "
        "openai: any OpenAI-compatible server (--path, --model, full history)",
    )
    parser.add_argument(
        "--model",
        env_var="LOADTEST_MODEL",
        default=None,
        help="Model name sent with --api openai",
    )
    parser.add_argument(
        "--path",
        env_var="LOADTEST_PATH",
        default="/v1/chat/completions",
        help="Path appended to the host with --api openai. Default /v1/chat/completions",
    )
    parser.add_argument(
        "--arrival-rate",
        env_var="LOADTEST_ARRIVAL_RATE",
        default=None,
        help="Open model: start this many conversations per second whatever the server does "
        "(5, poisson:5, constant:5); -u is then the most conversations at once",
    )
    parser.add_argument(
        "--stages",
        env_var="LOADTEST_STAGES",
        default=None,
        help="With a locustfile that has a StagesShape (locustfiles/ramp.py): DURATION:USERS stages, "
        "e.g. 1m:10,5m:50,1m:0",
    )
    parser.add_argument(
        "--max-queue-wait",
        env_var="LOADTEST_MAX_QUEUE_WAIT",
        type=float,
        default=10.0,
        help="Open model: an arrival that waits this many seconds for a free user is dropped. Default 10",
    )
    parser.add_argument(
        "--think-time",
        env_var="LOADTEST_THINK_TIME",
        default="1-3",
        help="How long a user waits before a turn and between conversations: 3, 2-8 (uniform), exp:5, "
        "or human[:read_wpm=240,type_cpm=200,floor=1,jitter=0.25,max=60]. Default 1-3",
    )
    parser.add_argument(
        "--abandon",
        env_var="LOADTEST_ABANDON",
        default="0",
        help="Share of conversations users leave early, after a random turn: 10%% or 0.1. Default 0",
    )
    parser.add_argument(
        "--fallback-pattern",
        env_var="LOADTEST_FALLBACK_PATTERN",
        default=None,
        help="A reply matching this regular expression (case-insensitive) fails its turn as 'assertion', "
        'e.g. "didn\'t (get|understand) that"',
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
        "--threshold",
        action="append",
        default=None,
        help="Pass/fail rule, repeatable: ttft.p95<800ms, turn.p99<=3s, error_rate<1%%, "
        "conversation_success>=99%%, ttft{turn=1}.p95<500ms. Also LOADTEST_THRESHOLDS, ';'-separated",
    )
    parser.add_argument(
        "--threshold-abort",
        env_var="LOADTEST_THRESHOLD_ABORT",
        action="store_true",
        default=False,
        help="Stop the run early once a threshold fails after the warm-up",
    )
    parser.add_argument(
        "--threshold-warmup",
        env_var="LOADTEST_THRESHOLD_WARMUP",
        type=float,
        default=30.0,
        help="Seconds before --threshold-abort may stop a run. Default 30",
    )
    parser.add_argument(
        "--strict-client",
        env_var="LOADTEST_STRICT_CLIENT",
        action="store_true",
        default=False,
        help="Fail the run (exit code 3) when the load generator itself was the bottleneck: "
        "event-loop lag p99 > 10 ms, CPU p90 > 90%% of a core, or connection-pool wait p99 > 10 ms",
    )
    parser.add_argument(
        "--turn-log",
        env_var="LOADTEST_TURN_LOG",
        action="store_true",
        default=False,
        help="Also write every turn to {report-dir}/{run-id}/turns-*.jsonl (one file per process)",
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
        "--first-byte-timeout",
        env_var="LOADTEST_FIRST_BYTE_TIMEOUT",
        type=float,
        default=None,
        help="Seconds to wait for the response headers. Default: --read-timeout",
    )
    parser.add_argument(
        "--idle-timeout",
        env_var="LOADTEST_IDLE_TIMEOUT",
        type=float,
        default=None,
        help="Seconds a stream may go without data between chunks. Default: --read-timeout",
    )
    parser.add_argument(
        "--on-turn-error",
        env_var="LOADTEST_ON_TURN_ERROR",
        default="stop",
        choices=["stop", "continue"],
        help="After a failed turn, stop the conversation (default) or go on with the next turn",
    )
    parser.add_argument(
        "--insecure",
        env_var="LOADTEST_INSECURE",
        action="store_true",
        default=False,
        help="Do not verify TLS certificates (verification is on by default)",
    )
    parser.add_argument(
        "--transport",
        env_var="LOADTEST_TRANSPORT",
        default=TRANSPORTS[0],
        choices=list(TRANSPORTS),
        help="HTTP under httpx: gevent (default; HTTP/1.1 parsed in C, about half the CPU per turn) "
        "or httpx's own (httpcore)",
    )
    parser.add_argument(
        "--gc",
        env_var="LOADTEST_GC",
        default=GC_MODES[0],
        choices=list(GC_MODES),
        help="Python's garbage collector during the run, whose pauses land in the latencies "
        "with thousands of users: auto (default) rests it, collects once when a million more objects "
        "live, and turns it back on if they were garbage; on leaves it on; off rests it until the test "
        "stops",
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
        # Load-generating processes sample their own health; the master merges what workers send.
        self.health = HealthMonitor()
        self.mock: MockProcess | None = None
        self.uses_mock = False
        self.run_id: str | None = None
        self.started: datetime | None = None
        self.started_monotonic = 0.0
        self.peak_users = 0
        self.last_run_dir: Path | None = None
        self.pending_console: list[str] = []
        self.turn_log: TurnLog | None = None
        self.aborted: str | None = None
        # master only: which workers took part in the run, and which have sent their last data
        self.workers_seen: set[str] = set()
        self.workers_final: set[str] = set()
        self.finals_arrived = gevent.event.Event()
        self.abort_greenlet: gevent.Greenlet | None = None
        self.users_greenlet: gevent.Greenlet | None = None
        self.users_by_interval: dict[int, int] = {}
        # open model: this process's arrivals, and how many processes share the rate
        self.arrivals: gevent.queue.Queue[int] | None = None
        self.arrivals_greenlet: gevent.Greenlet | None = None
        self.processes = 1
        # True while this process holds the garbage collector off (--gc auto/off, during a run).
        self.gc_paused = False
        self.gc_greenlet: gevent.Greenlet | None = None

    @property
    def strict_client(self) -> bool:
        return bool(getattr(self.environment.parsed_options, "strict_client", False))

    @property
    def runner(self) -> Any:
        return self.environment.runner

    @property
    def is_worker(self) -> bool:
        return isinstance(self.runner, WorkerRunner)

    @property
    def is_master(self) -> bool:
        return isinstance(self.runner, MasterRunner)

    # -- Locust events -----------------------------------------------------------------------------

    def on_init(self, environment: Any, runner: Any = None, **_: Any) -> None:
        self.environment = environment
        environment.loadtest = self
        if environment.web_ui is not None:
            webui.install(environment.web_ui, lambda: webui.rows_from_metrics(self.metrics))
        if isinstance(runner, WorkerRunner):
            runner.register_message(CONFIG_MESSAGE, self._on_config_message)
            environment.events.report_to_master.add_listener(self.on_report_to_master)
            return
        if isinstance(runner, MasterRunner):
            runner.register_message(FINAL_MESSAGE, self._on_final_message)
            environment.events.worker_report.add_listener(self.on_worker_report)
        else:
            # Python raises Ctrl-C's KeyboardInterrupt in whatever greenlet runs at that moment,
            # often a user mid-turn, whose traceback then hides the run's end. Make Ctrl-C take
            # the path Locust gives SIGTERM: a clean shutdown from the main greenlet.
            gevent.signal_handler(signal.SIGINT, os.kill, os.getpid(), signal.SIGTERM)
        try:
            if not environment.host:
                self._start_mock(environment)
            self.settings = self._settings()
            if not self.uses_mock:
                check_reachable(self.settings.host, self.settings.connect_timeout)
            if isinstance(environment.shape_class, StagesShape):
                environment.shape_class.stages()  # a missing or bad --stages stops the run here
        except LoadtestError as exc:
            self.close()
            _exit_with(str(exc))

    def on_test_start(self, environment: Any, **_: Any) -> None:
        self.metrics = Metrics()
        self.peak_users = 0
        self.aborted = None
        if self.is_master:
            self.health.reset()
        else:
            self.health.start()
            self._rest_gc()
        if self.is_worker:
            self._open_turn_log()
            self._start_arrivals()
            return
        self.run_id = datetime.now().strftime("%Y%m%d-%H%M%S-") + f"{random.getrandbits(16):04x}"
        self.started = datetime.now(UTC)
        self.started_monotonic = time.monotonic()
        # The web UI may have changed the host or options since start-up.
        self.settings = self._settings()
        if not self.is_master:
            self._open_turn_log()
            self._start_arrivals()
        else:
            self.workers_seen = {client.id for client in self.runner.clients.all}
            self.workers_final = set()
            self.finals_arrived.clear()
            config = {"uses_mock": self.uses_mock, "run_id": self.run_id, "processes": len(self.workers_seen)}
            self.runner.send_message(CONFIG_MESSAGE, config)
        if self.settings.threshold_abort and self.settings.thresholds:
            self.abort_greenlet = gevent.spawn(self._watch_thresholds)
        self.users_by_interval = {}
        self.users_greenlet = gevent.spawn(self._sample_users)

    def on_spawning_complete(self, user_count: int, **_: Any) -> None:
        self.peak_users = max(self.peak_users, user_count)
        # The users and their clients live as long as the run: move them out of the collector's way,
        # so a full collection does not walk them all and pause every stream.
        gc.freeze()

    def _rest_gc(self) -> None:
        mode = self.current_settings().gc
        if self.gc_paused or mode == "on":
            return
        # With thousands of users each collection walks the objects of every turn in flight (and,
        # while they spawn, all users made so far) and pauses the process for tens to hundreds of
        # milliseconds, which land in the measured latencies. Reference counting frees almost all a
        # turn makes; what sits in reference cycles waits, for the test's end (off) or until too many
        # objects pile up (auto).
        gc.disable()
        self.gc_paused = True
        if mode == "auto":
            self.gc_greenlet = gevent.spawn(self._watch_gc)

    def _watch_gc(self) -> None:
        """While the collector rests (--gc auto): once GC_CHECK_OBJECTS more objects live than when it
        stopped, collect once; if that finds many in reference cycles, the collector comes back."""
        base = gc.get_count()[0]
        while self.gc_paused:
            gevent.sleep(GC_CHECK_SECONDS)
            if gc.get_count()[0] - base < GC_CHECK_OBJECTS:
                continue
            found = gc.collect()
            if found > GC_GARBAGE_WARN_OBJECTS:
                logger.warning(
                    "loadtest: %d objects in reference cycles piled up while the garbage collector "
                    "rested (--gc auto); it is back on, and its pauses may show in the latencies",
                    found,
                )
                gc.enable()
                self.gc_paused = False
                return
            # What survived is live state of the run: out of the way of the next collection.
            gc.freeze()
            base = gc.get_count()[0]

    def on_test_stop(self, environment: Any, **_: Any) -> None:
        self._close_turn_log()
        self._stop_arrivals()
        self.health.stop()
        self._resume_gc()
        if self.is_worker:
            # Users are stopped by now: everything this worker measured goes to the master.
            final = self.metrics.drain()
            final[HEALTH_KEY] = self.health.drain()
            self.runner.send_message(FINAL_MESSAGE, final)
            return
        for greenlet in (self.abort_greenlet, self.users_greenlet):
            if greenlet is not None and greenlet is not gevent.getcurrent():
                greenlet.kill(block=False)
        self.abort_greenlet = self.users_greenlet = None
        if self.is_master:
            self._collect_finals()
        self.write_summary()

    def _resume_gc(self) -> None:
        if self.gc_greenlet is not None and self.gc_greenlet is not gevent.getcurrent():
            self.gc_greenlet.kill(block=False)
        self.gc_greenlet = None
        if not self.gc_paused:
            return
        self.gc_paused = False
        gc.enable()
        found = gc.collect()
        if found > GC_GARBAGE_WARN_OBJECTS:
            logger.warning(
                "loadtest: %d objects in reference cycles built up while the garbage collector rested "
                "(--gc %s); if memory grew too much, run with --gc on",
                found,
                self.current_settings().gc,
            )

    def on_quitting(self, environment: Any, **_: Any) -> None:
        # Ctrl-C and SIGTERM land here while the test still runs, and Locust picks its exit code
        # right after: stop the test now so the summary and verdict exist before that.
        if self.run_id is not None and self.runner is not None and not self.is_worker:
            self.runner.stop()

    def on_quit(self, **_: Any) -> None:
        self.print_console()
        self.close()

    def on_report_to_master(self, client_id: str, data: dict[str, Any]) -> None:
        data[REPORT_KEY] = self.metrics.drain()
        data[HEALTH_KEY] = self.health.drain()

    def on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        if REPORT_KEY in data:
            self.workers_seen.add(client_id)
            self.metrics.merge_data(data[REPORT_KEY])
        if HEALTH_KEY in data:
            self.health.merge_data(data[HEALTH_KEY], source=client_id)

    def _on_config_message(self, environment: Any, msg: Any, **_: Any) -> None:
        self.uses_mock = bool(msg.data.get("uses_mock"))
        self.run_id = msg.data.get("run_id")
        self.processes = int(msg.data.get("processes") or 1)
        self.settings = None

    def _on_final_message(self, environment: Any, msg: Any, **_: Any) -> None:
        self.metrics.merge_data(msg.data)
        if HEALTH_KEY in msg.data:
            self.health.merge_data(msg.data[HEALTH_KEY], source=msg.node_id)
        self.workers_seen.add(msg.node_id)
        self.workers_final.add(msg.node_id)
        if self.workers_final >= self.workers_seen:
            self.finals_arrived.set()

    # -- pieces ------------------------------------------------------------------------------------

    def _collect_finals(self) -> None:
        """Wait until every worker of the run has sent its last data (the master stops first)."""
        if self.workers_final >= self.workers_seen:
            return
        if self.runner.user_count:
            # Only Locust's quit() fires test_stop while workers still run, and it would tell them
            # to quit only after test_stop: tell them now, so their last data arrives first.
            from locust.rpc import Message

            for client in self.runner.clients.all:
                self.runner.server.send_to_client(Message("quit", None, client.id))  # type: ignore[no-untyped-call]
        timeout = (self.environment.stop_timeout or 0) + 15
        if not self.finals_arrived.wait(timeout=timeout):
            missing = sorted(self.workers_seen - self.workers_final)
            logger.warning("loadtest: no final data from workers %s after %.0f s", missing, timeout)

    def _start_arrivals(self) -> None:
        settings = self.current_settings()
        if settings.arrival_rate is None:
            self.arrivals = None
            return
        self.arrivals = gevent.queue.Queue()
        self.arrivals_greenlet = gevent.spawn(
            self._generate_arrivals, settings.arrival_rate.share(self.processes)
        )

    def _generate_arrivals(self, rate: ArrivalRate) -> None:
        queue = self.arrivals
        assert queue is not None
        for intended_ns in Schedule(rate, time.perf_counter_ns(), random.Random()):
            delay_s = (intended_ns - time.perf_counter_ns()) / 1e9
            if delay_s > 0:
                gevent.sleep(delay_s)
            self.metrics.count("arrivals")
            queue.put(intended_ns)

    def _stop_arrivals(self) -> None:
        if self.arrivals_greenlet is not None:
            self.arrivals_greenlet.kill(block=False)
            self.arrivals_greenlet = None
        if self.arrivals is not None:
            # Arrivals still waiting for a user when the run ends: dropped if they had waited too
            # long already, else cut by the end of the run.
            settings = self.current_settings()
            now_ns = time.perf_counter_ns()
            while not self.arrivals.empty():
                waited_ns = now_ns - self.arrivals.get_nowait()
                dropped = waited_ns > settings.max_queue_wait * 1e9
                self.metrics.count("arrivals_dropped" if dropped else "arrivals_cut")
            self.arrivals = None

    def take_arrival(self, max_wait_s: float) -> int:
        """The intended start (perf_counter_ns) of the next conversation; waits for an arrival in
        the open model, is now in the closed one."""
        queue = self.arrivals
        if queue is None:
            return time.perf_counter_ns()
        while True:
            intended_ns: int = queue.get()
            waited_ns = time.perf_counter_ns() - intended_ns
            if waited_ns > max_wait_s * 1e9:
                self.metrics.count("arrivals_dropped")
                continue
            if waited_ns > LATE_NS:
                self.metrics.count("arrivals_late")
            return intended_ns

    def _sample_users(self) -> None:
        # For the time series: the most users active in each interval, as the master sees them.
        while True:
            interval = interval_of(time.time())
            count = int(self.runner.user_count or 0)
            self.users_by_interval[interval] = max(count, self.users_by_interval.get(interval, 0))
            self.metrics.settle_intervals(interval - SETTLE_AFTER_S)
            gevent.sleep(1.0)

    def _watch_thresholds(self) -> None:
        settings = self.current_settings()
        while True:
            gevent.sleep(ABORT_CHECK_SECONDS)
            if time.monotonic() - self.started_monotonic < settings.threshold_warmup:
                continue
            summary = self._summary()
            for threshold in settings.thresholds:
                if not thresholds.can_still_pass(threshold, summary):
                    self.aborted = threshold.expr
                    logger.error(
                        "loadtest: threshold %s failed after the warm-up: stopping the run", threshold.expr
                    )
                    self.abort_greenlet = None
                    headless = getattr(self.environment.parsed_options, "headless", False)
                    gevent.spawn(self.runner.quit if headless else self.runner.stop)
                    return

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

    def _open_turn_log(self) -> None:
        self._close_turn_log()
        settings = self.current_settings()
        if settings.turn_log and self.run_id:
            name = f"turns-{socket.gethostname()}-{os.getpid()}.jsonl"
            self.turn_log = TurnLog(settings.report_dir / self.run_id / name)

    def _close_turn_log(self) -> None:
        if self.turn_log is not None:
            self.turn_log.close()
            self.turn_log = None

    def record(
        self, result: TurnResult, scenario: str, index: int, conversation_id: str, intended_ns: int
    ) -> None:
        m = self.metrics
        scopes = (f"turn={index}", f"scenario={scenario}")
        m.count_scoped("turns", scopes)
        late_ns = max(result.t_start_ns - intended_ns, 0)
        if late_ns > LATE_NS:
            m.count("turns_late")
        for key, n in result.protocol.items():
            m.protocol[key] += n
        if result.system_fingerprint:
            m.fingerprints.add(result.system_fingerprint)
        interval = interval_of(time.time())
        m.count("chunks", result.chunks)
        m.count(at("chunks", interval), result.chunks)
        m.count("chars", len(result.content))
        if result.ok:
            # Latency figures describe turns that worked; failures are counted by kind instead.
            m.count_scoped("turns_ok", scopes)
            m.count(at("turns_ok", interval))
            m.record_scoped("turn", result.latency_ns, scopes, interval)
            # Response time: from when the turn should have started (coordinated omission corrected).
            m.hist("turn_response").record_ns(result.latency_ns + late_ns)
            if result.ttft_ns is not None:
                m.record_scoped("ttft", result.ttft_ns, scopes, interval)
                m.hist("ttft_response").record_ns(result.ttft_ns + late_ns)
            for gap in result.itl_ns:
                m.itl.record_ns(gap)
        else:
            m.count_scoped("turns_cut" if result.kind == "cut" else "turns_failed", scopes)
            if result.kind != "cut":
                m.count(at("turns_failed", interval))
            m.error(result.kind or "unknown", result.detail)
            m.count(scoped(f"{ERROR_COUNT_PREFIX}{result.kind}", "scenario", scenario))
        if self.turn_log is not None:
            self.turn_log.write(
                {
                    "scenario": scenario,
                    "turn": index,
                    "conversation_id": conversation_id,
                    "ok": result.ok,
                    "kind": result.kind,
                    "status": result.status,
                    "ttft_us": None if result.ttft_ns is None else result.ttft_ns // 1000,
                    "latency_us": result.latency_ns // 1000,
                    "late_us": late_ns // 1000,
                    "chunks": result.chunks,
                    "chars": len(result.content),
                }
            )

    def _summary(self) -> dict[str, Any]:
        settings = self.settings
        runner = self.runner
        ended = datetime.now(UTC)
        run = {
            "id": self.run_id,
            "started": self.started.isoformat(timespec="seconds") if self.started else None,
            "ended": ended.isoformat(timespec="seconds"),
            "duration_s": round((ended - self.started).total_seconds(), 1) if self.started else None,
            "loadtest_version": _version("loadtest"),
            "locust_version": _version("locust"),
            "host": self.environment.host,
            "deployment": settings.deployment if settings else None,
            "channel": settings.channel if settings else None,
            "mock": self.uses_mock,
            "users": self.peak_users or getattr(runner, "target_user_count", None) or 0,
            "workers": len(self.workers_seen) if self.is_master else 1,
            "history": settings.history if settings else None,
            "transport": settings.transport if settings else None,
            "gc": settings.gc if settings else None,
            "system_fingerprints": sorted(self.metrics.fingerprints),
        }
        if self.is_master and self.workers_seen - self.workers_final:
            run["workers_without_final_report"] = sorted(self.workers_seen - self.workers_final)
        summary = build_summary(self.metrics, run, self.users_by_interval)
        outcomes = thresholds.evaluate(settings.thresholds if settings else [], summary)
        summary["thresholds"] = [o.to_json() for o in outcomes]
        summary["verdict"] = thresholds.verdict(outcomes)
        health = summary["client_health"] = self.health.summary()
        if health["bottleneck"] and self.strict_client:
            summary["verdict"] = "fail"
        if self.aborted:
            summary["run"]["aborted_by_threshold"] = self.aborted
        return summary

    def write_summary(self) -> Path | None:
        if self.run_id is None:
            return None
        summary = self._summary()
        settings = self.current_settings()
        run_dir = write_run(settings.report_dir, self.run_id, summary)
        self.last_run_dir = run_dir
        self.run_id = None
        if settings.thresholds or self.strict_client:
            # With thresholds the verdict decides the exit code, not Locust's any-failure rule.
            failed = summary["verdict"] != "pass"
            self.environment.process_exit_code = EXIT_THRESHOLDS_FAILED if failed else 0
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
        self._close_turn_log()
        if self.mock is not None:
            self.mock.stop()
            self.mock = None


def _sleep_until(deadline_ns: int) -> None:
    """Sleep to the deadline; past it, still yield once before the turn goes out.

    Locust stops a user that is waiting between conversations by killing its greenlet, but the kill
    lands at the user's next switch: a user whose wait had just ended would send its next request
    first and be killed while reading the answer, a turn the server counts and the run cuts. The
    yield lets such a kill arrive before anything is sent.
    """
    gevent.sleep(max((deadline_ns - time.perf_counter_ns()) / 1e9, 0.0))


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _exit_with(message: str) -> None:
    print(f"loadtest: error: {message}", file=sys.stderr)
    sys.exit(EXIT_CONFIG_ERROR)


def register(events: Any) -> LoadtestPlugin:
    """Attach loadtest to a Locust events object (`locust.events` in a locustfile)."""
    plugin = LoadtestPlugin()
    events.init_command_line_parser.add_listener(add_arguments)
    events.init.add_listener(plugin.on_init)
    events.test_start.add_listener(plugin.on_test_start)
    events.spawning_complete.add_listener(plugin.on_spawning_complete)
    events.test_stop.add_listener(plugin.on_test_stop)
    events.quitting.add_listener(plugin.on_quitting)
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
        settings = self.plugin.current_settings()
        # In the open model the arrival schedule paces conversations, not the users.
        return 0.0 if settings.arrival_rate is not None else settings.pacing.between_conversations(self.rng)

    def on_start(self) -> None:
        settings = self.plugin.current_settings()
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
        settings = self.plugin.current_settings()
        assert self.client is not None
        intended_ns = self.plugin.take_arrival(settings.max_queue_wait)
        scenario = choose(settings.scenarios, self.rng)
        turns = scenario.pick(self.rng)
        conv = Conversation(scenario, nlx.new_conversation_id(), settings.history)
        scopes = (f"scenario={scenario.name}",)
        # The metrics object is replaced at each test start: always count into the current one.
        self.plugin.metrics.count_scoped("conversations_started", scopes)
        t_start = intended_ns
        failed = False
        stop_after = abandon_after(self.rng, settings.abandon, len(turns))
        previous_reply: str | None = None
        for index, turn in enumerate(turns, start=1):
            text = turn.render(self.rng)
            pause_s = settings.pacing.before_turn(self.rng, previous_reply, text)
            # The intended start counts from the previous turn's end (or the arrival), so a late
            # wake-up of this greenlet shows as lateness, not as a shorter pause.
            intended_ns = (intended_ns if index == 1 else time.perf_counter_ns()) + int(pause_s * 1e9)
            _sleep_until(intended_ns)
            body = settings.request_body(conv.conversation_id, conv.request_messages(text))

            def on_cut(result: TurnResult, index: int = index, intended_ns: int = intended_ns) -> None:
                self.plugin.record(result, scenario.name, index, conv.conversation_id, intended_ns)

            result = stream_turn(
                self.client,
                settings.url,
                body,
                api_key=settings.api_key,
                on_cut=on_cut,
                first_byte_timeout=settings.first_byte_timeout,
                idle_timeout=settings.idle_timeout,
                on_pool_wait=self.plugin.health.record_pool_wait,
            )
            if result.ok:
                problem = turn.check(result.content) or (
                    settings.fallback and settings.fallback(result.content)
                )
                if problem:
                    result = dataclasses.replace(result, ok=False, kind="assertion", detail=problem)
            self.plugin.record(result, scenario.name, index, conv.conversation_id, intended_ns)
            self.environment.events.request.fire(
                request_type="CHAT",
                name=f"turn {index}",
                response_time=result.latency_ns / 1e6,
                response_length=len(result.content),
                exception=None if result.ok else TurnFailed(result.kind),
                context={"scenario": scenario.name, "conversation_id": conv.conversation_id},
            )
            if result.ok or result.kind == "assertion":
                # A reply that failed a check was still given: it belongs in the history.
                conv.add_reply(result.content)
                previous_reply = result.content
            if not result.ok:
                failed = True
                if settings.on_turn_error == "stop":
                    break
            if index == stop_after:
                self.plugin.metrics.count_scoped("conversations_abandoned", scopes)
                return
        if failed:
            self.plugin.metrics.count_scoped("conversations_failed", scopes)
            return
        self.plugin.metrics.count_scoped("conversations_completed", scopes)
        self.plugin.metrics.record_scoped("conversation", time.perf_counter_ns() - t_start, scopes)
