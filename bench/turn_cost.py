"""CPU per streamed turn without sockets: what httpx costs, and what loadtest's parsing adds.

    python bench/turn_cost.py [--turns 20000] [--repeats 5]

Every row sends through an httpx transport that answers from memory (no socket, no event loop):
  - Client.send round trip: `client.stream(...)` with an empty body, the request and response
    bookkeeping httpx's client does for every request whatever reads the body;
  - TurnSender round trip: the same request and empty body, sent the way a turn sends it
    (`loadtest.client.TurnSender`: one kept request, straight to the transport);
  - stream_turn: loadtest's whole turn (`loadtest.client.stream_turn`) over the mock's reply of 20
    content chunks, one piece per chunk as a socket would hand them (role chunk, 20 contents, stop,
    [DONE]): the sender, the SSE decoder, JSON, the turn's result.
The rows take turns, `--repeats` times, and each row's median is shown with its ratio to the first
row's: on a shared machine the ratios hold better than the microseconds. The CPU a generator
spends per turn is about the stream_turn row plus the socket reads (bench/capacity.py's floor
generator) plus Locust's and the plugin's bookkeeping.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator

import httpx
import orjson

from loadtest.client import sender_for, stream_turn

URL = "http://127.0.0.1:1/demo/web-en-US/chat/completions"
BODY = {"model": "nlx:bench", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
HEADERS = [(b"content-type", b"text/event-stream"), (b"transfer-encoding", b"chunked")]


def event(delta: dict[str, str], finish: str | None) -> bytes:
    chunk = {
        "id": "chatcmpl-0123456789abcdef0123456789abcdef",
        "object": "chat.completion.chunk",
        "created": 1764100000,
        "model": "nlx:bench",
        "system_fingerprint": "fp_mock",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


PIECES = [
    event({"role": "assistant", "content": ""}, None),
    *(event({"content": f"word{i} "}, None) for i in range(20)),
    event({}, "stop"),
    b"data: [DONE]\n\n",
]


class Pieces(httpx.SyncByteStream):
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces


class Canned(httpx.BaseTransport):
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(200, headers=HEADERS, stream=Pieces(self.pieces))


def client_send_round_trip(client: httpx.Client) -> None:
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream", "Authorization": "Bearer k"}
    extensions = {"timeout": client.timeout.as_dict()}
    with client.stream("POST", URL, content=orjson.dumps(BODY), headers=headers, extensions=extensions) as r:
        for _ in r.stream:  # type: ignore[union-attr]
            pass


def sender_round_trip(client: httpx.Client) -> None:
    extensions = {"timeout": client.timeout.as_dict()}
    response = sender_for(client).send(client, URL, orjson.dumps(BODY), "k", extensions)
    try:
        for _ in response.stream:  # type: ignore[union-attr]
            pass
    finally:
        response.close()


def one_turn(client: httpx.Client) -> None:
    stream_turn(client, URL, BODY, api_key="k")


def per_turn_us(run: Callable[[], None], turns: int) -> float:
    start = time.process_time()
    for _ in range(turns):
        run()
    return (time.process_time() - start) / turns * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    empty = httpx.Client(transport=Canned([]))
    full = httpx.Client(transport=Canned(PIECES))
    result = stream_turn(full, URL, BODY, api_key="k")
    assert result.ok and result.chunks == 20 and result.done, result
    rows: dict[str, Callable[[], None]] = {
        "Client.send round trip (empty body)": lambda: client_send_round_trip(empty),
        "TurnSender round trip (empty body)": lambda: sender_round_trip(empty),
        "stream_turn, 20 content chunks": lambda: one_turn(full),
    }
    for run in rows.values():
        per_turn_us(run, options.turns // 10)
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(options.repeats):
        for name, run in rows.items():
            samples[name].append(per_turn_us(run, options.turns))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = next(iter(medians.values()))
    print(f"CPU per turn, median of {options.repeats} x {options.turns} turns, no sockets (µs, × first row):")
    for name, us in medians.items():
        spread = f"{min(samples[name]):.1f}-{max(samples[name]):.1f}"
        print(f"  {name:<38}{us:>8.1f}  {us / base:>5.2f}×   ({spread})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
