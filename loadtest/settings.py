"""One typed settings object, built once from Locust's parsed options and the environment.

Each option is parsed by its entry in `loadtest.options.OPTIONS` into the field of the same name
(`Option.field`); what depends on several options (the endpoint, the mock's defaults, the timeouts
that default to --read-timeout) is checked here.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loadtest import nlx, thresholds
from loadtest.arrivals import ArrivalRate
from loadtest.capacity import LoadRange
from loadtest.checks import Check
from loadtest.conversation import History, Outline, Scenario, load_scenarios, scenario_outline
from loadtest.errors import ConfigError
from loadtest.goodput import Goodput
from loadtest.mock.contract import API_KEY_ENV, DEFAULT_API_KEY
from loadtest.options import (
    API,
    CONVERSATIONS,
    HISTORY,
    MODEL,
    NLX_CHANNEL,
    NLX_DEPLOYMENT,
    OPTIONS,
    PATH,
    THRESHOLD,
)
from loadtest.pacing import Pacing
from loadtest.stages import Stage

# The built-in mock's key when NLX_API_KEY is not set: it guards nothing, it only exercises the header.
MOCK_API_KEY = DEFAULT_API_KEY
MOCK_DEPLOYMENT = "demo"
MOCK_CHANNEL = "web-en-US"
CONVERSATIONS_FILE = "conversations.yaml"
OPENAI_KEY_ENV = "OPENAI_API_KEY"
MOCK_MODEL = "mock-model"
USAGE_STREAM_OPTIONS = {"include_usage": True}


@dataclass(frozen=True, slots=True)
class Plays:
    """What a locustfile's users play: the conversations file (`scripts`), conversations written as
    tasks of their own (`flows`), or both; a run whose users only play flows needs no file."""

    scripts: bool = True
    flows: bool = False


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every option of `loadtest.options.OPTIONS` (one field each, typed), and what follows from them."""

    # the endpoint
    host: str
    uses_mock: bool
    api: str
    deployment: str
    channel: str
    api_key: str = field(repr=False)
    model: str
    path: str
    # --api openai asks the stream for its token usage (off with --no-usage)
    usage: bool
    # the users
    pacing: Pacing
    abandon: float
    fallback: Check | None
    history: History
    conversations_path: Path
    # Checked whole at start, kept as names and sizes: a master needs no more (see `scenarios`).
    # Empty when the run needs no file (see `wanted_conversations`).
    outline: tuple[Outline, ...]
    # the load
    arrival_rate: ArrivalRate | None
    max_queue_wait: float
    stages: tuple[Stage, ...] | None
    # the capacity search (loadtest.capacity.plan checks how they go together)
    search_users: LoadRange | None
    search_rate: LoadRange | None
    search_resolution: float
    step_time: float
    step_warmup: float
    min_capacity: float | None
    # the run's output and verdict
    report_dir: Path
    turn_log: bool
    thresholds: tuple[thresholds.Threshold, ...]
    goodput: Goodput
    threshold_abort: bool
    threshold_warmup: float
    strict_client: bool
    fail_fast: bool
    # the progress line of a headless run
    progress: bool
    # Locust's own --headless: the console summary then prints at quit, after Locust's tables.
    headless: bool
    # the client
    connect_timeout: float
    read_timeout: float
    first_byte_timeout: float
    idle_timeout: float
    on_turn_error: str
    insecure: bool
    transport: str
    gc: str
    mock_options: str

    @cached_property
    def scenarios(self) -> tuple[Scenario, ...]:
        """The scenarios users play, read on first use (once per process and file: see
        `conversation.preload`, which load-generating processes call before their users start)."""
        return load_scenarios(self.conversations_path)

    @property
    def url(self) -> str:
        if self.api == "openai":
            return self.host.rstrip("/") + self.path
        return nlx.completions_url(self.host, self.deployment, self.channel)

    def request_body(self, conversation_id: str, messages: list[dict[str, str]]) -> dict[str, Any]:
        if self.api == "openai":
            body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True}
            if self.usage:
                # OpenAI's way to get the token counts in a stream: one last chunk with `usage`.
                body["stream_options"] = USAGE_STREAM_OPTIONS
            return body
        return nlx.request_body(conversation_id, messages)


def from_options(options: Any, host: str | None, *, uses_mock: bool, plays: Plays = Plays()) -> Settings:
    """Parse every option of `loadtest.options.OPTIONS` and check how they go together; raise
    ConfigError with a one-line message naming the fix. `plays`: what the users play, which says
    whether a conversations file must be there."""
    if not host:
        raise ConfigError("no host: pass --host https://apps.nlx.ai/v1 (or leave it out to use the mock)")
    if not host.startswith(("http://", "https://")):
        raise ConfigError(f"--host {host!r} must start with http:// or https://")
    api = API.read(options)
    history = HISTORY.read(options)
    # The endpoint first: a missing key or channel is the likeliest mistake of a first run.
    endpoint = (
        _openai_endpoint(options, history, uses_mock)
        if api == "openai"
        else _nlx_endpoint(options, uses_mock)
    )
    values: dict[str, Any] = {option.field: option.read(options) for option in OPTIONS}
    conversations = conversations_path(options)
    wanted = wanted_conversations(options, plays)
    outline = () if wanted is None else scenario_outline(wanted)
    if not plays.flows:
        # A scope the file cannot fill would fail with "no data" only after the whole run. Flows
        # written in Python name their conversations as they run: then any name may come.
        thresholds.check_scopes(values["thresholds"], _scope_stand_ins(outline), source=str(conversations))
    read_timeout = values["read_timeout"]
    values.update(
        endpoint,
        host=host,
        uses_mock=uses_mock,
        headless=bool(getattr(options, "headless", False)),
        conversations_path=conversations,
        outline=outline,
        first_byte_timeout=values["first_byte_timeout"] or read_timeout,
        idle_timeout=values["idle_timeout"] or read_timeout,
    )
    return Settings(**values)


def _scope_stand_ins(outline: tuple[Outline, ...]) -> list[Scenario]:
    """Scenarios as `thresholds.check_scopes` reads them (names, and script lengths through their
    longest script), made from the outline: nothing more of the file is kept here."""
    return [Scenario(o.name, (("",) * o.longest,), o.weight) for o in outline]


def _nlx_endpoint(options: Any, uses_mock: bool) -> dict[str, Any]:
    deployment = NLX_DEPLOYMENT.read(options) or (MOCK_DEPLOYMENT if uses_mock else None)
    channel = NLX_CHANNEL.read(options) or (MOCK_CHANNEL if uses_mock else None)
    api_key = os.environ.get(API_KEY_ENV, "")
    if not api_key:
        if not uses_mock:
            raise ConfigError(f"{API_KEY_ENV} is not set: export {API_KEY_ENV}=<your NLX API key>")
        api_key = MOCK_API_KEY
    return {
        "deployment": nlx.check_deployment_key(deployment),
        "channel": nlx.check_channel_key(channel),
        "api_key": api_key,
        "model": "",
    }


def _openai_endpoint(options: Any, history: str, uses_mock: bool) -> dict[str, Any]:
    if history != "full":
        raise ConfigError("--history last needs server-side conversation state: use it with --api nlx")
    model = MODEL.read(options) or (MOCK_MODEL if uses_mock else None)
    if not model:
        raise ConfigError("--api openai needs a model name: pass --model NAME (or set LOADTEST_MODEL)")
    PATH.read(options)  # a bad --path is the next likeliest mistake: say so before the rest
    # Local OpenAI-compatible servers often take no key; send one only when there is one.
    api_key = (
        os.environ.get(OPENAI_KEY_ENV) or os.environ.get(API_KEY_ENV) or (MOCK_API_KEY if uses_mock else "")
    )
    return {"deployment": "", "channel": "", "api_key": api_key, "model": model}


def threshold_expressions(options: Any) -> list[str]:
    """--threshold (repeatable, also a list in locust.conf) and LOADTEST_THRESHOLDS (';'-separated)."""
    expressions: list[str] = THRESHOLD.raw(options)
    return expressions


def conversations_path(options: Any) -> Path:
    """--conversations, or the conversations.yaml beside the (first) locustfile."""
    return CONVERSATIONS.read(options) or _beside_locustfile(options)


def wanted_conversations(options: Any, plays: Plays) -> Path | None:
    """The conversations file a run reads at start: the one --conversations names, or the default
    when the users play the file; None when they only play flows of their own and none is named."""
    given: Path | None = CONVERSATIONS.read(options)
    if given is not None:
        return given
    return _beside_locustfile(options) if plays.scripts else None


def _beside_locustfile(options: Any) -> Path:
    locustfiles = getattr(options, "locustfile", None) or ""
    first = str(locustfiles).split(",")[0]
    base = Path(first).parent if first.endswith(".py") else Path(first or ".")
    return base / CONVERSATIONS_FILE


def check_reachable(host: str, timeout: float) -> None:
    """Open (and close) one TCP connection to the host, so a wrong or unreachable host stops the run
    at start with one line instead of failing every turn."""
    url = urlsplit(host)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout).close()
    except socket.gaierror:
        raise ConfigError(f"--host {host!r}: cannot resolve {url.hostname!r}: check the host name") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"--host {host!r}: cannot connect to {url.hostname}:{port} ({reason}): check the host and port, "
            "and that the server runs"
        ) from None
