"""One typed settings object, built once from Locust's parsed options and the environment."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loadtest import nlx, thresholds
from loadtest.arrivals import ArrivalRate
from loadtest.checks import fallback_check
from loadtest.client import TRANSPORTS
from loadtest.conversation import HISTORY_MODES, History, Scenario, load_scenarios
from loadtest.errors import ConfigError
from loadtest.pacing import Pacing, parse_abandon, parse_think_time

API_KEY_ENV = "NLX_API_KEY"
# The built-in mock's key when NLX_API_KEY is not set: it guards nothing, it only exercises the header.
MOCK_API_KEY = "nlx-mock-key"
MOCK_DEPLOYMENT = "demo"
MOCK_CHANNEL = "web-en-US"
CONVERSATIONS_FILE = "conversations.yaml"
APIS = ("nlx", "openai")
# Python's garbage collector during a run (see --gc); the first is the default.
GC_MODES = ("auto", "on", "off")
# --gc auto collects once when this many more objects live than when the collector stopped.
GC_CHECK_OBJECTS = 1_000_000
OPENAI_PATH = "/v1/chat/completions"
OPENAI_KEY_ENV = "OPENAI_API_KEY"
MOCK_MODEL = "mock-model"


@dataclass(frozen=True)
class Settings:
    host: str
    deployment: str
    channel: str
    api_key: str = field(repr=False)
    pacing: Pacing
    history: History
    scenarios: tuple[Scenario, ...]
    conversations_path: Path
    report_dir: Path
    connect_timeout: float
    read_timeout: float
    first_byte_timeout: float
    idle_timeout: float
    uses_mock: bool
    thresholds: tuple[thresholds.Threshold, ...] = ()
    threshold_abort: bool = False
    threshold_warmup: float = 30.0
    turn_log: bool = False

    abandon: float = 0.0
    fallback: Callable[[str], str | None] | None = None
    on_turn_error: str = "stop"
    insecure: bool = False
    transport: str = "gevent"
    gc: str = "auto"
    arrival_rate: ArrivalRate | None = None
    max_queue_wait: float = 10.0
    api: str = "nlx"
    model: str = ""
    path: str = OPENAI_PATH

    @property
    def url(self) -> str:
        if self.api == "openai":
            return self.host.rstrip("/") + self.path
        return nlx.completions_url(self.host, self.deployment, self.channel)

    def request_body(self, conversation_id: str, messages: list[dict[str, str]]) -> dict[str, Any]:
        if self.api == "openai":
            return {"model": self.model, "messages": messages, "stream": True}
        return nlx.request_body(conversation_id, messages)


def from_options(options: Any, host: str | None, *, uses_mock: bool) -> Settings:
    """Validate every option; raise ConfigError with a one-line message naming the fix."""
    if not host:
        raise ConfigError("no host: pass --host https://apps.nlx.ai/v1 (or leave it out to use the mock)")
    if not host.startswith(("http://", "https://")):
        raise ConfigError(f"--host {host!r} must start with http:// or https://")
    api = getattr(options, "api", "nlx") or "nlx"
    if api not in APIS:
        raise ConfigError(f"--api {api!r} is not known: use --api nlx or --api openai")
    history: History = getattr(options, "history", "full") or "full"
    if history not in HISTORY_MODES:
        raise ConfigError(f"--history {history!r} is not known: use --history full or --history last")
    if api == "openai":
        return _openai_settings(options, host, uses_mock=uses_mock, history=history)
    deployment = getattr(options, "nlx_deployment", None) or (MOCK_DEPLOYMENT if uses_mock else None)
    channel = getattr(options, "nlx_channel", None) or (MOCK_CHANNEL if uses_mock else None)
    api_key = os.environ.get(API_KEY_ENV, "")
    if not api_key:
        if not uses_mock:
            raise ConfigError(f"{API_KEY_ENV} is not set: export {API_KEY_ENV}=<your NLX API key>")
        api_key = MOCK_API_KEY
    return _common(
        options,
        host=host,
        deployment=nlx.check_deployment_key(deployment),
        channel=nlx.check_channel_key(channel),
        api_key=api_key,
        history=history,
        uses_mock=uses_mock,
    )


def _openai_settings(options: Any, host: str, *, uses_mock: bool, history: History) -> Settings:
    if history != "full":
        raise ConfigError("--history last needs server-side conversation state: use it with --api nlx")
    model = getattr(options, "model", None) or (MOCK_MODEL if uses_mock else None)
    if not model:
        raise ConfigError("--api openai needs a model name: pass --model NAME (or set LOADTEST_MODEL)")
    path = getattr(options, "path", None) or OPENAI_PATH
    if not path.startswith("/"):
        raise ConfigError(f"--path {path!r} must start with '/', like {OPENAI_PATH}")
    # Local OpenAI-compatible servers often take no key; send one only when there is one.
    api_key = (
        os.environ.get(OPENAI_KEY_ENV) or os.environ.get(API_KEY_ENV) or (MOCK_API_KEY if uses_mock else "")
    )
    return _common(
        options,
        host=host,
        deployment="",
        channel="",
        api_key=api_key,
        history=history,
        uses_mock=uses_mock,
        api="openai",
        model=model,
        path=path,
    )


def _common(options: Any, **fields: Any) -> Settings:
    conversations = conversations_path(options)
    read_timeout = _positive(options, "read_timeout", 60.0)
    return Settings(
        **fields,
        pacing=parse_think_time(getattr(options, "think_time", "0") or "0"),
        abandon=parse_abandon(getattr(options, "abandon", "0") or "0"),
        fallback=fallback_check(pattern) if (pattern := getattr(options, "fallback_pattern", None)) else None,
        scenarios=tuple(load_scenarios(conversations)),
        conversations_path=conversations,
        report_dir=check_report_dir(getattr(options, "report_dir", "reports") or "reports"),
        connect_timeout=_positive(options, "connect_timeout", 10.0),
        read_timeout=read_timeout,
        first_byte_timeout=_positive(options, "first_byte_timeout", read_timeout),
        idle_timeout=_positive(options, "idle_timeout", read_timeout),
        on_turn_error=_choice(options, "on_turn_error", ("stop", "continue")),
        insecure=bool(getattr(options, "insecure", False)),
        transport=_choice(options, "transport", TRANSPORTS),
        gc=_choice(options, "gc", GC_MODES),
        thresholds=tuple(thresholds.parse_all(threshold_expressions(options))),
        threshold_abort=bool(getattr(options, "threshold_abort", False)),
        threshold_warmup=_non_negative(options, "threshold_warmup", 30.0),
        turn_log=bool(getattr(options, "turn_log", False)),
        arrival_rate=_arrival_rate(options),
        max_queue_wait=_positive(options, "max_queue_wait", 10.0),
    )


def _arrival_rate(options: Any) -> ArrivalRate | None:
    text = getattr(options, "arrival_rate", None)
    return ArrivalRate.parse(text) if text not in (None, "") else None


def threshold_expressions(options: Any) -> list[str]:
    """--threshold (repeatable, also a list in locust.conf) and LOADTEST_THRESHOLDS (';'-separated)."""
    given = getattr(options, "threshold", None) or []
    if isinstance(given, str):
        given = [given]
    env = os.environ.get("LOADTEST_THRESHOLDS", "")
    return [*given, *([env] if env.strip() else [])]


def conversations_path(options: Any) -> Path:
    """--conversations, or the conversations.yaml beside the (first) locustfile."""
    given = getattr(options, "conversations", None)
    if given:
        return Path(given)
    locustfiles = getattr(options, "locustfile", None) or ""
    first = str(locustfiles).split(",")[0]
    base = Path(first).parent if first.endswith(".py") else Path(first or ".")
    return base / CONVERSATIONS_FILE


def check_report_dir(value: str) -> Path:
    path = Path(value)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"--report-dir {value!r} cannot be created ({exc.strerror}): pick a writable folder"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"--report-dir {value!r} is not writable: pick a writable folder")
    return path


def _choice(options: Any, name: str, allowed: tuple[str, ...]) -> str:
    value = getattr(options, name, None) or allowed[0]
    if value not in allowed:
        flag = "--" + name.replace("_", "-")
        raise ConfigError(f"{flag} {value!r} is not known: use {' or '.join(allowed)}")
    return str(value)


def _non_negative(options: Any, name: str, default: float) -> float:
    value = getattr(options, name, None)
    if value is None:
        return default
    if not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"--{name.replace('_', '-')} {value!r} must be a number of seconds >= 0")
    return float(value)


def _positive(options: Any, name: str, default: float) -> float:
    value = getattr(options, name, None)
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if number <= 0:
        flag = "--" + name.replace("_", "-")
        raise ConfigError(f"{flag} {value!r} must be a number of seconds > 0")
    return number


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
