"""The options loadtest adds to `locust`: one table, from which everything else is generated.

Each `Option` holds its flag, environment variable, default, parser (raw value -> typed value,
raising a one-line `ConfigError` that names the fix), `--help` text and the README's wording.
From `OPTIONS` come the arguments added to Locust's parser (`add_arguments`), the fields of
`loadtest.settings.Settings` (`Option.read`), `loadtest options`, the README's option table
(`markdown_table`, checked by a test) and the fields of the web UI's start form (`loadtest.webui_form`,
with each option's `label` and `hint`), all in the order of `OPTIONS`. Adding an option = one entry
here + one `Settings` field.

Plain Python: no Locust, gevent or httpx, so `loadtest options` and the settings tests stay light.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from loadtest import capacity, goodput, thresholds
from loadtest.arrivals import ArrivalRate
from loadtest.checks import Check, fallback_check
from loadtest.conversation import HISTORY_MODES
from loadtest.errors import ConfigError
from loadtest.pacing import Pacing, parse_abandon, parse_think_time
from loadtest.shares import ShareError, parse_share
from loadtest.stages import Stage, parse_stages

T = TypeVar("T")
Kind = Literal["value", "store_true", "append"]

APIS = ("nlx", "openai")
# What carries httpx's requests (see client.make_client); the first is the default.
TRANSPORTS = ("gevent", "httpx")
# Python's garbage collector during a run (see --gc); the first is the default.
GC_MODES = ("auto", "on", "off")
OPENAI_PATH = "/v1/chat/completions"
# Where the web UI listens unless --web-host is given (Locust's own default is every interface).
WEB_HOST = "127.0.0.1"
# --threshold's environment variable holds several rules, `;`-separated (see thresholds.parse_all).
THRESHOLDS_SEPARATOR = ";"


@dataclass(frozen=True, kw_only=True)
class Option(Generic[T]):
    """One command-line option, its environment variable, and how its value becomes a setting."""

    flag: str
    env_var: str
    default: str | float | bool | None
    parse: Callable[[Any], T]
    help: str
    # The Settings field that holds the parsed value; empty: the flag's name (`--turn-log` -> turn_log).
    setting: str = ""
    # How the value is written in `--help` and the README (`KEY`, `S`); choices show themselves.
    arg: str = ""
    choices: tuple[str, ...] = ()
    kind: Kind = "value"
    # argparse converts the value to a float (and so does the web UI's form, see loadtest.webui_form).
    number: bool = False
    # The README's table: what the option does, and its default when the default alone says too little.
    meaning: str = ""
    shown_default: str | None = None
    # The web UI's start form: the field's label as a person would write it, and one short line of help
    # (label and hint share one line there, which cuts what does not fit).
    label: str = ""
    hint: str = ""
    # Why the form leaves the option out (it is read once, when locust starts, or does nothing in the web
    # UI); a start that posts another value is refused with this.
    not_in_form: str = ""
    # A repeatable option's environment variable (and each value) may hold several items, separated so.
    separator: str = ""

    @property
    def dest(self) -> str:
        """The attribute argparse stores the value in."""
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def field(self) -> str:
        return self.setting or self.dest

    def raw(self, options: Any) -> Any:
        """The value as given (Locust's parser, locust.conf, the web UI), or the default when absent.

        An empty value counts as absent: the web UI sends an empty field for an option left blank.
        """
        value = getattr(options, self.dest, None)
        if self.kind == "append":
            return _with_env_items(value, self.env_var)
        return self.default if value is None or value == "" else value

    def read(self, options: Any) -> T:
        """The parsed value; ConfigError (one line, naming the fix) when it is wrong."""
        return self.parse(self.raw(options))


def _with_env_items(given: Any, env_var: str) -> list[str]:
    """A repeatable option's values (a list, or one string from locust.conf), then its environment
    variable's, which `thresholds.parse_all` splits at `;`."""
    items = [given] if isinstance(given, str) else list(given or [])
    env = os.environ.get(env_var, "")
    return [*items, *([env] if env.strip() else [])]


# -- parsers: raw value (a string, or already typed by argparse) -> typed value -------------------------


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _optional_text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _flag(value: Any) -> bool:
    return bool(value)


def _no_flag(value: Any) -> bool:
    """A `--no-X` flag read as the setting `X`: on unless given."""
    return not value


def _choice(flag: str, allowed: Sequence[str], fix: str = "") -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in allowed:
            raise ConfigError(f"{flag} {value!r} is not known: use {fix or ' or '.join(allowed)}")
        return str(value)

    return parse


def _seconds(flag: str) -> Callable[[Any], float]:
    """A number of seconds > 0."""

    def parse(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = -1.0
        if not number > 0:  # also refuses nan
            raise ConfigError(f"{flag} {value!r} must be a number of seconds > 0")
        return number

    return parse


def _optional_seconds(flag: str) -> Callable[[Any], float | None]:
    """A number of seconds > 0, or None when not given (the caller picks the default)."""
    seconds = _seconds(flag)
    return lambda value: None if value is None else seconds(value)


def _seconds_or_zero(flag: str) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = -1.0
        if isinstance(value, bool) or not number >= 0:
            raise ConfigError(f"{flag} {value!r} must be a number of seconds >= 0")
        return number

    return parse


def _path(value: Any) -> str:
    path = str(value)
    if not path.startswith("/"):
        raise ConfigError(f"--path {path!r} must start with '/', like {OPENAI_PATH}")
    return path


def _optional_path(value: Any) -> Path | None:
    return None if value in (None, "") else Path(value)


def _arrival_rate(value: Any) -> ArrivalRate | None:
    return None if value in (None, "") else ArrivalRate.parse(value)


def _stages(value: Any) -> tuple[Stage, ...] | None:
    return None if value in (None, "") else tuple(parse_stages(value))


def _fallback(value: Any) -> Check | None:
    return None if value in (None, "") else fallback_check(str(value))


def _thresholds(value: list[str]) -> tuple[thresholds.Threshold, ...]:
    return tuple(thresholds.parse_all(value))


def _share(flag: str) -> Callable[[Any], float]:
    """A share above 0: `5%` or `0.05`."""

    def parse(value: Any) -> float:
        try:
            share = parse_share(value)
        except ShareError as exc:
            raise ConfigError(f"{flag}: {exc}") from None
        if not share > 0:
            raise ConfigError(f"{flag} {value!r} must be above 0, e.g. 5%")
        return share

    return parse


def _optional_positive(flag: str) -> Callable[[Any], float | None]:
    def parse(value: Any) -> float | None:
        if value in (None, ""):
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = -1.0
        if isinstance(value, bool) or not number > 0:
            shown = f"{value:g}" if isinstance(value, float) else repr(value)
            raise ConfigError(f"{flag} {shown} must be a number above 0, e.g. {flag} 100")
        return number

    return parse


def report_dir(value: Any) -> Path:
    """The run output folder, created now so an unwritable one stops the run at start."""
    text = str(value)
    path = Path(text)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"--report-dir {text!r} cannot be created ({exc.strerror}): pick a writable folder"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"--report-dir {text!r} is not writable: pick a writable folder")
    return path


# -- the table -------------------------------------------------------------------------------------

NLX_DEPLOYMENT = Option[str | None](
    flag="--nlx-deployment",
    env_var="NLX_DEPLOYMENT",
    default=None,
    parse=_optional_text,
    setting="deployment",
    arg="KEY",
    help="NLX deployment key (the path segment after the host). Default with the mock: demo",
    meaning="deployment key",
    shown_default="`demo` with the mock",
    label="NLX deployment key",
    hint="the path segment after the host; demo with the mock",
)
NLX_CHANNEL = Option[str | None](
    flag="--nlx-channel",
    env_var="NLX_CHANNEL",
    default=None,
    parse=_optional_text,
    setting="channel",
    arg="KEY-en-US",
    help="NLX channel key with its language suffix, e.g. web-en-US. Default with the mock: web-en-US",
    meaning="channel key with language suffix",
    shown_default="`web-en-US` with the mock",
    label="NLX channel key",
    hint="with its language suffix, e.g. web-en-US",
)
THINK_TIME = Option[Pacing](
    flag="--think-time",
    env_var="LOADTEST_THINK_TIME",
    default="1-3",
    parse=parse_think_time,
    setting="pacing",
    arg="T",
    help="How long a user waits before a turn and between conversations: 3, 2-8 (uniform), exp:5, "
    "or human[:read_wpm=240,type_cpm=200,floor=1,jitter=0.25,max=60]. Default 1-3",
    meaning="how long a user waits: `3`, `2-8`, `exp:5` or `human[:...]` (see [Pacing](#pacing))",
    label="Think time",
    hint="seconds before each turn: 3, 2-8, exp:5 or human",
)
ABANDON = Option[float](
    flag="--abandon",
    env_var="LOADTEST_ABANDON",
    default="0",
    parse=parse_abandon,
    arg="SHARE",
    help="Share of conversations users leave early, after a random turn: 10% or 0.1. Default 0",
    meaning="share of conversations the user leaves early, as `10%` or `0.1`",
    label="Abandon share",
    hint="conversations left early, e.g. 10% or 0.1",
)
FALLBACK_PATTERN = Option[Check | None](
    flag="--fallback-pattern",
    env_var="LOADTEST_FALLBACK_PATTERN",
    default=None,
    parse=_fallback,
    setting="fallback",
    arg="RE",
    help="A reply matching this regular expression (case-insensitive) fails its turn as 'assertion', "
    'e.g. "didn\'t (get|understand) that"',
    meaning="a reply matching this regular expression (case-insensitive) fails its turn as `assertion`",
    label="Fallback pattern",
    hint="a reply that matches this regular expression fails",
)
HISTORY = Option[str](
    flag="--history",
    env_var="LOADTEST_HISTORY",
    default="full",
    parse=_choice("--history", HISTORY_MODES, "--history full or --history last"),
    choices=HISTORY_MODES,
    help="full: each request carries the whole conversation so far; last: only the new user message",
    meaning="`full`: each request carries system, user and assistant messages so far, the assistant "
    "replies exactly as reassembled from the stream; `last`: only the new user message (NLX keeps the "
    "state by conversation id)",
    label="History",
    hint="full: the whole conversation; last: the new message only",
)
CONVERSATIONS = Option[Path | None](
    flag="--conversations",
    env_var="LOADTEST_CONVERSATIONS",
    default=None,
    parse=_optional_path,
    setting="conversations_path",
    arg="PATH",
    help="Conversation scripts, .yaml or .jsonl. Default: conversations.yaml beside the locustfile",
    meaning="conversation scripts, `.yaml` or `.jsonl`",
    shown_default="`conversations.yaml` beside the locustfile",
    label="Conversations file",
    hint=".yaml or .jsonl; empty: beside the locustfile",
)
REPORT_DIR = Option[Path](
    flag="--report-dir",
    env_var="LOADTEST_REPORT_DIR",
    default="reports",
    parse=report_dir,
    arg="DIR",
    help="Folder for run output: {report-dir}/{run-id}/summary.json, report.html; {report-dir}/latest",
    meaning="run output folder",
    label="Report folder",
    hint="each run's summary.json and report.html",
)
CONNECT_TIMEOUT = Option[float](
    flag="--connect-timeout",
    env_var="LOADTEST_CONNECT_TIMEOUT",
    default=10.0,
    parse=_seconds("--connect-timeout"),
    number=True,
    arg="S",
    help="Seconds to wait for a connection. Default 10",
    meaning="connection timeout",
    label="Connect timeout",
    hint="seconds",
)
READ_TIMEOUT = Option[float](
    flag="--read-timeout",
    env_var="LOADTEST_READ_TIMEOUT",
    default=60.0,
    parse=_seconds("--read-timeout"),
    number=True,
    arg="S",
    help="Seconds to wait for the first byte, and between two reads of a stream. Default 60",
    meaning="default of the two below",
    label="Read timeout",
    hint="seconds; the default of the two below",
)
FIRST_BYTE_TIMEOUT = Option[float | None](
    flag="--first-byte-timeout",
    env_var="LOADTEST_FIRST_BYTE_TIMEOUT",
    default=None,
    parse=_optional_seconds("--first-byte-timeout"),
    number=True,
    arg="S",
    help="Seconds to wait for the response headers. Default: --read-timeout",
    meaning="wait for the response headers",
    shown_default="read timeout",
    label="First byte timeout",
    hint="seconds to the response headers; empty: read timeout",
)
IDLE_TIMEOUT = Option[float | None](
    flag="--idle-timeout",
    env_var="LOADTEST_IDLE_TIMEOUT",
    default=None,
    parse=_optional_seconds("--idle-timeout"),
    number=True,
    arg="S",
    help="Seconds a stream may go without data between chunks. Default: --read-timeout",
    meaning="longest silence between two reads of a stream",
    shown_default="read timeout",
    label="Idle timeout",
    hint="seconds between two reads; empty: read timeout",
)
ON_TURN_ERROR = Option[str](
    flag="--on-turn-error",
    env_var="LOADTEST_ON_TURN_ERROR",
    default="stop",
    parse=_choice("--on-turn-error", ("stop", "continue")),
    choices=("stop", "continue"),
    help="After a failed turn, stop the conversation (default) or go on with the next turn",
    meaning="after a failed turn, end the conversation or go on with the next turn",
    label="After a failed turn",
    hint="stop the conversation, or continue with the next turn",
)
INSECURE = Option[bool](
    flag="--insecure",
    env_var="LOADTEST_INSECURE",
    default=False,
    parse=_flag,
    kind="store_true",
    help="Do not verify TLS certificates (verification is on by default)",
    meaning="skip TLS certificate verification (on by default)",
    label="Skip TLS verification",
    hint="do not verify the server's certificate",
)
GC = Option[str](
    flag="--gc",
    env_var="LOADTEST_GC",
    default=GC_MODES[0],
    parse=_choice("--gc", GC_MODES),
    choices=GC_MODES,
    help="Python's garbage collector during the run, whose pauses land in the latencies "
    "with thousands of users: auto (default) rests it, collects once when a million more objects "
    "live, and turns it back on if they were garbage; on leaves it on; off rests it until the test "
    "stops",
    meaning="Python's garbage collector during the run, whose collections (tens to hundreds of ms with "
    "thousands of users) land in every measured latency. `auto` rests it; when a million more objects "
    "live than at the start it collects once and, if those were garbage in reference cycles, turns it "
    "back on with a warning. `on` leaves it on; `off` rests it until the test stops, then says how many "
    "objects it found in cycles",
    label="Garbage collector",
    hint="auto rests it and watches memory; on; off until the end",
)
TRANSPORT = Option[str](
    flag="--transport",
    env_var="LOADTEST_TRANSPORT",
    default=TRANSPORTS[0],
    parse=_choice("--transport", TRANSPORTS),
    choices=TRANSPORTS,
    help="HTTP under httpx: gevent (default; HTTP/1.1 parsed in C, about half the CPU per turn) "
    "or httpx's own (httpcore)",
    meaning="what carries httpx's requests: `gevent`, HTTP/1.1 on gevent sockets parsed in C (about half "
    "the generator CPU per streamed turn); `httpx`, httpx's own transport (httpcore)",
    label="HTTP transport",
    hint="gevent (half the CPU per turn) or httpx",
)
MOCK_OPTIONS = Option[str](
    flag="--mock-options",
    env_var="LOADTEST_MOCK_OPTIONS",
    default="",
    parse=_text,
    arg='"..."',
    help='Options for the built-in mock started when no --host is given, e.g. "--ttft const:200ms"',
    meaning="options of the built-in mock (only without `--host`)",
    label="Mock options",
    not_in_form="--mock-options is read when locust starts: restart locust with the new --mock-options",
)
ARRIVAL_RATE = Option[ArrivalRate | None](
    flag="--arrival-rate",
    env_var="LOADTEST_ARRIVAL_RATE",
    default=None,
    parse=_arrival_rate,
    arg="R",
    help="Open model: start this many conversations per second whatever the server does "
    "(5, poisson:5, constant:5); -u is then the most conversations at once",
    meaning="open model: conversations per second (`5`, `poisson:5`, `constant:5`)",
    label="Arrival rate",
    hint="open model: conversations per second, e.g. poisson:5",
)
STAGES = Option[tuple[Stage, ...] | None](
    flag="--stages",
    env_var="LOADTEST_STAGES",
    default=None,
    parse=_stages,
    arg="1m:10,5m:50",
    help="With a locustfile that has a StagesShape (locustfiles/ramp.py): DURATION:USERS stages, "
    "e.g. 1m:10,5m:50,1m:0",
    meaning="with `locustfiles/ramp.py`: the ramp's stages",
    label="Stages",
    not_in_form="--stages is read when locust starts (with locustfiles/ramp.py): restart locust with the "
    "new --stages",
)
MAX_QUEUE_WAIT = Option[float](
    flag="--max-queue-wait",
    env_var="LOADTEST_MAX_QUEUE_WAIT",
    default=10.0,
    parse=_seconds("--max-queue-wait"),
    number=True,
    arg="S",
    help="Open model: an arrival that waits this many seconds for a free user is dropped. Default 10",
    meaning="open model: drop an arrival that waited this long for a free user",
    label="Max queue wait",
    hint="open model: seconds before a waiting arrival is dropped",
)
API = Option[str](
    flag="--api",
    env_var="LOADTEST_API",
    default=APIS[0],
    parse=_choice("--api", APIS, "--api nlx or --api openai"),
    choices=APIS,
    help="nlx: NLX OpenAI Connect (deployment/channel URL, nlx:{conversationId}); "
    "openai: any OpenAI-compatible server (--path, --model, full history)",
    meaning="endpoint flavour",
    label="API",
    hint="nlx, or openai for any OpenAI-compatible server",
)
MODEL = Option[str | None](
    flag="--model",
    env_var="LOADTEST_MODEL",
    default=None,
    parse=_optional_text,
    arg="NAME",
    help="Model name sent with --api openai",
    meaning="model name with `--api openai`",
    label="Model",
    hint="the model name sent with API openai",
)
PATH = Option[str](
    flag="--path",
    env_var="LOADTEST_PATH",
    default=OPENAI_PATH,
    parse=_path,
    arg=OPENAI_PATH,
    help=f"Path appended to the host with --api openai. Default {OPENAI_PATH}",
    meaning="path with `--api openai`",
    shown_default="that",
    label="Path",
    hint="appended to the host with API openai",
)
NO_USAGE = Option[bool](
    flag="--no-usage",
    env_var="LOADTEST_NO_USAGE",
    default=False,
    parse=_no_flag,
    kind="store_true",
    setting="usage",
    help="With --api openai, do not ask for token usage (stream_options.include_usage): for servers "
    "that refuse the field. The run then has no token figures",
    meaning='with `--api openai`, do not send `stream_options: {"include_usage": true}` (for servers '
    "that refuse it): no token figures then",
    label="No token usage",
    hint="API openai: for servers that refuse stream_options",
)
THRESHOLD = Option[tuple[thresholds.Threshold, ...]](
    flag="--threshold",
    env_var="LOADTEST_THRESHOLDS",
    default=None,
    parse=_thresholds,
    setting="thresholds",
    kind="append",
    separator=THRESHOLDS_SEPARATOR,
    arg="EXPR",
    help="Pass/fail rule, repeatable: ttft.p95<800ms, turn.p99<=3s, error_rate<1%, "
    "conversation_success>=99%, ttft{turn=1}.p95<500ms. Also LOADTEST_THRESHOLDS, ';'-separated",
    meaning="pass/fail rule, repeatable (see [Thresholds](#thresholds-and-ci))",
    label="Thresholds",
    hint="pass/fail rules, ;-separated: ttft.p95<800ms;error_rate<1%",
)
GOODPUT = Option[goodput.Goodput](
    flag="--goodput",
    env_var="LOADTEST_GOODPUT",
    default=None,
    parse=goodput.parse,
    kind="append",
    separator=",",
    arg="BOUNDS",
    help="Latency bounds of a good turn, repeatable or comma-separated: ttft<800ms,turn<3s "
    "(also itl<100ms, conversation<2m). Goodput is the share of turns (and conversations) that "
    "succeeded within them; thresholds take it: goodput>=95%, conversation_goodput>=90%. Also "
    "LOADTEST_GOODPUT",
    meaning="latency bounds of a good turn, as `ttft<800ms,turn<3s`, repeatable (see [Goodput](#goodput))",
    label="Goodput bounds",
    hint="a good turn's latency bounds: ttft<800ms,turn<3s",
)
THRESHOLD_ABORT = Option[bool](
    flag="--threshold-abort",
    env_var="LOADTEST_THRESHOLD_ABORT",
    default=False,
    parse=_flag,
    kind="store_true",
    help="Stop the run early once a threshold fails after the warm-up",
    meaning="stop the run as soon as a threshold fails after the warm-up",
    label="Stop at a failed threshold",
    hint="once the warm-up is over",
)
THRESHOLD_WARMUP = Option[float](
    flag="--threshold-warmup",
    env_var="LOADTEST_THRESHOLD_WARMUP",
    default=30.0,
    parse=_seconds_or_zero("--threshold-warmup"),
    number=True,
    arg="S",
    help="Seconds before --threshold-abort may stop a run. Default 30",
    meaning="seconds before `--threshold-abort` may stop a run",
    label="Threshold warm-up",
    hint="seconds before a failed threshold may stop the run",
)
STRICT_CLIENT = Option[bool](
    flag="--strict-client",
    env_var="LOADTEST_STRICT_CLIENT",
    default=False,
    parse=_flag,
    kind="store_true",
    help="Fail the run (exit code 3) when the load generator itself was the bottleneck: "
    "event-loop lag p99 > 10 ms, CPU p90 > 90% of a core, or connection-pool wait p99 > 10 ms",
    meaning="fail the run (exit 3) when the load generator was the bottleneck",
    label="Strict client",
    hint="fail the run when the load generator was the bottleneck",
)
TURN_LOG = Option[bool](
    flag="--turn-log",
    env_var="LOADTEST_TURN_LOG",
    default=False,
    parse=_flag,
    kind="store_true",
    help="Also write every turn to {report-dir}/{run-id}/turns-*.jsonl (one file per process)",
    meaning="also write every turn to `turns-{host}-{pid}.jsonl` in the run folder",
    label="Turn log",
    hint="also write every turn to turns-*.jsonl in the run folder",
)
NO_FAIL_FAST = Option[bool](
    flag="--no-fail-fast",
    env_var="LOADTEST_NO_FAIL_FAST",
    default=False,
    parse=_no_flag,
    kind="store_true",
    setting="fail_fast",
    help="Go on when every first turn is refused with the same 401, 403 or 404 "
    "(by default the run stops with exit code 2 and names the fix)",
    meaning="go on when every first turn is refused with the same 401, 403 or 404 "
    "(by default the run stops, exit 2)",
    label="Go on when refused",
    hint="every first turn gets the same 401, 403 or 404",
)
NO_PROGRESS = Option[bool](
    flag="--no-progress",
    env_var="LOADTEST_NO_PROGRESS",
    default=False,
    parse=_no_flag,
    kind="store_true",
    setting="progress",
    help="No progress line while a headless run goes (it is rewritten in place on a terminal, "
    "printed every 10 s otherwise)",
    meaning="no progress line while a headless run goes",
    label="No progress line",
    not_in_form="--no-progress is for headless runs: the web UI shows no progress line",
)

SEARCH_USERS = Option[capacity.LoadRange | None](
    flag="--search-users",
    env_var="LOADTEST_SEARCH_USERS",
    default=None,
    parse=capacity.parse_users,
    arg="LOW:HIGH",
    help="Capacity search (with locustfiles/capacity.py): step the concurrent conversations from LOW, "
    "doubling until a step fails the --threshold rules, then bisect, e.g. 10:400",
    meaning="capacity search over concurrent conversations, with `locustfiles/capacity.py` (see "
    "[Capacity search](#capacity-search))",
    label="Search users",
    hint="capacity search: concurrent conversations, e.g. 10:400",
)
SEARCH_RATE = Option[capacity.LoadRange | None](
    flag="--search-rate",
    env_var="LOADTEST_SEARCH_RATE",
    default=None,
    parse=capacity.parse_rate,
    arg="LOW:HIGH",
    help="Capacity search (with locustfiles/capacity.py) over conversation arrivals per second (open "
    "model; -u is the most conversations at once), e.g. 0.5:20 or constant:0.5:20",
    meaning="capacity search over arrivals per second (open model, `-u` the most at once)",
    label="Search rate",
    hint="capacity search: conversations per second, e.g. 0.5:20",
)
SEARCH_RESOLUTION = Option[float](
    flag="--search-resolution",
    env_var="LOADTEST_SEARCH_RESOLUTION",
    default="5%",
    parse=_share("--search-resolution"),
    arg="SHARE",
    help="A capacity search stops bisecting when the lowest failing load is within this share above "
    "the highest passing one. Default 5%",
    meaning="a search stops when the failing load is within this share above the passing one",
    label="Search resolution",
    hint="stop when passing and failing loads are this close",
)
STEP_TIME = Option[float](
    flag="--step-time",
    env_var="LOADTEST_STEP_TIME",
    default="60s",
    parse=capacity.parse_step_seconds("--step-time"),
    arg="T",
    help="How long each load of a capacity search runs, warm-up included: 60s, 2m. Default 60s",
    meaning="how long each load of a capacity search runs, warm-up included",
    label="Step time",
    hint="how long each load of a search runs, e.g. 60s",
)
STEP_WARMUP = Option[float](
    flag="--step-warmup",
    env_var="LOADTEST_STEP_WARMUP",
    default="10s",
    parse=capacity.parse_step_seconds("--step-warmup"),
    arg="T",
    help="The first part of each step of a capacity search, not measured: 10s. Default 10s",
    meaning="the first part of each step, not measured (keep it >= 3 s with workers, who report every 3 s)",
    label="Step warm-up",
    hint="the start of each step, not measured, e.g. 10s",
)
MIN_CAPACITY = Option[float | None](
    flag="--min-capacity",
    env_var="LOADTEST_MIN_CAPACITY",
    default=None,
    parse=_optional_positive("--min-capacity"),
    number=True,
    arg="N",
    help="Fail the run (exit code 3) when the capacity a search finds is below N (users, or "
    "conversations per second)",
    meaning="fail the run (exit 3) when the capacity found is below N",
    label="Minimum capacity",
    hint="fail (exit 3) when the capacity found is below this",
)

# The order of `loadtest options`, the README's table and the web UI's form: related options together.
OPTIONS: tuple[Option[Any], ...] = (
    # the target
    API,
    NLX_DEPLOYMENT,
    NLX_CHANNEL,
    MODEL,
    PATH,
    NO_USAGE,
    INSECURE,
    MOCK_OPTIONS,
    # the conversations
    CONVERSATIONS,
    HISTORY,
    FALLBACK_PATTERN,
    ON_TURN_ERROR,
    ABANDON,
    # pacing and load
    THINK_TIME,
    ARRIVAL_RATE,
    MAX_QUEUE_WAIT,
    STAGES,
    # the capacity search
    SEARCH_USERS,
    SEARCH_RATE,
    SEARCH_RESOLUTION,
    STEP_TIME,
    STEP_WARMUP,
    MIN_CAPACITY,
    # timeouts
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    FIRST_BYTE_TIMEOUT,
    IDLE_TIMEOUT,
    # the verdict
    THRESHOLD,
    GOODPUT,
    THRESHOLD_ABORT,
    THRESHOLD_WARMUP,
    STRICT_CLIENT,
    NO_FAIL_FAST,
    # the output
    REPORT_DIR,
    TURN_LOG,
    NO_PROGRESS,
    # the load generator itself
    TRANSPORT,
    GC,
)


# -- what is generated from the table ----------------------------------------------------------------


def add_arguments(parser: Any) -> None:
    """Add every option to a Locust (configargparse) parser, e.g. from `init_command_line_parser`, and
    make the web UI listen on loopback unless `--web-host` (or LOCUST_WEB_HOST, locust.conf) says
    otherwise: the process holds the API key, and the web UI starts load with it."""
    # Not in an argument group: Locust's web UI leaves out grouped custom options (locust#2560).
    for option in OPTIONS:
        parser.add_argument(option.flag, **argument_kwargs(option))
    parser.set_defaults(web_host=WEB_HOST)


def argument_kwargs(option: Option[Any]) -> dict[str, Any]:
    """The keyword arguments of `parser.add_argument` for one option."""
    # argparse formats help with %: a literal one is written %%.
    kwargs: dict[str, Any] = {"default": option.default, "help": option.help.replace("%", "%%")}
    if option.kind == "store_true":
        return {**kwargs, "action": "store_true", "env_var": option.env_var}
    if option.kind == "append":
        # Locust's parser would read the variable as one value; `Option.raw` splits it at `;`.
        kwargs["action"] = "append"
    else:
        kwargs["env_var"] = option.env_var
    if option.choices:
        kwargs["choices"] = list(option.choices)
    elif option.arg:
        kwargs["metavar"] = option.arg
    if option.number:
        kwargs["type"] = float
    return kwargs


MARKDOWN_HEADER = ("| option | env var | default | meaning |", "|---|---|---|---|")


def markdown_table() -> str:
    """The README's option table (its "### Options" section), one row per option."""
    return "\n".join([*MARKDOWN_HEADER, *(_markdown_row(option) for option in OPTIONS)]) + "\n"


def _markdown_row(option: Option[Any]) -> str:
    shown_arg = "\\|".join(option.choices) if option.choices else option.arg
    usage = (
        f"`{option.flag} {shown_arg}`" if shown_arg and option.kind != "store_true" else f"`{option.flag}`"
    )
    env = f"`{option.env_var}`"
    if option.separator:
        env += f" (`{option.separator}`-separated)"
    cells = (usage, env, _shown_default(option), option.meaning)
    return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"


def _shown_default(option: Option[Any]) -> str:
    if option.shown_default is not None:
        return option.shown_default
    if option.kind == "store_true":
        return "off"
    if option.default in (None, ""):
        return ""
    if isinstance(option.default, float):
        return f"`{option.default:g}`"
    return f"`{option.default}`"
