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
    dec = SSEDecoder()
    n = 0
    for t, read in enumerate(reads):
        for event in dec.feed(read, t):
            if parse_json:
                event.json()
            n += 1
    dec.close()
    return n


def orjson_alone(payloads: list[str]) -> int:
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
    payloads = [e[len(b"data: ") : -2].decode() for e in events]
    n = len(events)
    print(
        f"{n} events, {len(buffer) / n:.0f} bytes each on average, {len(buffer) / 1e6:.1f} MB "
        f"in {len(reads)} reads of {args.read} bytes; best of {args.repeat}; Python {sys.version.split()[0]}"
    )

    rates: dict[str, tuple[float, float | None]] = {}
    rates["loadtest.sse"] = (
        best_rate(lambda: ours(reads, False), n, args.repeat),
        best_rate(lambda: ours(reads, True), n, args.repeat),
    )
    rates["orjson.loads alone"] = (best_rate(lambda: orjson_alone(payloads), n, args.repeat), None)
    for name, runner in [("httpx-sse", httpx_sse_runner()), ("openai SSEDecoder", openai_runner())]:
        if isinstance(runner, str):
            print(f"skipped {name}: {runner}")
            continue
        rates[name] = (
            best_rate(partial(runner, reads, False), n, args.repeat),
            best_rate(partial(runner, reads, True), n, args.repeat),
        )

    print()
    print(f"{'decoder':<20} {'events/s parse':>16} {'events/s +json':>16} {'MB/s parse':>12}")
    mb_per_event = len(buffer) / n / 1e6
    for name, (parse, with_json) in rates.items():
        json_col = f"{with_json:>16,.0f}" if with_json is not None else f"{'-':>16}"
        print(f"{name:<20} {parse:>16,.0f} {json_col} {parse * mb_per_event:>12.1f}")

    ours_parse, ours_json = rates["loadtest.sse"]
    assert ours_json is not None
    print()
    print(f"ours+json / orjson alone: {ours_json / rates['orjson.loads alone'][0]:.2f}")
    for name in ("openai SSEDecoder", "httpx-sse"):
        if name in rates:
            parse, with_json = rates[name]
            assert with_json is not None
            print(
                f"ours / {name}: {ours_parse / parse:.2f} parse only, {ours_json / with_json:.2f} with json"
            )


if __name__ == "__main__":
    main()
