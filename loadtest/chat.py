"""Conversations in a locustfile's own tasks: `Chat`, the one path every turn of a run takes.

    class OrderUser(NLXChatUser):
        @task
        def order_status(self) -> None:
            with self.conversation("order_status") as chat:
                reply = chat.say("Hi, where is my order?")
                if "order number" in reply.text.lower():
                    chat.say(f"It's {random.randint(10000, 99999)}", expect={"not_contains": "sorry"})
                chat.say("Thanks, that's all.")

A `Chat` is one conversation: a new conversation id, the history `--history` asks for, a name for
the reports. `say` waits the think time `--think-time` gives, streams one turn, checks the reply
(`expect`, `--fallback-pattern`), records it (per turn, per scenario, goodput, the turn log) and fires
Locust's request event; it returns the `Reply`. A failed turn ends the conversation with
`--on-turn-error stop` (the default): `say` raises `ConversationOver`, which the `with` block absorbs.
The conversations file's scenarios are played by `play_scenario`, a loop over `say`, so a turn is
measured the same way whoever wrote it.

Timing: a turn is meant to start (`intended_ns`, from which its response time and lateness count) a
think time after its base: for the first turn, the conversation's arrival (`--arrival-rate`, else when
it began); after a `think`, the end of that pause as planned; otherwise when `say` is called. So a
greenlet that wakes late shows as lateness, and the flow's own code between two turns does not.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import gevent

from loadtest import nlx
from loadtest.catalog import Failure, excerpt
from loadtest.checks import Expectation
from loadtest.client import TurnResult, stream_turn
from loadtest.conversation import Conversation, Scenario, choose
from loadtest.pacing import abandon_after

if TYPE_CHECKING:
    from loadtest.plugin import NLXChatUser

# How much of a reply that failed an answer check its error example quotes.
REPLY_IN_EXAMPLE_CHARS = 80
REQUEST_TYPE = "CHAT"

Outcome = Literal["completed", "failed", "abandoned"]


class TurnFailed(Exception):
    """What Locust's error table shows for a failed turn: its kind."""


class ConversationOver(Exception):
    """A conversation that ends before its flow does: a failed turn with `--on-turn-error stop`, or
    `Chat.abandon`. The conversation's `with` block absorbs it."""

    def __init__(self, chat: Chat, outcome: Outcome) -> None:
        super().__init__(f"conversation {chat.name!r} {outcome}")
        self.chat = chat
        self.outcome = outcome


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """What one turn got back: the reply put together from the stream, and how the turn went."""

    text: str
    ok: bool
    # Why the turn failed (`http_429`, `idle_timeout`, `assertion`...; see README "What a turn
    # measures"), None when it did not; `detail` says more.
    kind: str | None
    detail: str
    status: int | None
    ttft_ms: float | None
    latency_ms: float
    chunks: int
    # Its place in the conversation: 1 for the first turn.
    turn: int

    @classmethod
    def of(cls, result: TurnResult, turn: int) -> Reply:
        ttft = result.ttft_ns
        return cls(
            text=result.content,
            ok=result.ok,
            kind=result.kind,
            detail=result.detail,
            status=result.status,
            ttft_ms=None if ttft is None else ttft / 1e6,
            latency_ms=result.latency_ns / 1e6,
            chunks=result.chunks,
            turn=turn,
        )


class Chat:
    """One conversation of one user, as a context manager (`NLXChatUser.conversation`)."""

    def __init__(self, user: NLXChatUser, scenario: Scenario) -> None:
        self.user = user
        self.name = scenario.name
        self.settings = user.loadtest.current_settings()
        self.conversation_id = nlx.new_conversation_id()
        self.history = Conversation(scenario, self.conversation_id, self.settings.history)
        # The last turn's reply (None before the first turn).
        self.last: Reply | None = None
        self.failed = False
        self._turns = 0
        self._over: Outcome | None = None
        # The base of the next turn's intended start when it is not the call of `say` (see the module).
        self._base_ns: int | None = None
        # The first turn's intended start: a conversation is timed from there.
        self._first_ns: int | None = None
        self._entered = self._open = False

    def __enter__(self) -> Chat:
        if self._entered:
            raise RuntimeError(f"conversation {self.name!r} was opened already: open a new one")
        lt = self.user.loadtest
        self._base_ns = lt.arrivals.take()
        self._entered = self._open = True
        lt.recorder.conversation_started(self.name, self.conversation_id)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is None:
            self._end(self._over or ("failed" if self.failed else "completed"))
            return False
        if isinstance(exc, ConversationOver) and exc.chat is self:
            self._end(exc.outcome)
            return True
        if isinstance(exc, Exception):
            # The flow's own error: Locust reports it; the conversation did not complete.
            self._end("failed")
        # Anything else stops the user (the end of the run): a turn under way was recorded as cut.
        return False

    def say(self, text: str, *, expect: Expectation | Mapping[str, Any] | None = None) -> Reply:
        """Send `text` as the next user message after the think time, and return the reply.

        `expect` checks it (a mapping as in a conversations file: `{"contains": "order"}`); a reply
        that fails a check is a failed turn of kind `assertion`. A failed turn raises
        `ConversationOver` with `--on-turn-error stop`; with `continue` its reply comes back."""
        if not self._open:
            raise RuntimeError("say() belongs in a `with self.conversation(name) as chat:` block")
        if self._over is not None:
            raise ConversationOver(self, self._over)
        user, settings = self.user, self.settings
        check = (
            expect if isinstance(expect, Expectation) or expect is None else Expectation.parse(dict(expect))
        )
        previous = None if self.last is None else self.last.text
        pause_s = settings.pacing.before_turn(user.rng, previous, text)
        base_ns = time.perf_counter_ns() if self._base_ns is None else self._base_ns
        self._base_ns = None
        intended_ns = base_ns + int(pause_s * 1e9)
        if self._first_ns is None:
            self._first_ns = intended_ns
        sleep_until(intended_ns)
        self._turns += 1
        result = self._checked(self._stream(text, intended_ns), check)
        self._report(result, intended_ns)
        if result.ok or result.kind == Failure.ASSERTION:
            # A reply that failed a check was still given: it belongs in the history.
            self.history.add_reply(result.content)
        self.last = reply = Reply.of(result, self._turns)
        if not result.ok:
            self.failed = True
            if settings.on_turn_error == "stop":
                self._over = "failed"
                raise ConversationOver(self, "failed")
        return reply

    def think(self, seconds: float) -> None:
        """Pause for `seconds` now, as a person would (on top of the think time before each turn)."""
        if not seconds >= 0:
            raise ValueError(f"think({seconds!r}): give a number of seconds, 0 or more")
        base_ns = time.perf_counter_ns() if self._base_ns is None else self._base_ns
        self._base_ns = base_ns + int(seconds * 1e9)
        sleep_until(self._base_ns)

    def abandon(self) -> NoReturn:
        """End the conversation here, as a user who walks away: counted as abandoned."""
        self._over = "abandoned"
        raise ConversationOver(self, "abandoned")

    def _stream(self, text: str, intended_ns: int) -> TurnResult:
        """One streamed turn; a turn the end of the run cuts is recorded as it stops."""
        user, settings, index = self.user, self.settings, self._turns
        assert user.client is not None, "the user has not started"
        recorder = user.loadtest.recorder
        on_cut = lambda result: recorder.turn(result, self.name, index, self.conversation_id, intended_ns)  # noqa: E731
        return stream_turn(
            user.client,
            settings.url,
            settings.request_body(self.conversation_id, self.history.request_messages(text)),
            api_key=settings.api_key,
            on_cut=on_cut,
            first_byte_timeout=settings.first_byte_timeout,
            idle_timeout=settings.idle_timeout,
            on_pool_wait=user.loadtest.health.record_pool_wait,
        )

    def _checked(self, result: TurnResult, expect: Expectation | None) -> TurnResult:
        """The turn, failed with kind `assertion` when its reply fails a check."""
        if not result.ok:
            return result
        fallback = self.settings.fallback
        problem = (expect and expect.check(result.content)) or (fallback and fallback(result.content))
        if not problem:
            return result
        # What was expected, and what came: the example a failed check leaves behind.
        detail = f'{problem}; the reply: "{excerpt(result.content, REPLY_IN_EXAMPLE_CHARS)}"'
        return dataclasses.replace(result, ok=False, kind=Failure.ASSERTION, detail=detail)

    def _report(self, result: TurnResult, intended_ns: int) -> None:
        user = self.user
        user.loadtest.recorder.turn(result, self.name, self._turns, self.conversation_id, intended_ns)
        user.environment.events.request.fire(
            request_type=REQUEST_TYPE,
            name=f"turn {self._turns}",
            response_time=result.latency_ns / 1e6,
            response_length=len(result.content),
            exception=None if result.ok else TurnFailed(result.kind),
            context={"scenario": self.name, "conversation_id": self.conversation_id},
        )

    def _end(self, outcome: Outcome) -> None:
        self._open = False
        # Only a completed conversation is timed: from its first turn's intended start to now.
        started = self._first_ns
        duration_ns = time.perf_counter_ns() - started if started is not None else 0
        self.user.loadtest.recorder.conversation_ended(self.name, outcome, duration_ns, self.conversation_id)


def play_scenario(user: NLXChatUser) -> None:
    """One conversation of the conversations file: a scenario picked by weight, its turns in order (a
    `reply_is` turn picks its message by the last reply), abandoned early as `--abandon` says."""
    settings = user.loadtest.current_settings()
    scenario = choose(settings.scenarios, user.rng)
    turns = scenario.pick(user.rng)
    stop_after = abandon_after(user.rng, settings.abandon, len(turns))
    with Chat(user, scenario) as chat:
        for number, step in enumerate(turns, start=1):
            turn = step.respond("" if chat.last is None else chat.last.text)
            if turn is not None:
                chat.say(turn.render(user.rng), expect=turn.expect)
            if number == stop_after:
                chat.abandon()


def sleep_until(deadline_ns: int) -> None:
    """Sleep to the deadline; past it, still yield once before the turn goes out.

    Locust stops a user that is waiting between conversations by killing its greenlet, but the kill
    lands at the user's next switch: a user whose wait had just ended would send its next request
    first and be killed while reading the answer, a turn the server counts and the run cuts. The
    yield lets such a kill arrive before anything is sent.
    """
    gevent.sleep(max((deadline_ns - time.perf_counter_ns()) / 1e9, 0.0))
