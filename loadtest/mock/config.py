"""The mock's options: its command line, parsed into one `MockConfig`, and where its routes go."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from loadtest.mock.bot import Bot, load_bot
from loadtest.mock.contract import API_KEY_ENV, DEFAULT_API_KEY
from loadtest.mock.dist import Distribution, parse_count_dist, parse_duration_dist
from loadtest.mock.faults import ALIASES, FAULT_KINDS, FaultPlan, parse_faults

DEFAULT_TTFT = "lognormal:300ms:0.3"
DEFAULT_ITL = "uniform:10ms:40ms"
DEFAULT_CHUNKS = "uniform:5:20"
DEFAULT_FINGERPRINT = "loadtest-mock"
DEFAULT_STALL_S = 120.0
# Conversations the mock remembers by default: as many as one machine's generator holds open (see
# README, Performance). Each turn keeps its request's whole history: 10-20 KB for 4 turns of the
# default replies, so up to 100-200 MB.
DEFAULT_MAX_CONVERSATIONS = 10_000
# The generic OpenAI route's base path when there is no --prefix: clients are told `http://host/v1`.
OPENAI_BASE = "/v1"

ROUTES_HELP = (
    "ROUTES: NLX, POST {prefix}/{deploymentKey}/{channelKey}/chat/completions; OpenAI (any model, "
    "no conversation state; the usage chunk before [DONE] when the request has stream_options: "
    '{"include_usage": true}, tokens counted as whitespace-separated words; NLX sends none), '
    f"POST {{prefix}}/chat/completions, or {OPENAI_BASE}/chat/completions "
    f"without a prefix: an OpenAI client's base URL is the mock's URL, plus {OPENAI_BASE} if it has no "
    "prefix; GET [{prefix}]/_mock/stats."
)


@dataclass(frozen=True)
class MockConfig:
    host: str = "127.0.0.1"
    port: int = 0
    api_key: str = field(default=DEFAULT_API_KEY, repr=False)
    prefix: str = ""
    ttft: Distribution = field(default_factory=lambda: parse_duration_dist(DEFAULT_TTFT))
    itl: Distribution = field(default_factory=lambda: parse_duration_dist(DEFAULT_ITL))
    chunks: Distribution = field(default_factory=lambda: parse_count_dist(DEFAULT_CHUNKS))
    # Reasoning chunks before the answer (None: none, as most servers send).
    reasoning: Distribution | None = None
    send_done: bool = True
    seed: int = 0
    fingerprint: str = DEFAULT_FINGERPRINT
    faults: FaultPlan = field(default_factory=FaultPlan)
    stall_s: float = DEFAULT_STALL_S
    precise_timers: bool = False
    max_conversations: int = DEFAULT_MAX_CONVERSATIONS
    # Streams served at once (None: no limit); the rest wait in a queue (see stream.Streamer).
    max_concurrent: int | None = None
    # The rules of a bot that picks replies by the user's message (None: the mock's own text).
    bot: Bot | None = None
    # HTTPS with a certificate made at start (see tls.py).
    tls: bool = False

    @property
    def openai_path(self) -> str:
        """The generic OpenAI route: `{prefix}/chat/completions`, `/v1/chat/completions` without one."""
        return f"{self.prefix or OPENAI_BASE}/chat/completions"

    @property
    def nlx_path(self) -> str:
        """The contract's route, as an aiohttp pattern."""
        return f"{self.prefix}/{{deployment}}/{{channel}}/chat/completions"


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def build_parser() -> argparse.ArgumentParser:
    aliases = ", ".join(f"{alias} = {kind}" for alias, kind in ALIASES.items())
    parser = _ArgumentParser(
        prog="loadtest mock",
        description="Serve a mock NLX OpenAI Connect endpoint that streams replies on a schedule.",
        epilog="DIST: const:100ms (or 100ms, 0.1s, 100 = ms), uniform:A:B, normal:MEAN:SD, "
        "lognormal:MEDIAN:SIGMA, exp:MEAN. Counts take the same forms without units. "
        f"FAULT KINDS: {', '.join(FAULT_KINDS)} ({aliases}); "
        f"at most one per request, drawn from --seed. {ROUTES_HELP}",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=_port, default=0, help="port; 0 lets the OS pick (default: 0)")
    parser.add_argument(
        "--api-key", help=f"the accepted bearer token (default: ${API_KEY_ENV}, else {DEFAULT_API_KEY})"
    )
    parser.add_argument(
        "--prefix",
        default="",
        help="path prefix such as /v1, before both chat routes (see ROUTES; default: none)",
    )
    parser.add_argument(
        "--ttft",
        default=DEFAULT_TTFT,
        metavar="DIST",
        help="time to first content chunk (default: %(default)s)",
    )
    parser.add_argument(
        "--itl",
        default=DEFAULT_ITL,
        metavar="DIST",
        help="time between content chunks (default: %(default)s)",
    )
    parser.add_argument(
        "--chunks",
        default=DEFAULT_CHUNKS,
        metavar="DIST",
        help="content chunks per reply (default: %(default)s)",
    )
    parser.add_argument(
        "--reasoning",
        metavar="DIST",
        help='reasoning chunks before the answer, each {"delta": {"reasoning_content": ...}} as vLLM and '
        "DeepSeek send them, on both routes: the first at --ttft, the next ones and the answer's first "
        "chunk --itl apart, so a client's time to first reasoning comes before its TTFT (default: none)",
    )
    parser.add_argument("--no-done", action="store_true", help="do not send the final data: [DONE]")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--fingerprint", default=DEFAULT_FINGERPRINT, help="system_fingerprint value")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help="inject a fault into this share of chat requests, e.g. http_429=10%% or stall=0.01 "
        "(repeatable); idle_close=100%% closes the connection after every response, so every turn opens "
        "a new one (with --tls, a new handshake)",
    )
    parser.add_argument(
        "--faults",
        action="append",
        default=[],
        metavar="LIST",
        help='several faults at once, e.g. "http_500=5%%,stall=1%%"',
    )
    parser.add_argument(
        "--stall-seconds",
        type=float,
        default=DEFAULT_STALL_S,
        metavar="S",
        help="how long the stall fault sends nothing (default: %(default)g)",
    )
    parser.add_argument(
        "--precise-timers",
        action="store_true",
        help="send each chunk within microseconds of its deadline rather than up to a millisecond late, "
        "by polling through the last millisecond before it; keeps a CPU busy while streams are open "
        "(for benchmarks, with the mock on a CPU of its own)",
    )
    parser.add_argument(
        "--max-conversations",
        type=_max_conversations,
        default=DEFAULT_MAX_CONVERSATIONS,
        metavar="N",
        help="conversations (and OpenAI-route replies) to remember; the least recently used beyond "
        "them are forgotten, counted in /_mock/stats as evicted (default: %(default)s)",
    )
    parser.add_argument(
        "--max-concurrent",
        type=_max_concurrent,
        default=None,
        metavar="N",
        help="serve at most N streams at once, as a server with a capacity does: the others wait in a "
        "queue, in order of arrival, and their TTFT and chunk delays start when they are served "
        "(default: no limit)",
    )
    parser.add_argument(
        "--bot",
        metavar="FILE",
        help="play a bot: YAML rules that pick the reply by the user's last message and may ask back "
        "(see loadtest/mock/bot.py; default: the mock's own text)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS, with a self-signed certificate made at start for 127.0.0.1, ::1, localhost "
        "and --host; clients must skip verification (loadtest --insecure, curl -k); the URL it "
        "announces starts with https://",
    )
    return parser


def _max_concurrent(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a count of streams: use a whole number of 1 or more"
        )
    return count


def _max_conversations(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count: use a whole number of 1 or more")
    return count


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number: use 1-65535, or 0 for a free one")
    return port


def _normalize_prefix(prefix: str) -> str:
    prefix = prefix.strip().strip("/")
    if any(ch in prefix for ch in "{}?#"):
        raise ValueError(f"--prefix {prefix!r} must be a plain path such as /v1")
    return f"/{prefix}" if prefix else ""


def _option_dist(option: str, text: str, parse: Callable[[str], Distribution]) -> Distribution:
    try:
        return parse(text)
    except ValueError as exc:
        raise ValueError(f"{option}: {exc}") from None


def parse_config(argv: Sequence[str], environ: Mapping[str, str]) -> MockConfig:
    """Build the config from command-line arguments; ValueError carries a one-line message."""
    args = build_parser().parse_args(list(argv))
    api_key = args.api_key if args.api_key is not None else environ.get(API_KEY_ENV) or DEFAULT_API_KEY
    if not api_key:
        raise ValueError("--api-key must not be empty")
    if not (math.isfinite(args.stall_seconds) and args.stall_seconds > 0):
        raise ValueError(f"--stall-seconds {args.stall_seconds:g} must be a positive number of seconds")
    try:
        faults = parse_faults([*args.fault, *args.faults])
    except ValueError as exc:
        raise ValueError(f"--fault: {exc}") from None
    reasoning = None
    if args.reasoning is not None:
        reasoning = _option_dist("--reasoning", args.reasoning, parse_count_dist)
    return MockConfig(
        host=args.host,
        port=args.port,
        api_key=api_key,
        prefix=_normalize_prefix(args.prefix),
        ttft=_option_dist("--ttft", args.ttft, parse_duration_dist),
        itl=_option_dist("--itl", args.itl, parse_duration_dist),
        chunks=_option_dist("--chunks", args.chunks, parse_count_dist),
        reasoning=reasoning,
        send_done=not args.no_done,
        seed=args.seed,
        fingerprint=args.fingerprint,
        faults=faults,
        stall_s=args.stall_seconds,
        precise_timers=args.precise_timers,
        max_conversations=args.max_conversations,
        max_concurrent=args.max_concurrent,
        bot=None if args.bot is None else load_bot(args.bot),
        tls=args.tls,
    )
