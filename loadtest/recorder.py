"""Turn recording: what one finished (or cut) turn and one conversation add to a run's metrics.

Every count and histogram a run fills is written here, under the names of `loadtest.catalog`; the
`Metrics` object refuses a counter the registry does not know, so none can vanish from summary.json.
"""

from __future__ import annotations

import os
import socket
import time
import weakref
from pathlib import Path
from typing import Any

import gevent

from loadtest.arrivals import LATE_NS
from loadtest.catalog import SCENARIO, TURN, Failure, excerpt
from loadtest.client import TurnResult
from loadtest.goodput import Goodput
from loadtest.metrics import Metrics, interval_of
from loadtest.report.turns import TurnLog

# The turn log keeps the start of each reply: enough to see what a failed check saw.
TURN_LOG_REPLY_CHARS = 200


class TurnRecorder:
    """Records turns and conversations into the current `Metrics` of this process.

    `reset()` starts afresh (a new test, or the end of a warm-up); `stop_recording()` ignores turns
    from then on (a benchmark that must not count the turns Locust's stop burst delays). `goodput`
    holds the bounds of `--goodput` that good turns and conversations are counted by.
    """

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.turn_log: TurnLog | None = None
        self.recording = True
        self.goodput = Goodput()
        # Whether every turn so far of each open conversation was good: by conversation id when the
        # caller gives it, else by greenlet (a user's conversation runs in its greenlet from
        # conversation_started through its turns to conversation_ended; a user killed mid-conversation
        # takes its entry with it).
        self._all_good: dict[str, bool] = {}
        self._all_good_here: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()

    def reset(self) -> None:
        self.metrics = Metrics()
        self.recording = True
        self._all_good.clear()

    def stop_recording(self) -> None:
        self.recording = False

    def drain(self) -> dict[str, Any]:
        """Everything recorded since the last drain, as plain data for the master."""
        return self.metrics.drain()

    def open_turn_log(self, run_dir: Path) -> None:
        self.close_turn_log()
        self.turn_log = TurnLog(run_dir / f"turns-{socket.gethostname()}-{os.getpid()}.jsonl")

    def close_turn_log(self) -> None:
        if self.turn_log is not None:
            self.turn_log.close()
            self.turn_log = None

    def count(self, name: str) -> None:
        """One more of a plain counter (arrivals and the like)."""
        self.metrics.count(name)

    def conversation_started(self, scenario: str, conversation_id: str | None = None) -> None:
        self.metrics.count_scoped("conversations_started", (_scope(SCENARIO, scenario),))
        if conversation_id is not None:
            self._all_good[conversation_id] = True
        else:
            self._all_good_here[gevent.getcurrent()] = True

    def conversation_ended(
        self, scenario: str, outcome: str, duration_ns: int, conversation_id: str | None = None
    ) -> None:
        """`outcome` is completed, failed or abandoned; only a completed one is timed, and counted as
        good when every turn was and it met the conversation bound."""
        scopes = (_scope(SCENARIO, scenario),)
        if conversation_id is not None:
            all_good = self._all_good.pop(conversation_id, False)
        else:
            all_good = self._all_good_here.pop(gevent.getcurrent(), False)
        self.metrics.count_scoped(f"conversations_{outcome}", scopes)
        if outcome == "completed":
            self.metrics.record_scoped("conversation", duration_ns, scopes)
            if all_good and self.goodput.conversation_good(duration_ns):
                self.metrics.count_scoped("conversations_good", scopes)

    def turn(
        self,
        result: TurnResult,
        scenario: str,
        index: int,
        conversation_id: str,
        intended_ns: int,
        transcript: int | None = None,
    ) -> None:
        """One turn: counted by turn index and scenario, timed when the server answered it (a reply
        that failed an answer check was still given in its time), counted by kind when it failed,
        counted as cut when the end of the run stopped it. `transcript`: which of the scenario's
        transcripts it played, when it has several."""
        if not self.recording:
            return
        m = self.metrics
        scopes = (_scope(TURN, index), _scope(SCENARIO, scenario))
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
        m.count_at("chunks", interval, result.chunks)
        m.count("chars", len(result.content))
        if result.reasoning_chars:
            m.count("reasoning_chars", result.reasoning_chars)
        self._connection(result, interval)
        self._usage(result, interval)
        if result.ok:
            m.count_scoped("turns_ok", scopes)
            m.count_at("turns_ok", interval)
        else:
            self._failed_or_cut(result, scopes, interval)
        good = result.ok and self.goodput.turn_good(result)
        if good:
            m.count_scoped("turns_good", scopes)
        if not good:
            if conversation_id in self._all_good:
                self._all_good[conversation_id] = False
            elif gevent.getcurrent() in self._all_good_here:
                self._all_good_here[gevent.getcurrent()] = False
        if result.ok or result.kind == Failure.ASSERTION:
            # Latency figures describe turns the server answered: a reply that failed a check is a
            # content failure, not a slow one. HTTP and stream failures are counted by kind only.
            m.record_scoped("turn", result.latency_ns, scopes, interval)
            # Response time: from when the turn should have started (coordinated omission corrected).
            m.hist("turn_response").record_ns(result.latency_ns + late_ns)
            if result.ttft_ns is not None:
                m.record_scoped("ttft", result.ttft_ns, scopes, interval)
                m.hist("ttft_response").record_ns(result.ttft_ns + late_ns)
            m.itl.record_all_ns(result.itl_ns)
            self._generation(result)
        if self.turn_log is not None:
            # Wall-clock start of the turn, for lining the log up with server logs.
            started = time.time() - (time.perf_counter_ns() - result.t_start_ns) / 1e9
            self.turn_log.write(
                {
                    "started": round(started, 3),
                    "scenario": scenario,
                    "transcript": transcript,
                    "turn": index,
                    "conversation_id": conversation_id,
                    "ok": result.ok,
                    "kind": result.kind,
                    "reason": None if result.ok else result.detail,
                    "status": result.status,
                    "ttft_us": _us(result.ttft_ns),
                    "latency_us": result.latency_ns // 1000,
                    "late_us": late_ns // 1000,
                    "chunks": result.chunks,
                    "chars": len(result.content),
                    "reply": excerpt(result.content, TURN_LOG_REPLY_CHARS),
                    **_turn_log_phases(result),
                }
            )

    def _connection(self, result: TurnResult, interval: int) -> None:
        """Time to the response headers, for every turn that got them; whether the turn opened a
        connection or reused one, and the phases of a new one."""
        m = self.metrics
        ttfb = result.ttfb_ns
        if ttfb is not None:
            m.hist("ttfb").record_ns(ttfb)
        conn = result.connection
        if conn is None:
            return
        name = "connections_opened" if conn.new else "connections_reused"
        m.count(name)
        m.count_at(name, interval)
        for key, phase_ns in (("dns", conn.dns_ns), ("connect", conn.connect_ns), ("tls", conn.tls_ns)):
            if phase_ns is not None:
                m.hist(key).record_ns(phase_ns)

    def _usage(self, result: TurnResult, interval: int) -> None:
        """The tokens the stream reported, whatever became of the turn: the server spent them."""
        if result.prompt_tokens is None and result.completion_tokens is None:
            return
        m = self.metrics
        m.count("turns_with_usage")
        m.count("prompt_tokens", result.prompt_tokens or 0)
        m.count("completion_tokens", result.completion_tokens or 0)
        m.count_at("completion_tokens", interval, result.completion_tokens or 0)
        m.count("reasoning_tokens", result.reasoning_tokens or 0)

    def _generation(self, result: TurnResult) -> None:
        """Time to first reasoning, and for a succeeded turn its token rates and the split of its
        latency."""
        m = self.metrics
        ttfr = result.ttfr_ns
        if ttfr is not None:
            m.hist("ttfr").record_ns(ttfr)
        tpot = result.tpot_ns
        if tpot is not None:
            m.hist("tpot").record_ns(tpot)
        rate = result.output_tps
        if rate is not None:
            # Thousandths of a token per second, as every histogram keeps thousandths of its unit.
            m.hist("output_tps").record_us(round(rate * 1000))
        split = result.time_split_ns()
        if split is not None:
            m.split(result.latency_ns, split)

    def _failed_or_cut(self, result: TurnResult, scopes: tuple[str, ...], interval: int) -> None:
        """A turn cut by the end of the run is no error of the endpoint: it is only counted as cut, so
        `errors` (and by_scenario's) list the failures alone."""
        m = self.metrics
        if result.kind == Failure.CUT:
            m.count_scoped("turns_cut", scopes)
            return
        kind = result.kind or Failure.UNKNOWN
        m.count_scoped("turns_failed", scopes)
        m.count_at("turns_failed", interval)
        m.error(kind, result.detail, scopes)
        m.count_error(kind, scopes)


def _scope(scope: str, value: str | int) -> str:
    return f"{scope}={value}"


def _us(value_ns: int | None) -> int | None:
    return None if value_ns is None else value_ns // 1000


def _turn_log_phases(result: TurnResult) -> dict[str, Any]:
    """What the turn log adds for the connection, reasoning and tokens: enough to recompute tpot and
    output_tps (`first_output_us` is the first answer or reasoning chunk)."""
    conn = result.connection
    first_output = [t for t in (result.t_first_content_ns, result.t_first_reasoning_ns) if t is not None]
    return {
        "ttfb_us": _us(result.ttfb_ns),
        "ttfr_us": _us(result.ttfr_ns),
        "first_output_us": _us(min(first_output) - result.t_start_ns) if first_output else None,
        "connection": None if conn is None else "new" if conn.new else "reused",
        "dns_us": _us(conn.dns_ns) if conn else None,
        "connect_us": _us(conn.connect_ns) if conn else None,
        "tls_us": _us(conn.tls_ns) if conn else None,
        "reasoning_chars": result.reasoning_chars,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "reasoning_tokens": result.reasoning_tokens,
    }
