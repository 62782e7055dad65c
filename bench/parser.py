"""Throughput of the SSE decoder on a typical chat.completion.chunk stream, against the alternatives.

    python bench/parser.py [--events N] [--read BYTES] [--repeat K]

Builds one buffer of N `data: {chunk json}\\n\\n` events (about 268 bytes each), cuts it into reads of
4 KB, and prints events/s, best of K runs, for: loadtest.sse.SSEDecoder with and without
`Event.json()`; `orjson.loads` alone on the payloads; and, when they import, httpx-sse's line and
event decoders (behind an incremental UTF-8 decoder, as `EventSource.iter_sse` runs them) and the
openai SDK's `SSEDecoder.iter_bytes`. Both of those parse JSON with the standard library's `json`.
"""

from __future__ import annotations

import argparse
import codecs
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtest.sse import SSEDecoder  # noqa: E402

WORDS = ["Hello", " there", "!", " How", " can", " I", " help", " you", " today", "?", " Ünïcödé", " 🙂"]


def build_events(n: int) -> list[bytes]:
    events = []
    for i in range(n):
        chunk = {
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
            "object": "chat.completion.chunk",
            "created": 1741570283,
            "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_eb9dce56a8",
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": WORDS[i % len(WORDS)]},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
        }
        events.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    return events


def ours(reads: list[bytes], parse_json: bool) -> int:
    """As `loadtest.client` decodes a stream: data bytes only, JSON straight from bytes."""
    dec = SSEDecoder()
    loads = orjson.loads
    n = 0
    for read in reads:
        for data in dec.feed_data(read):
            if parse_json:
                loads(data)
            n += 1
    dec.close()
    return n


def ours_events(reads: list[bytes], parse_json: bool) -> int:
    dec = SSEDecoder()
    n = 0
    for t, read in enumerate(reads):
        for event in dec.feed(read, t):
            if parse_json:
                event.json()
            n += 1
    dec.close()
    return n


def orjson_alone(payloads: list[str] | list[bytes]) -> int:
    loads = orjson.loads
    for payload in payloads:
        loads(payload)
    return len(payloads)


def httpx_sse_runner() -> Callable[[list[bytes], bool], int] | str:
    try:
        from httpx_sse._decoders import SSEDecoder as HttpxSSEDecoder
        from httpx_sse._decoders import SSELineDecoder
    except ImportError as exc:
        return f"httpx-sse not importable ({exc}); pip install httpx-sse"

    def run(reads: list[bytes], parse_json: bool) -> int:
        text_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        lines = SSELineDecoder()
        dec = HttpxSSEDecoder()
        n = 0
        for read in reads:
            for line in lines.decode(text_decoder.decode(read)):
                sse = dec.decode(line.rstrip("\n"))
                if sse is not None:
                    if parse_json:
                        sse.json()
                    n += 1
        return n

    return run


def openai_runner() -> Callable[[list[bytes], bool], int] | str:
    try:
        from openai._streaming import SSEDecoder as OpenAISSEDecoder
    except ImportError as exc:
        return f"openai not importable ({exc}); pip install openai"

    def run(reads: list[bytes], parse_json: bool) -> int:
        n = 0
        for sse in OpenAISSEDecoder().iter_bytes(iter(reads)):
            if parse_json:
                sse.json()
            n += 1
        return n

    return run


def best_rate(fn: Callable[[], int], expected: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        n = fn()
        elapsed = time.perf_counter_ns() - start
        if n != expected:
            raise SystemExit(f"decoded {n} events, expected {expected}")
        best = min(best, elapsed)
    return expected / (best / 1e9)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--read", type=int, default=4096, help="bytes per feed")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    events = build_events(args.events)
    buffer = b"".join(events)
    reads = [buffer[i : i + args.read] for i in range(0, len(buffer), args.read)]
    payloads = [e[len(b"data: ") : -2] for e in events]
    texts = [p.decode() for p in payloads]
    n = len(events)
    print(
        f"{n} events, {len(buffer) / n:.0f} bytes each on average, {len(buffer) / 1e6:.1f} MB "
        f"in {len(reads)} reads of {args.read} bytes; best of {args.repeat}; Python {sys.version.split()[0]}"
    )
    others = [("httpx-sse", httpx_sse_runner()), ("openai SSEDecoder", openai_runner())]
    for name, runner in others:
        if isinstance(runner, str):
            print(f"skipped {name}: {runner}")
    runners: list[tuple[str, Callable[[list[bytes], bool], int]]] = [
        ("loadtest.sse", ours),
        ("loadtest.sse Events", ours_events),
        *[(name, runner) for name, runner in others if not isinstance(runner, str)],
    ]

    mb_per_event = len(buffer) / n / 1e6
    alone_str = best_rate(lambda: orjson_alone(texts), n, args.repeat)
    alone_bytes = best_rate(lambda: orjson_alone(payloads), n, args.repeat)
    for title, feeds in [(f"reads of {args.read} bytes", reads), ("one event per read", events)]:
        rates = {
            name: (
                best_rate(partial(runner, feeds, False), n, args.repeat),
                best_rate(partial(runner, feeds, True), n, args.repeat),
            )
            for name, runner in runners
        }
        print()
        print(f"{title:<22} {'events/s parse':>16} {'events/s +json':>16} {'MB/s parse':>12}")
        for name, (parse, with_json) in rates.items():
            print(f"{name:<22} {parse:>16,.0f} {with_json:>16,.0f} {parse * mb_per_event:>12.1f}")
        if feeds is reads:
            print(f"{'orjson.loads str':<22} {alone_str:>16,.0f} {'-':>16}")
            print(f"{'orjson.loads bytes':<22} {alone_bytes:>16,.0f} {'-':>16}")
        ours_parse, ours_json = rates["loadtest.sse"]
        print()
        if feeds is reads:
            print(
                f"ours+json / orjson alone: {ours_json / alone_str:.2f} (str), "
                f"{ours_json / alone_bytes:.2f} (bytes); goal 0.60"
            )
        for name in ("openai SSEDecoder", "httpx-sse"):
            if name in rates:
                parse, with_json = rates[name]
                goal = "; goal 5.00 with json" if name.startswith("openai") and feeds is reads else ""
                print(
                    f"ours / {name}: {ours_parse / parse:.2f} parse only, "
                    f"{ours_json / with_json:.2f} with json{goal}"
                )


if __name__ == "__main__":
    main()
