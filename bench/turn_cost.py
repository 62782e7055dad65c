"""CPU per streamed turn without sockets: what httpx costs, and what loadtest's parsing adds.

    python bench/turn_cost.py [--turns 20000]

Both rows send through an httpx transport that answers from memory (no socket, no event loop):
  - httpx round trip: `client.stream(...)` with an empty body, the request and response bookkeeping
    httpx does for every turn whatever reads the body;
  - stream_turn: loadtest's whole turn (`loadtest.client.stream_turn`) over the mock's reply of 20
    content chunks, one piece per chunk as a socket would hand them (role chunk, 20 contents, stop,
    [DONE]): the SSE decoder, JSON, the turn's result.
The CPU a generator spends per turn is about this plus the socket reads (bench/capacity.py's floor
generator) plus Locust's and the plugin's bookkeeping.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator

import httpx
import orjson

from loadtest.client import stream_turn

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


def httpx_round_trip(client: httpx.Client) -> None:
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream", "Authorization": "Bearer k"}
    extensions = {"timeout": client.timeout.as_dict()}
    with client.stream("POST", URL, content=orjson.dumps(BODY), headers=headers, extensions=extensions) as r:
        for _ in r.stream:  # type: ignore[union-attr]
            pass


def one_turn(client: httpx.Client) -> None:
    stream_turn(client, URL, BODY, api_key="k")


def per_turn_us(run: Callable[[], None], turns: int) -> float:
    for _ in range(turns // 10):
        run()
    start = time.process_time()
    for _ in range(turns):
        run()
    return (time.process_time() - start) / turns * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=20_000)
    turns = parser.parse_args().turns
    empty = httpx.Client(transport=Canned([]))
    full = httpx.Client(transport=Canned(PIECES))
    result = stream_turn(full, URL, BODY, api_key="k")
    assert result.ok and result.chunks == 20 and result.done, result
    rows = [
        ("httpx round trip (empty body)", per_turn_us(lambda: httpx_round_trip(empty), turns)),
        ("stream_turn, 20 content chunks", per_turn_us(lambda: one_turn(full), turns)),
    ]
    print(f"CPU per turn, {turns} turns each, no sockets (µs):")
    for name, us in rows:
        print(f"  {name:<34}{us:>8.1f}")
    print(f"  {'loadtest on top of httpx':<34}{rows[1][1] - rows[0][1]:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
